//! The `ParallelismStrategy` trait: what a strategy asks of Slurm and of the engine, how it reads
//! its outputs, and what it runs next when a job ends (a retry with changed settings, the next
//! point of a sweep). The layout rules are in `rules.rs`, the default retry policy and sweeps in
//! `next_config.rs`.

use std::path::PathBuf;

use polars::prelude::{col, lit, DataFrame, DataType, IntoLazy};
use serde::{Deserialize, Serialize};

use crate::slurm::profile::RetryPolicy;
use crate::slurm::state::JobState;

/// One way of spreading the model over the cluster's GPUs.
pub trait ParallelismStrategy: std::fmt::Debug {
    /// Stable name: job names, file names, the engine's `--strategy` label.
    fn name(&self) -> &'static str;
    /// What the strategy needs from Slurm.
    fn slurm_constraints(&self) -> SlurmConstraints;
    /// The layout and settings of the first job of each variant.
    fn engine_args(&self) -> EngineArgs;
    /// Adds the strategy's columns to the engine's output rows of one of its jobs.
    fn postprocess(&self, df: DataFrame) -> Result<DataFrame, StrategyError>;
    /// Successful jobs the strategy produces over `variants` prompt variants (sweeps included).
    fn expected_jobs(&self, variants: usize) -> usize;
    /// What to run after a job ended: nothing more, the same job again (perhaps changed), or give up.
    fn next_config(&self, outcome: &JobOutcome) -> NextStep;
}

/// The engine's parallel layout and the settings a retry may change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineArgs {
    pub tp: usize,
    pub pp: usize,
    pub nodes: usize,
    /// GPUs asked for per node (0: none asked for).
    pub gpus_per_node: usize,
    pub ranks_per_node: usize,
    /// Layers per pipeline stage (`--pp-layers`), one entry per stage.
    pub layer_split: Vec<usize>,
    /// `--micro-batches` (none: the engine's default, pp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_batches: Option<usize>,
    /// `--batch-size`.
    pub batch_size: usize,
}

impl EngineArgs {
    /// Ranks in the job (tp x pp).
    pub fn world_size(&self) -> usize {
        self.tp * self.pp
    }
}

/// What a strategy asks of Slurm (the rest of a job's request comes from the profile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmConstraints {
    pub nodes: usize,
    pub ntasks_per_node: usize,
    /// `--gpus-per-node` (none: not asked for).
    pub gpus_per_node: Option<usize>,
    /// `--time` for this strategy, when it departs from the profile's.
    pub walltime: Option<String>,
}

/// How one attempt of a job ended, as the strategy sees it.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub state: JobState,
    pub exit_code: Option<i32>,
    /// The settings the attempt ran with.
    pub args: EngineArgs,
    /// Attempts of this job so far that failed by their own fault (FAILED, OUT_OF_MEMORY, no output).
    pub failures: u32,
    /// Attempts of this job so far that were requeues (after NODE_FAIL, PREEMPTED).
    pub requeues: u32,
    /// The job's outputs are all present (only then is a COMPLETED job a success).
    pub outputs_present: bool,
    pub policy: RetryPolicy,
}

/// Why an attempt was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    First,
    /// After a failure of the job's own (FAILED, OUT_OF_MEMORY).
    Retry,
    /// After the cluster lost the job (NODE_FAIL, PREEMPTED).
    Requeue,
    /// The next point of a parameter sweep, after a success.
    Sweep,
}

/// What a strategy wants after an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// The job is done.
    Done,
    /// Run the job again with these settings.
    Run {
        args: EngineArgs,
        kind: AttemptKind,
        why: String,
    },
    /// Stop trying; the job has failed.
    GiveUp { why: String },
}

/// A strategy that cannot run, or a model that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    #[error("strategy {strategy} refused: {reason}")]
    Invalid {
        strategy: &'static str,
        reason: String,
    },
    #[error("model config {path}: {reason}")]
    ModelConfig { path: PathBuf, reason: String },
    #[error("strategy {strategy}: postprocessing its output table: {source}")]
    Postprocess {
        strategy: &'static str,
        source: polars::error::PolarsError,
    },
}

/// The columns every strategy adds to its output rows: where it ran and how fast per GPU.
pub fn add_layout_columns(
    strategy: &'static str,
    args: &EngineArgs,
    comm: &str,
    df: DataFrame,
) -> Result<DataFrame, StrategyError> {
    let gpus = (args.nodes * args.gpus_per_node.max(args.ranks_per_node)) as f64;
    df.lazy()
        .with_columns([
            lit(args.nodes as u32).alias("nodes"),
            lit(args.ranks_per_node as u32).alias("ranks_per_node"),
            lit(args
                .layer_split
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(","))
            .alias("layer_split"),
            lit(comm.to_string()).alias("comm"),
            (col("completion_tokens").cast(DataType::Float64) * lit(1000.0)
                / col("latency_ms").cast(DataType::Float64))
            .alias("tokens_per_s"),
            (col("completion_tokens").cast(DataType::Float64) * lit(1000.0)
                / col("latency_ms").cast(DataType::Float64)
                / lit(gpus))
            .alias("tokens_per_s_per_gpu"),
        ])
        .collect()
        .map_err(|source| StrategyError::Postprocess { strategy, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallelism::rules::even_layer_split;

    fn args(tp: usize, pp: usize, nodes: usize, rpn: usize, layers: usize) -> EngineArgs {
        EngineArgs {
            tp,
            pp,
            nodes,
            gpus_per_node: rpn,
            ranks_per_node: rpn,
            layer_split: even_layer_split(layers, pp),
            micro_batches: None,
            batch_size: 8,
        }
    }

    #[test]
    fn layout_columns_give_tokens_per_second_per_gpu() {
        let df = polars::df!(
            "prompt_id" => ["a", "b"],
            "completion_tokens" => [10u32, 20],
            "latency_ms" => [1000.0f64, 500.0],
        )
        .unwrap();
        let out = add_layout_columns("t", &args(2, 2, 2, 2, 4), "x", df).unwrap();
        let per_gpu: Vec<_> = out
            .column("tokens_per_s_per_gpu")
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(per_gpu, vec![2.5, 10.0]);
        assert_eq!(
            out.column("layer_split").unwrap().str().unwrap().get(0),
            Some("2,2")
        );
    }
}
