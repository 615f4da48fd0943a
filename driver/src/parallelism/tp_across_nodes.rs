//! Tensor parallelism over every GPU of several nodes: tp = nodes x GPUs per node (16 on 2 x 8),
//! one stage. Two all-reduces per layer cross the network.

use polars::prelude::DataFrame;

use super::layout::{fixed, Layout};
use super::model::ModelFacts;
use super::next_config::default_next_config;
use super::strategy::{
    add_layout_columns, EngineArgs, JobOutcome, NextStep, ParallelismStrategy, SlurmConstraints,
    StrategyError,
};
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

impl ParallelismStrategy for TensorParallelAcrossNodes {
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
        add_layout_columns(Self::NAME, &self.layout.args, "all-reduce across nodes", df)
    }
    fn expected_jobs(&self, variants: usize) -> usize {
        self.layout.expected_jobs(variants)
    }
    fn next_config(&self, outcome: &JobOutcome) -> NextStep {
        default_next_config(outcome, &self.layout.sweep_micro_batches)
    }
}
