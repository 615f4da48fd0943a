//! Tensor parallelism within one node: tp = GPUs per node (8), one stage; the all-reduces stay
//! on the node's own interconnect (NVLink).

use super::layout::{fixed, Layout, LayoutStrategy};
use super::model::ModelFacts;
use super::strategy::StrategyError;
use crate::slurm::profile::ClusterProfile;

/// tp over the GPUs of one node.
#[derive(Debug, Clone)]
pub struct TensorParallelSingleNode {
    layout: Layout,
}

impl TensorParallelSingleNode {
    pub const NAME: &'static str = "tp-single-node";

    /// Derives the layout from the profile and checks it against the model.
    pub fn from_profile(
        profile: &ClusterProfile,
        model: &ModelFacts,
    ) -> Result<Self, StrategyError> {
        let o = profile.overrides(Self::NAME);
        let nodes = fixed(Self::NAME, "nodes", o.nodes, 1, "it runs on a single node")?;
        let pp = fixed(
            Self::NAME,
            "pp",
            o.pp,
            1,
            "pure tensor parallelism has one stage",
        )?;
        let tp = o.tp.unwrap_or(profile.cluster.gpus_per_node);
        Ok(Self {
            layout: Layout::new(Self::NAME, profile, model, tp, pp, nodes)?,
        })
    }
}

impl LayoutStrategy for TensorParallelSingleNode {
    const NAME: &'static str = TensorParallelSingleNode::NAME;
    const COMMUNICATION: &'static str = "all-reduce within a node";
    fn layout(&self) -> &Layout {
        &self.layout
    }
}
