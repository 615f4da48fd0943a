//! Tensor parallelism within each node, pipeline parallelism across nodes: tp = GPUs per node,
//! pp = nodes (8 x 2). All-reduces stay inside a node; only activations cross the network.

use polars::prelude::DataFrame;

use super::layout::Layout;
use super::model::ModelFacts;
use super::next_config::default_next_config;
use super::strategy::{
    add_layout_columns, EngineArgs, JobOutcome, NextStep, ParallelismStrategy, SlurmConstraints,
    StrategyError,
};
use crate::slurm::profile::ClusterProfile;

/// tp per node x pp across nodes.
#[derive(Debug, Clone)]
pub struct HybridTensorPipeline {
    layout: Layout,
}

impl HybridTensorPipeline {
    pub const NAME: &'static str = "hybrid-tp-pp";

    /// Derives the layout from the profile and checks it against the model.
    pub fn from_profile(
        profile: &ClusterProfile,
        model: &ModelFacts,
    ) -> Result<Self, StrategyError> {
        let o = profile.overrides(Self::NAME);
        let nodes = o.nodes.unwrap_or(profile.cluster.nodes);
        let tp = o.tp.unwrap_or(profile.cluster.gpus_per_node);
        let pp = o.pp.unwrap_or(nodes);
        if tp < 2 || pp < 2 {
            return Err(StrategyError::Invalid {
                strategy: Self::NAME,
                reason: format!("a hybrid needs tp >= 2 and pp >= 2, not tp={tp} x pp={pp}"),
            });
        }
        let layout = Layout::new(Self::NAME, profile, model, tp, pp, nodes)?;
        if !layout.args.ranks_per_node.is_multiple_of(tp) {
            return Err(StrategyError::Invalid {
                strategy: Self::NAME,
                reason: format!(
                    "tp={tp} groups would span nodes: {} ranks per node is not a multiple of tp",
                    layout.args.ranks_per_node
                ),
            });
        }
        Ok(Self { layout })
    }
}

impl ParallelismStrategy for HybridTensorPipeline {
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
            "all-reduce within nodes, send/recv across",
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
