//! What the four strategies share: turning a tp x pp x nodes choice, the profile's overrides and
//! the model into checked engine arguments and Slurm constraints.

use super::model::ModelFacts;
use super::rules::{even_layer_split, validate_layout};
use super::strategy::{EngineArgs, SlurmConstraints, StrategyError};
use crate::slurm::profile::ClusterProfile;

/// A strategy's checked layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub args: EngineArgs,
    pub constraints: SlurmConstraints,
    /// Micro-batch counts to sweep over after the first success (the first is the first job's).
    pub sweep_micro_batches: Vec<usize>,
}

impl Layout {
    /// Builds and checks the layout of `strategy` at `tp` x `pp` over `nodes` nodes; the profile's
    /// `[strategies.NAME]` table may override the layer split, batching and walltime.
    pub fn new(
        strategy: &'static str,
        profile: &ClusterProfile,
        model: &ModelFacts,
        tp: usize,
        pp: usize,
        nodes: usize,
    ) -> Result<Self, StrategyError> {
        let overrides = profile.overrides(strategy);
        let world = tp * pp;
        if nodes == 0 || !world.is_multiple_of(nodes) {
            return Err(StrategyError::Invalid {
                strategy,
                reason: format!(
                    "tp x pp = {world} ranks cannot be spread evenly over {nodes} nodes"
                ),
            });
        }
        let ranks_per_node = world / nodes;
        let gpus_per_node = if profile.slurm.request_gpus {
            ranks_per_node
        } else {
            0
        };
        let sweep = overrides.sweep_micro_batches.clone();
        let args = EngineArgs {
            tp,
            pp,
            nodes,
            gpus_per_node,
            ranks_per_node,
            layer_split: overrides
                .layer_split
                .clone()
                .unwrap_or_else(|| even_layer_split(model.layers, pp)),
            micro_batches: sweep.first().copied().or(overrides.micro_batches),
            batch_size: overrides.batch_size.unwrap_or(profile.engine.batch_size),
        };
        validate_layout(strategy, &args, model, &profile.cluster)?;
        Ok(Self {
            constraints: SlurmConstraints {
                nodes,
                ntasks_per_node: ranks_per_node,
                gpus_per_node: (gpus_per_node > 0).then_some(gpus_per_node),
                walltime: overrides.walltime.clone(),
            },
            args,
            sweep_micro_batches: sweep,
        })
    }

    /// Jobs a strategy produces over `variants` variants: one per variant and sweep point.
    pub fn expected_jobs(&self, variants: usize) -> usize {
        variants * self.sweep_micro_batches.len().max(1)
    }
}

/// Refuses an override that contradicts what the strategy is (pure TP with pp > 1, ...).
pub(crate) fn fixed(
    strategy: &'static str,
    field: &str,
    given: Option<usize>,
    required: usize,
    why: &str,
) -> Result<usize, StrategyError> {
    match given {
        Some(v) if v != required => Err(StrategyError::Invalid {
            strategy,
            reason: format!(
                "{field}={v} in [strategies.{strategy}], but {why}: {field} must be {required}"
            ),
        }),
        _ => Ok(required),
    }
}
