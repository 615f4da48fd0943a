//! The SwiGLU feed-forward block (Shazeer, arXiv:2002.05202): `down(silu(gate(x)) * up(x))`.

use candle_core::{DType, Device, Tensor};

use super::layers::Linear;
use crate::checkpoint::Checkpoint;
use crate::config::LlamaConfig;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    pub fn load(
        ck: &Checkpoint,
        prefix: &str,
        cfg: &LlamaConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: Linear::load(ck, &format!("{prefix}.gate_proj"), i, h, dtype, device)?,
            up_proj: Linear::load(ck, &format!("{prefix}.up_proj"), i, h, dtype, device)?,
            down_proj: Linear::load(ck, &format!("{prefix}.down_proj"), h, i, dtype, device)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate_proj.forward(x)?)?;
        let hidden = (gate * self.up_proj.forward(x)?)?;
        self.down_proj.forward(&hidden)
    }
}
