//! Pipeline parallelism over several nodes: one stage per GPU (pp = 16 on 2 x 8, or as
//! configured), tp = 1. Only activations cross stages, by send/recv, in micro-batches.

use polars::prelude::DataFrame;

use super::layout::{fixed, Layout};
use super::model::ModelFacts;
use super::next_config::default_next_config;
use super::strategy::{
    add_layout_columns, EngineArgs, JobOutcome, NextStep, ParallelismStrategy, SlurmConstraints,
    StrategyError,
};
use crate::slurm::profile::ClusterProfile;

/// pp stages over all (or the configured) nodes, one rank per GPU.
#[derive(Debug, Clone)]
pub struct PipelineParallelAcrossNodes {
    layout: Layout,
}

impl PipelineParallelAcrossNodes {
    pub const NAME: &'static str = "pp-across-nodes";

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
        let tp = fixed(
            Self::NAME,
            "tp",
            o.tp,
            1,
            "pure pipeline parallelism has one rank per stage",
        )?;
        let pp = o.pp.unwrap_or(nodes * profile.cluster.gpus_per_node);
        Ok(Self {
            layout: Layout::new(Self::NAME, profile, model, tp, pp, nodes)?,
        })
    }
}

impl ParallelismStrategy for PipelineParallelAcrossNodes {
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
            "send/recv between stages",
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
