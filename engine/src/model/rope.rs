//! Rotary position embeddings (RoFormer, arXiv:2104.09864) in HF's rotate-half layout, with
//! Llama 3's frequency-dependent scaling (`rope_type: "llama3"`).

use candle_core::{DType, Device, Tensor};

use crate::config::{Llama3RopeScaling, LlamaConfig};
use crate::error::Result;

/// Cos/sin tables for every position up to the context length.
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    cos: Tensor,
    sin: Tensor,
}

/// Inverse frequencies, computed in f32 as HF and candle-transformers do.
pub fn inverse_frequencies(
    head_dim: usize,
    theta: f32,
    scaling: Option<Llama3RopeScaling>,
) -> Vec<f32> {
    let base: Vec<f32> = (0..head_dim)
        .step_by(2)
        .map(|i| 1f32 / theta.powf(i as f32 / head_dim as f32))
        .collect();
    let Some(s) = scaling else { return base };
    // Llama 3: keep high frequencies, divide low ones by `factor`, interpolate in between.
    let original = s.original_max_position_embeddings as f32;
    let (factor, low, high) = (
        s.factor as f32,
        s.low_freq_factor as f32,
        s.high_freq_factor as f32,
    );
    let low_freq_wavelen = original / low;
    let high_freq_wavelen = original / high;
    base.into_iter()
        .map(|freq| {
            let wavelen = 2. * std::f32::consts::PI / freq;
            if wavelen < high_freq_wavelen {
                freq
            } else if wavelen > low_freq_wavelen {
                freq / factor
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                (1. - smooth) * freq / factor + smooth * freq
            }
        })
        .collect()
}

impl RotaryEmbedding {
    pub fn new(config: &LlamaConfig, dtype: DType, device: &Device) -> Result<Self> {
        let scaling = config.llama3_rope_scaling().ok().flatten();
        let inv_freq = inverse_frequencies(config.head_dim(), config.rope_theta as f32, scaling);
        let half = inv_freq.len();
        let positions = config.max_position_embeddings;
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let t = Tensor::arange(0u32, positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((positions, 1))?;
        let freqs = t.broadcast_mul(&inv_freq)?;
        Ok(Self {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
        })
    }

    /// Cos and sin rows for the given positions (one per packed token), shape `(tokens, head_dim/2)`.
    pub fn tables_for(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.cos.index_select(positions, 0)?,
            self.sin.index_select(positions, 0)?,
        ))
    }

    pub fn max_positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }
}

/// Rotates `x` of shape `(tokens, heads, head_dim)` in place with per-token tables (the fused
/// kernel; `x` must own its buffer).
pub fn rotate_in_place(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<()> {
    Ok(kernels::rope_in_place(x, cos, sin)?)
}
