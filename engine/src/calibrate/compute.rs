//! One rank's compute rates, on the engine's own kernels: the prefill GEMM, the decode GEMV over
//! weights that do not fit in any cache, decode attention over a long KV cache, and prefill's
//! causal attention (the engine's chunked matmuls and softmax).

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::median_seconds;
use crate::error::Result;
use crate::model::attention::{causal_mask, prefill_attention};

/// What to measure, and how big.
#[derive(Debug, Clone, Copy)]
pub struct ComputeOptions {
    /// Total bytes of the weights the GEMV streams (far above the last-level cache).
    pub gemv_bytes: usize,
    /// Timed runs of each measurement (the median is kept).
    pub repeats: usize,
}

impl Default for ComputeOptions {
    fn default() -> Self {
        Self {
            gemv_bytes: 1 << 30,
            repeats: 5,
        }
    }
}

/// The rates one rank reaches with the threads it has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComputeRates {
    /// Threads the kernels ran on (candle's count: `RAYON_NUM_THREADS`, else every core).
    pub threads: usize,
    /// `x W^T` of a prefill chunk: 2·m·k·n FLOPs over the time.
    pub matmul_flops_per_s: f64,
    /// `(m, k, n)` of that matmul.
    pub matmul_shape: [usize; 3],
    /// One token times every weight matrix: weight bytes read over the time.
    pub gemv_bytes_per_s: f64,
    pub gemv_bytes: usize,
    /// Decode attention, one query token against a long cache: 4·len·heads·head_dim FLOPs per call
    /// over the time.
    pub decode_attention_flops_per_s: f64,
    /// `(heads, kv_heads, head_dim, len)` of each call.
    pub decode_attention_shape: [usize; 4],
    /// A prompt's causal attention: 4·n(n+1)/2·heads·head_dim FLOPs over the time.
    pub prefill_attention_flops_per_s: f64,
    /// `(heads, kv_heads, head_dim, n)` of that prompt.
    pub prefill_attention_shape: [usize; 4],
    /// A decoder layer's cost in decode beyond its weights.
    pub layer: super::layers::LayerOverhead,
}

// A prefill chunk of 512 tokens through a 1024 -> 2048 projection: big enough for the GEMM to
// reach its rate, small enough to time in tens of milliseconds.
const MATMUL: (usize, usize, usize) = (512, 1024, 2048);
// Weight matrices of 4096 x 4096 f32 (64 MiB each), read once per pass.
const GEMV_SIDE: usize = 4096;
// SmolLM2's grouping (three query heads per KV head), 64-wide heads, 2048 cached tokens; 64
// distinct caches (2 MiB each) so that a pass reads its keys and values from memory.
const ATTENTION: (usize, usize, usize, usize) = (6, 2, 64, 2048);
const ATTENTION_CACHES: usize = 64;
// A 1024-token prompt with the same heads.
const PREFILL_TOKENS: usize = 1024;

/// Measures the three rates on the CPU.
pub fn measure(options: ComputeOptions) -> Result<ComputeRates> {
    let device = Device::Cpu;
    let (m, k, n) = MATMUL;
    let x = Tensor::randn(0f32, 1.0, (m, k), &device)?;
    let w = Tensor::randn(0f32, 1.0, (n, k), &device)?;
    let mut failed = None;
    let matmul_s = median_seconds(options.repeats, || {
        if let Err(e) = kernels::linear_small_batch(&x, &w) {
            failed = Some(e);
        }
    });
    if let Some(e) = failed.take() {
        return Err(e.into());
    }

    // Filled (not zeroed) so every page is real memory, not the shared zero page.
    let matrices = (options.gemv_bytes / (GEMV_SIDE * GEMV_SIDE * 4)).max(1);
    let weights = (0..matrices)
        .map(|_| Tensor::full(0.5f32, (GEMV_SIDE, GEMV_SIDE), &device))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let token = Tensor::full(1.0f32, (1, GEMV_SIDE), &device)?;
    let gemv_s = median_seconds(options.repeats.min(3), || {
        for w in &weights {
            if let Err(e) = kernels::linear_small_batch(&token, w) {
                failed = Some(e);
            }
        }
    });
    drop(weights);
    if let Some(e) = failed.take() {
        return Err(e.into());
    }

    let (heads, kv_heads, head_dim, len) = ATTENTION;
    let q = Tensor::randn(0f32, 1.0, (heads, head_dim), &device)?;
    let caches = (0..ATTENTION_CACHES)
        .map(|_| {
            let kv = Tensor::randn(0f32, 1.0, (kv_heads, len, head_dim), &device)?;
            Ok((kv.clone(), (kv * 0.5)?))
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let attention_s = median_seconds(options.repeats, || {
        for (keys, values) in &caches {
            if let Err(e) = kernels::decode_attention(&q, keys, values, len, scale) {
                failed = Some(e);
            }
        }
    });
    if let Some(e) = failed.take() {
        return Err(e.into());
    }

    let tokens = PREFILL_TOKENS;
    let q = Tensor::randn(0f32, 1.0, (tokens, heads, head_dim), &device)?;
    let kv = Tensor::randn(0f32, 1.0, (kv_heads, tokens, head_dim), &device)?;
    let mask = causal_mask(0, tokens, candle_core::DType::F32, &device)?;
    let mut prefill_failed = None;
    let prefill_s = median_seconds(options.repeats, || {
        let shape = (heads, kv_heads, head_dim);
        if let Err(e) = prefill_attention(&q, &kv, &kv, Some(&mask), shape, scale as f64) {
            prefill_failed = Some(e);
        }
    });
    if let Some(e) = prefill_failed {
        return Err(e);
    }

    let gemv_bytes_per_s = (matrices * GEMV_SIDE * GEMV_SIDE * 4) as f64 / gemv_s;
    let layer = super::layers::measure(gemv_bytes_per_s)?;
    let attention_flops = (ATTENTION_CACHES * 4 * len * heads * head_dim) as f64;
    Ok(ComputeRates {
        threads: candle_core::utils::get_num_threads(),
        matmul_flops_per_s: 2.0 * (m * k * n) as f64 / matmul_s,
        matmul_shape: [m, k, n],
        gemv_bytes_per_s,
        gemv_bytes: matrices * GEMV_SIDE * GEMV_SIDE * 4,
        decode_attention_flops_per_s: attention_flops / attention_s,
        decode_attention_shape: [heads, kv_heads, head_dim, len],
        prefill_attention_flops_per_s: (4 * tokens * (tokens + 1) / 2 * heads * head_dim) as f64
            / prefill_s,
        prefill_attention_shape: [heads, kv_heads, head_dim, tokens],
        layer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_measurements_give_positive_rates() {
        let rates = measure(ComputeOptions {
            gemv_bytes: 1 << 26,
            repeats: 1,
        })
        .unwrap();
        assert!(rates.matmul_flops_per_s > 1e8, "{rates:?}");
        assert!(rates.gemv_bytes_per_s > 1e8, "{rates:?}");
        assert!(rates.decode_attention_flops_per_s > 1e7, "{rates:?}");
        assert!(rates.prefill_attention_flops_per_s > 1e7, "{rates:?}");
        assert_eq!(rates.gemv_bytes, 1 << 26);
    }
}
