//! The basic layers: linear without bias, RMSNorm and token embedding, over packed tokens
//! of shape `(tokens, features)`.

use candle_core::{DType, Device, Tensor};

use crate::checkpoint::Checkpoint;
use crate::error::Result;

/// `y = x W^T`, with `W` stored `(out_features, in_features)` as in HF checkpoints.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
}

impl Linear {
    pub fn new(weight: Tensor) -> Self {
        Self { weight }
    }

    /// Loads `{prefix}.weight` of shape `(out_features, in_features)`.
    pub fn load(
        ck: &Checkpoint,
        prefix: &str,
        out_features: usize,
        in_features: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let weight = ck.load(
            &format!("{prefix}.weight"),
            &[out_features, in_features],
            dtype,
            device,
        )?;
        Ok(Self::new(weight))
    }

    /// `x`: `(tokens, in_features)`. Few tokens (decode) take the streaming kernel, which reads
    /// each weight once without packing it; many (prefill) take candle's GEMM.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(kernels::linear_small_batch(x, &self.weight)?)
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

/// Root-mean-square norm (Zhang & Sennrich, 2019) with a learned scale, fused in candle.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn load(
        ck: &Checkpoint,
        prefix: &str,
        size: usize,
        eps: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let weight = ck.load(&format!("{prefix}.weight"), &[size], dtype, device)?;
        Ok(Self {
            weight,
            eps: eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(x, &self.weight, self.eps)?)
    }

    /// `(x + delta, norm(x + delta))` in one pass: the residual add before a pre-norm, fused.
    pub fn add_and_forward(&self, x: &Tensor, delta: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok(kernels::add_rms_norm(x, delta, &self.weight, self.eps)?)
    }
}

/// Token embedding table, `(vocab, hidden)`.
#[derive(Debug, Clone)]
pub struct Embedding {
    table: Tensor,
}

impl Embedding {
    pub fn new(table: Tensor) -> Self {
        Self { table }
    }

    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self.table.index_select(ids, 0)?)
    }

    pub fn table(&self) -> &Tensor {
        &self.table
    }
}
