//! The fixed cost of a decoder layer in decode, beyond reading its weights: the engine's own layer
//! code (norms, rotary positions, the KV cache, attention's glue, the activation, the kernels'
//! calls) at SmolLM2-135M's widths, measured on a random-weight model as the difference between
//! a stack of many layers and one of few, less the time their extra weights take to stream.

use std::time::Instant;

use candle_core::{DType, Device};
use serde::Serialize;

use super::median;
use crate::checkpoint::synth::{preset_config, synthesize_config, Preset, SynthOptions};
use crate::dist::SoloCommunicator;
use crate::error::{EngineError, Result};
use crate::model::llama::{open_dir, Llama, SequenceBatch, ShardPlan};
use crate::model::parallel::Shard;

/// What a decoder layer costs in decode on this rank.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerOverhead {
    /// Seconds per layer per decode step beyond streaming its weights (at least 0).
    pub overhead_s: f64,
    /// Seconds per layer per decode step, all of it.
    pub layer_s: f64,
    /// Bytes of one layer's weights.
    pub layer_bytes: usize,
    /// `(hidden, intermediate, heads, kv_heads)` of the layers.
    pub shape: [usize; 4],
}

// SmolLM2-135M's widths; a small vocabulary, since only the layers are timed.
const SHAPE: (usize, usize, usize, usize) = (576, 1536, 9, 3);
const FEW: usize = 2;
const MANY: usize = 12;
const STEPS: usize = 24;

/// Measures on a model written into a temporary folder (removed after); `gemv_bytes_per_s` is
/// the weight streaming rate to take out.
pub fn measure(gemv_bytes_per_s: f64) -> Result<LayerOverhead> {
    let dir = std::env::temp_dir().join(format!("shardlab-calibrate-{}", std::process::id()));
    let result = measure_in(&dir, gemv_bytes_per_s);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure_in(dir: &std::path::Path, gemv_bytes_per_s: f64) -> Result<LayerOverhead> {
    let (hidden, intermediate, heads, kv_heads) = SHAPE;
    let mut config = preset_config(Preset::Tiny);
    config.hidden_size = hidden;
    config.intermediate_size = intermediate;
    config.num_attention_heads = heads;
    config.num_key_value_heads = Some(kv_heads);
    config.num_hidden_layers = MANY;
    config.vocab_size = 4096;
    config.bos_token_id = Some(1);
    config.eos_token_id = None;
    let options = SynthOptions {
        preset: Preset::Tiny,
        layers: None,
        kv_heads: None,
        dtype: DType::F32,
        seed: 0,
        max_shard_bytes: 1 << 30,
        tokenizer_dir: None,
    };
    synthesize_config(config, &options, dir)?;
    let (config, ck) = open_dir(dir)?;
    let step_seconds = |layers: usize| -> Result<f64> {
        let plan = ShardPlan {
            tp: Shard::WHOLE,
            layers: 0..layers,
        };
        let model = Llama::load(&ck, config.clone(), plan, DType::F32, &Device::Cpu)?;
        let mut cache = model.new_cache(STEPS + 8)?;
        let mut times = Vec::with_capacity(STEPS);
        for step in 0..STEPS + 2 {
            let token = [1 + step as u32];
            let start = Instant::now();
            model.forward_stage(
                SequenceBatch {
                    tokens: vec![&token],
                    caches: vec![&mut cache],
                },
                None,
                &SoloCommunicator,
            )?;
            // The first steps warm the caches and the allocator: not timed.
            if step >= 2 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        Ok(median(&mut times))
    };
    let few = step_seconds(FEW)?;
    let many = step_seconds(MANY)?;
    let layer_s = (many - few) / (MANY - FEW) as f64;
    let head_dim = hidden / heads;
    let layer_params = 2 * hidden * heads * head_dim
        + 2 * hidden * kv_heads * head_dim
        + 3 * hidden * intermediate
        + 2 * hidden;
    let layer_bytes = layer_params * 4;
    if !layer_s.is_finite() {
        return Err(EngineError::Request(format!(
            "calibrate: a decode step of {FEW} layers took {few} s, of {MANY} layers {many} s"
        )));
    }
    Ok(LayerOverhead {
        overhead_s: (layer_s - layer_bytes as f64 / gemv_bytes_per_s).max(0.0),
        layer_s,
        layer_bytes,
        shape: [hidden, intermediate, heads, kv_heads],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_costs_at_least_its_overhead() {
        let o = measure(10e9).unwrap();
        assert_eq!(
            o.layer_bytes,
            4 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536 + 1152)
        );
        assert!(
            o.layer_s > 0.0 && o.overhead_s >= 0.0 && o.overhead_s <= o.layer_s,
            "{o:?}"
        );
    }
}
