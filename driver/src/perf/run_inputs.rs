//! [`PerfInputs`]: what a run folder keeps (`perf_inputs.json`) so that its report can predict
//! every strategy's figures later from the folder alone: the resolved hardware, the model's
//! shape and each strategy's layout, as they were when the run started.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::hardware::Hardware;
use super::model_shape::ModelShape;
use super::predict::{predict, PromptLength, VariantPrediction, Workload};
use super::{PerfError, Predictions};
use crate::fsutil::write_atomic;
use crate::parallelism::strategy::EngineArgs;

/// The file in a run folder.
pub const PERF_INPUTS_FILE: &str = "perf_inputs.json";

/// One strategy's name and layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyLayout {
    pub strategy: String,
    pub args: EngineArgs,
}

/// The performance model's inputs for one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfInputs {
    /// Peak figures (the achievable fraction applies at prediction time).
    pub hardware: Hardware,
    pub model: ModelShape,
    /// Bytes of one activation value in all-reduces and sends.
    pub activation_bytes: usize,
    pub strategies: Vec<StrategyLayout>,
}

/// A run folder's inputs that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PerfInputsError {
    pub path: PathBuf,
    pub message: String,
}

impl PerfInputs {
    /// The inputs behind a run's predictions (`predict_strategies`' result).
    pub fn from_predictions(p: &Predictions, layouts: Vec<StrategyLayout>) -> Self {
        Self {
            hardware: p.hardware.clone(),
            model: p.model.clone(),
            activation_bytes: p.workload.activation_bytes,
            strategies: layouts,
        }
    }

    /// Writes `perf_inputs.json` into the run folder, atomically.
    pub fn save(&self, run_dir: &Path) -> Result<(), PerfInputsError> {
        let path = run_dir.join(PERF_INPUTS_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| PerfInputsError {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&path, text.as_bytes()).map_err(|e| PerfInputsError {
            path,
            message: format!("cannot write: {e}"),
        })
    }

    /// The run folder's inputs; none when the run has no `perf_inputs.json` (its profile had no
    /// `[hardware]`, or it predates them).
    pub fn load(run_dir: &Path) -> Result<Option<Self>, PerfInputsError> {
        let path = run_dir.join(PERF_INPUTS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(PerfInputsError {
                    path,
                    message: format!("cannot read: {e}"),
                })
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| PerfInputsError {
                path,
                message: format!("not the performance model's inputs: {e}"),
            })
    }

    /// One strategy's figures for `batch` prompts of `prompt_tokens` generating `new_tokens`
    /// each; none for a strategy the run did not record.
    pub fn predict_group(
        &self,
        strategy: &str,
        variant: &str,
        prompt_tokens: usize,
        new_tokens: usize,
        batch: usize,
    ) -> Option<VariantPrediction> {
        let layout = self.strategies.iter().find(|s| s.strategy == strategy)?;
        let args = EngineArgs {
            batch_size: batch.max(1),
            ..layout.args.clone()
        };
        let workload = Workload {
            prompts: vec![PromptLength {
                variant: variant.into(),
                tokens: prompt_tokens,
            }],
            new_tokens,
            activation_bytes: self.activation_bytes,
        };
        predict(strategy, &args, &self.model, &self.hardware, &workload)
            .variants
            .into_iter()
            .next()
    }
}

impl From<PerfInputsError> for PerfError {
    fn from(e: PerfInputsError) -> Self {
        PerfError::Inputs(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallelism::rules::even_layer_split;
    use crate::perf::HardwareSpec;

    fn inputs() -> PerfInputs {
        PerfInputs {
            hardware: HardwareSpec::preset("h100-sxm").resolve().unwrap(),
            model: ModelShape::llama_3_3_70b_bf16(),
            activation_bytes: 4,
            strategies: vec![StrategyLayout {
                strategy: "tp-single-node".into(),
                args: EngineArgs {
                    tp: 8,
                    pp: 1,
                    nodes: 1,
                    gpus_per_node: 8,
                    ranks_per_node: 8,
                    layer_split: even_layer_split(80, 1),
                    micro_batches: None,
                    batch_size: 8,
                },
            }],
        }
    }

    #[test]
    fn inputs_round_trip_through_the_run_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(PerfInputs::load(dir.path()).unwrap(), None);
        inputs().save(dir.path()).unwrap();
        assert_eq!(PerfInputs::load(dir.path()).unwrap(), Some(inputs()));
        std::fs::write(dir.path().join(PERF_INPUTS_FILE), "{").unwrap();
        let err = PerfInputs::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(PERF_INPUTS_FILE), "{err}");
    }

    #[test]
    fn a_group_is_predicted_at_its_own_length_and_batch() {
        let i = inputs();
        let one = i
            .predict_group("tp-single-node", "2k", 2048, 256, 1)
            .unwrap();
        let four = i
            .predict_group("tp-single-node", "2k", 2048, 256, 4)
            .unwrap();
        assert_eq!(one.prompt_tokens, 2048);
        // Four prompts prefill one after another; decode reads the weights once for all four.
        assert!((four.ttft_batch.seconds() / one.ttft_batch.seconds() - 4.0).abs() < 1e-9);
        assert!(four.decode_batch.seconds() < 1.1 * one.decode_batch.seconds());
        assert!(i
            .predict_group("pp-across-nodes", "2k", 2048, 256, 1)
            .is_none());
    }
}
