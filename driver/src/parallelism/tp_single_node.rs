//! Tensor parallelism within one node: tp = GPUs per node (8), one stage; the all-reduces stay
//! on the node's own interconnect (NVLink).

use polars::prelude::DataFrame;

use super::layout::{fixed, Layout};
use super::model::ModelFacts;
use super::next_config::default_next_config;
use super::strategy::{
    add_layout_columns, EngineArgs, JobOutcome, NextStep, ParallelismStrategy, SlurmConstraints,
    StrategyError,
};
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

impl ParallelismStrategy for TensorParallelSingleNode {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn slurm_constraints(&self) -> SlurmConstraints {
        self.layout.constraints.clone()
    }
    fn engine_args(&self) -> EngineArgs {
        self.layout.args.clone()
    }
    fn postprocess(&self, df: DataFrame) -> Result<DataFrame, StrategyError> {
        add_layout_columns(
            Self::NAME,
            &self.layout.args,
            "all-reduce within a node",
            df,
        )
    }
    fn expected_jobs(&self, variants: usize) -> usize {
        self.layout.expected_jobs(variants)
    }
    fn next_config(&self, outcome: &JobOutcome) -> NextStep {
        default_next_config(outcome, &self.layout.sweep_micro_batches)
    }
}
