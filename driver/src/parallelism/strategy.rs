//! The `ParallelismStrategy` trait: what a strategy asks of Slurm and of the engine, how it reads
//! its outputs, and what it runs next when a job ends (a retry with changed settings, the next
//! point of a sweep). The layout checks live here, so every strategy refuses the same impossible
//! layouts with the same reasons before anything is submitted.

use std::path::PathBuf;

use polars::prelude::{col, lit, DataFrame, DataType, IntoLazy};
use serde::{Deserialize, Serialize};

use super::model::ModelFacts;
use crate::slurm::profile::{ClusterShape, RetryPolicy};
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

/// Layers split as evenly as possible, the remainder to the earlier stages (the engine's default).
pub fn even_layer_split(layers: usize, stages: usize) -> Vec<usize> {
    if stages == 0 {
        return Vec::new();
    }
    (0..stages)
        .map(|s| layers / stages + usize::from(s < layers % stages))
        .collect()
}

/// Refuses layouts the model or the cluster cannot hold; the reason says which rule and numbers.
pub fn validate_layout(
    strategy: &'static str,
    args: &EngineArgs,
    model: &ModelFacts,
    cluster: &ClusterShape,
) -> Result<(), StrategyError> {
    let refuse = |reason: String| Err(StrategyError::Invalid { strategy, reason });
    let (tp, pp) = (args.tp, args.pp);
    if tp == 0 || pp == 0 || args.nodes == 0 || args.ranks_per_node == 0 {
        return refuse(format!(
            "tp ({tp}), pp ({pp}), nodes ({}) and ranks per node ({}) must all be at least 1",
            args.nodes, args.ranks_per_node
        ));
    }
    if !model.heads.is_multiple_of(tp) {
        return refuse(format!(
            "tp={tp} does not divide the model's {} attention heads",
            model.heads
        ));
    }
    if !(tp.is_multiple_of(model.kv_heads) || model.kv_heads.is_multiple_of(tp)) {
        return refuse(format!(
            "tp={tp} and the model's {} KV heads: tp must divide the KV heads, or be a multiple of them (each KV head replicated on tp / kv_heads ranks)",
            model.kv_heads
        ));
    }
    if let Some(width) = model.intermediate_size {
        if !width.is_multiple_of(tp) {
            return refuse(format!(
                "tp={tp} does not divide the model's MLP width (intermediate_size {width})"
            ));
        }
    }
    if pp > model.layers {
        return refuse(format!(
            "pp={pp} stages but the model has only {} layers",
            model.layers
        ));
    }
    if args.layer_split.len() != pp
        || args.layer_split.contains(&0)
        || args.layer_split.iter().sum::<usize>() != model.layers
    {
        return refuse(format!(
            "layer split {:?} must have pp={pp} entries, each at least 1, summing to the model's {} layers",
            args.layer_split, model.layers
        ));
    }
    if args.nodes > cluster.nodes {
        return refuse(format!(
            "needs {} nodes but the cluster profile has {}",
            args.nodes, cluster.nodes
        ));
    }
    if args.nodes * args.ranks_per_node != args.world_size() {
        return refuse(format!(
            "tp x pp = {} ranks cannot be placed as {} nodes x {} ranks per node",
            args.world_size(),
            args.nodes,
            args.ranks_per_node
        ));
    }
    if args.ranks_per_node > cluster.gpus_per_node.max(1) {
        return refuse(format!(
            "{} ranks per node but a node has {} GPUs (one rank per GPU)",
            args.ranks_per_node, cluster.gpus_per_node
        ));
    }
    if args.batch_size == 0 || args.micro_batches == Some(0) {
        return refuse("batch size and micro-batches must be at least 1".into());
    }
    Ok(())
}

