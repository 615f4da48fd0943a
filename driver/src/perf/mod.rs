//! A roofline performance model of the strategies: from the model's shape, the cluster's hardware
//! (a profile's `[hardware]`) and a strategy's layout, the time to first token, decode time per
//! token, decode tokens/s and memory per GPU, each with the term that dominates it (compute, HBM,
//! intra-node or inter-node communication, pipeline bubble). `driver plan --predict` prints them.
//!
//! `hardware.rs` the device and link figures (GPUs, or CPU ranks sharing a host's cores),
//! `hardware_spec.rs` the profile's `[hardware]` and preset files, `calibration.rs` the preset
//! `driver calibrate` measures for a CPU machine, `model_shape.rs` the model's widths,
//! `formulas.rs` every formula with its source, `placement.rs` which links a layout uses,
//! `predict.rs` one strategy's figures, `recommend.rs` the picks for latency and throughput,
//! `table.rs` the text, `run_inputs.rs` what a run folder keeps to predict its figures later.
//!
//! Not for: timing runs (the engine measures; the report compares, `metrics::report`).

pub mod calibration;
pub mod formulas;
pub mod hardware;
pub mod hardware_spec;
pub mod model_shape;
pub mod placement;
pub mod predict;
pub mod recommend;
pub mod run_inputs;
pub mod table;

use serde::Serialize;

pub use hardware::{CpuHost, Hardware, HardwareError, Link};
pub use hardware_spec::HardwareSpec;
pub use model_shape::ModelShape;
pub use predict::{predict, Estimate, StrategyPrediction, Term, VariantPrediction, Workload};
pub use run_inputs::{PerfInputs, StrategyLayout};

use crate::parallelism::strategy::StrategyError;
use crate::parallelism::ParallelismStrategy;
use crate::slurm::profile::ClusterProfile;

/// Why a prediction cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error("the performance model needs the model's `{key}`: state it in the profile's [model], or leave the whole shape to the model's config.json")]
    MissingWidth { key: &'static str },
    #[error("engine dtype `{dtype}`: the performance model knows bf16, f16 and f32")]
    UnknownDtype { dtype: String },
    #[error("cluster profile {profile} has no [hardware] section: add one (e.g. `preset = \"h100-sxm\"`) or pass --hardware PRESET")]
    NoHardware { profile: String },
    #[error("cluster profile {profile}: {error}")]
    Hardware {
        profile: String,
        error: HardwareError,
    },
    #[error(transparent)]
    Model(#[from] StrategyError),
    #[error(transparent)]
    Inputs(run_inputs::PerfInputsError),
}

/// A run's predictions and what they assumed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Predictions {
    /// The hardware at peak (predictions apply its achievable fraction).
    pub hardware: Hardware,
    pub model: ModelShape,
    pub workload: Workload,
    pub strategies: Vec<StrategyPrediction>,
}

/// Predicts every given strategy of a run from its profile: the profile's `[hardware]`, its model
/// (and engine dtype) and its workload.
pub fn predict_strategies(
    profile: &ClusterProfile,
    strategies: &[Box<dyn ParallelismStrategy>],
) -> Result<Predictions, PerfError> {
    let mut hardware = profile
        .hardware
        .as_ref()
        .ok_or_else(|| PerfError::NoHardware {
            profile: profile.name.clone(),
        })?
        .resolve()
        .map_err(|error| PerfError::Hardware {
            profile: profile.name.clone(),
            error,
        })?;
    if let Some(host) = &mut hardware.host {
        host.single_host = profile.cluster.one_host;
    }
    let model = ModelShape::from_facts(&profile.model.facts()?, profile.engine.dtype.as_deref())?;
    let workload = Workload::from_profile(profile);
    let strategies = strategies
        .iter()
        .map(|s| predict(s.name(), &s.engine_args(), &model, &hardware, &workload))
        .collect();
    Ok(Predictions {
        hardware,
        model,
        workload,
        strategies,
    })
}
