//! What follows a finished job unless its strategy knows better: the retry policy (requeue
//! after the cluster's faults, retry the job's own failures a few times, halve the batch after
//! running out of memory) and micro-batch sweeps.

use super::strategy::{AttemptKind, EngineArgs, JobOutcome, NextStep};
use crate::slurm::state::JobState;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallelism::rules::even_layer_split;
    use crate::slurm::profile::RetryPolicy;

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
}
