//! Tensor parallelism over every GPU of several nodes: tp = nodes x GPUs per node (16 on 2 x 8),
//! one stage. Two all-reduces per layer cross the network.

use super::layout::{fixed, Layout, LayoutStrategy};
use super::model::ModelFacts;
use super::strategy::StrategyError;
use crate::slurm::profile::ClusterProfile;

/// tp over all GPUs of all (or the configured) nodes.
#[derive(Debug, Clone)]
pub struct TensorParallelAcrossNodes {
    layout: Layout,
}

impl TensorParallelAcrossNodes {
    pub const NAME: &'static str = "tp-across-nodes";

    /// Derives the layout from the profile and checks it against the model.
    pub fn from_profile(
        profile: &ClusterProfile,
        model: &ModelFacts,
    ) -> Result<Self, StrategyError> {
        let o = profile.overrides(Self::NAME);
        let nodes = o.nodes.unwrap_or(profile.cluster.nodes);
        if nodes < 2 {
            return Err(StrategyError::Invalid {
                strategy: Self::NAME,
                reason: format!("runs across nodes, so it needs at least 2 nodes, not {nodes}"),
            });
        }
        let tp = o.tp.unwrap_or(nodes * profile.cluster.gpus_per_node);
        let pp = fixed(
            Self::NAME,
            "pp",
            o.pp,
            1,
            "pure tensor parallelism has one stage",
        )?;
        Ok(Self {
            layout: Layout::new(Self::NAME, profile, model, tp, pp, nodes)?,
        })
    }
}

impl LayoutStrategy for TensorParallelAcrossNodes {
    const NAME: &'static str = TensorParallelAcrossNodes::NAME;
    const COMMUNICATION: &'static str = "all-reduce across nodes";
    fn layout(&self) -> &Layout {
        &self.layout
    }
}