/// The retry policy and sweep every strategy follows unless it knows better:
/// - COMPLETED with outputs: the next sweep point, if any; otherwise done;
/// - NODE_FAIL, PREEMPTED: the same job again, up to `max_requeues` times (not the job's fault);
/// - FAILED (or COMPLETED without outputs): again, up to `max_tries` attempts in all;
/// - OUT_OF_MEMORY: again with half the batch size, within the same `max_tries`;
/// - TIMEOUT, CANCELLED: give up (a rerun would time out again; a person cancelled it).
pub fn default_next_config(outcome: &JobOutcome, sweep_micro_batches: &[usize]) -> NextStep {
    let args = &outcome.args;
    let policy = outcome.policy;
    let exit = outcome
        .exit_code
        .map(|c| format!(", exit code {c}"))
        .unwrap_or_default();
    let retry = |args: EngineArgs, why: String| {
        if outcome.failures < policy.max_tries {
            NextStep::Run {
                args,
                kind: AttemptKind::Retry,
                why,
            }
        } else {
            NextStep::GiveUp {
                why: format!(
                    "{why}; gave up after {} failed attempts (retry.max_tries = {})",
                    outcome.failures, policy.max_tries
                ),
            }
        }
    };
    match outcome.state {
        JobState::Completed if outcome.outputs_present => {
            let done = args.micro_batches.and_then(|m| {
                sweep_micro_batches
                    .iter()
                    .position(|&s| s == m)
                    .map(|i| i + 1)
            });
            match sweep_micro_batches.get(done.unwrap_or(usize::MAX)) {
                Some(&next) => NextStep::Run {
                    args: EngineArgs {
                        micro_batches: Some(next),
                        ..args.clone()
                    },
                    kind: AttemptKind::Sweep,
                    why: format!("sweep: micro-batches {next}"),
                },
                None => NextStep::Done,
            }
        }
        JobState::Completed | JobState::Failed => retry(
            args.clone(),
            if outcome.state == JobState::Completed {
                "completed without its output file".into()
            } else {
                format!("FAILED{exit}")
            },
        ),
        JobState::OutOfMemory if args.batch_size > 1 => {
            let half = args.batch_size / 2;
            retry(
                EngineArgs {
                    batch_size: half,
                    ..args.clone()
                },
                format!("OUT_OF_MEMORY: batch size {} -> {half}", args.batch_size),
            )
        }
        JobState::NodeFail | JobState::Preempted => {
            if outcome.requeues < policy.max_requeues {
                NextStep::Run {
                    args: args.clone(),
                    kind: AttemptKind::Requeue,
                    why: format!("{}: submitted again", outcome.state),
                }
            } else {
                NextStep::GiveUp {
                    why: format!(
                        "{} after {} requeues (retry.max_requeues = {})",
                        outcome.state, outcome.requeues, policy.max_requeues
                    ),
                }
            }
        }
        state => NextStep::GiveUp {
            why: format!("{state}{exit}"),
        },
    }
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

    fn outcome(state: JobState, failures: u32, requeues: u32) -> JobOutcome {
        JobOutcome {
            state,
            exit_code: Some(3),
            args: args(2, 1, 1, 2, 4),
            failures,
            requeues,
            outputs_present: state == JobState::Completed,
            policy: RetryPolicy {
                max_tries: 2,
                max_requeues: 1,
            },
        }
    }

    #[test]
    fn even_split_gives_the_remainder_to_early_stages() {
        assert_eq!(even_layer_split(80, 16), vec![5; 16]);
        assert_eq!(even_layer_split(30, 4), vec![8, 8, 7, 7]);
        assert_eq!(even_layer_split(4, 4), vec![1; 4]);
    }

    #[test]
    fn kv_heads_may_be_replicated_when_tp_is_a_multiple_of_them() {
        let model = ModelFacts::llama_3_3_70b();
        let cluster = ClusterShape {
            nodes: 2,
            gpus_per_node: 8,
        };
        validate_layout("t", &args(16, 1, 2, 8, 80), &model, &cluster).unwrap();
        let smol = ModelFacts {
            heads: 12,
            kv_heads: 4,
            layers: 4,
            intermediate_size: None,
        };
        // 6 divides 12 heads but is neither a divisor nor a multiple of 4 KV heads.
        let err = validate_layout(
            "t",
            &args(6, 1, 1, 6, 4),
            &smol,
            &ClusterShape {
                nodes: 1,
                gpus_per_node: 8,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("KV heads"), "{err}");
    }

    #[test]
    fn impossible_layouts_are_refused_with_the_reason() {
        let model = ModelFacts::llama_3_3_70b();
        let cluster = ClusterShape {
            nodes: 2,
            gpus_per_node: 8,
        };
        let cases = [
            (
                args(3, 1, 1, 3, 80),
                "does not divide the model's 64 attention heads",
            ),
            (args(1, 96, 12, 8, 80), "only 80 layers"),
            (
                args(8, 3, 3, 8, 80),
                "needs 3 nodes but the cluster profile has 2",
            ),
            (args(16, 1, 1, 16, 80), "a node has 8 GPUs"),
            (args(8, 2, 1, 8, 80), "cannot be placed"),
        ];
        for (a, want) in cases {
            let err = validate_layout("t", &a, &model, &cluster)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{a:?}: {err}");
        }
        let mut bad_split = args(8, 2, 2, 8, 80);
        bad_split.layer_split = vec![41, 40];
        let err = validate_layout("t", &bad_split, &model, &cluster)
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer split"), "{err}");
    }

    #[test]
    fn failed_jobs_are_retried_up_to_max_tries_then_given_up() {
        assert!(matches!(
            default_next_config(&outcome(JobState::Failed, 1, 0), &[]),
            NextStep::Run {
                kind: AttemptKind::Retry,
                ..
            }
        ));
        match default_next_config(&outcome(JobState::Failed, 2, 0), &[]) {
            NextStep::GiveUp { why } => assert!(
                why.contains("exit code 3") && why.contains("2 failed"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn node_failures_are_requeued_timeouts_and_cancels_are_not() {
        assert!(matches!(
            default_next_config(&outcome(JobState::NodeFail, 0, 0), &[]),
            NextStep::Run {
                kind: AttemptKind::Requeue,
                ..
            }
        ));
        assert!(matches!(
            default_next_config(&outcome(JobState::Preempted, 0, 1), &[]),
            NextStep::GiveUp { .. }
        ));
        for state in [JobState::Timeout, JobState::Cancelled] {
            assert!(matches!(
                default_next_config(&outcome(state, 0, 0), &[]),
                NextStep::GiveUp { .. }
            ));
        }
    }

    #[test]
    fn out_of_memory_halves_the_batch() {
        match default_next_config(&outcome(JobState::OutOfMemory, 1, 0), &[]) {
            NextStep::Run { args, kind, .. } => {
                assert_eq!((args.batch_size, kind), (4, AttemptKind::Retry));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_sweep_runs_each_point_after_a_success() {
        let mut o = outcome(JobState::Completed, 0, 0);
        o.args.micro_batches = Some(2);
        match default_next_config(&o, &[2, 4]) {
            NextStep::Run { args, kind, .. } => {
                assert_eq!((args.micro_batches, kind), (Some(4), AttemptKind::Sweep))
            }
            other => panic!("{other:?}"),
        }
        o.args.micro_batches = Some(4);
        assert_eq!(default_next_config(&o, &[2, 4]), NextStep::Done);
        o.outputs_present = false;
        assert!(matches!(
            default_next_config(&o, &[2, 4]),
            NextStep::Run {
                kind: AttemptKind::Retry,
                ..
            }
        ));
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
