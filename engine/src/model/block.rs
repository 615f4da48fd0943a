//! One decoder layer: pre-norm attention and pre-norm MLP, each with a residual connection.

use candle_core::{DType, Device, Tensor};

use super::attention::{Attention, SequenceSlot};
use super::layers::RmsNorm;
use super::mlp::Mlp;
use super::parallel::Shard;
use crate::checkpoint::Checkpoint;
use crate::config::LlamaConfig;
use crate::dist::Communicator;
use crate::error::Result;
use crate::runtime::kv_cache::LayerKvCache;

#[derive(Debug, Clone)]
pub struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    /// Loads `model.layers.{index}.*`.
    pub fn load(
        ck: &Checkpoint,
        index: usize,
        cfg: &LlamaConfig,
        shard: Shard,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let p = format!("model.layers.{index}");
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(Self {
            input_layernorm: RmsNorm::load(
                ck,
                &format!("{p}.input_layernorm"),
                h,
                eps,
                dtype,
                device,
            )?,
            self_attn: Attention::load(ck, &format!("{p}.self_attn"), cfg, shard, dtype, device)?,
            post_attention_layernorm: RmsNorm::load(
                ck,
                &format!("{p}.post_attention_layernorm"),
                h,
                eps,
                dtype,
                device,
            )?,
            mlp: Mlp::load(ck, &format!("{p}.mlp"), cfg, shard, dtype, device)?,
        })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        slots: &[SequenceSlot],
        caches: &mut [&mut LayerKvCache],
        tp: &dyn Communicator,
    ) -> Result<Tensor> {
        let attn = self.self_attn.forward(
            &self.input_layernorm.forward(x)?,
            cos,
            sin,
            slots,
            caches,
            tp,
        )?;
        let x = (x + attn)?;
        let mlp = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&x)?, tp)?;
        Ok((x + mlp)?)
    }
}

impl DecoderLayer {
    /// KV heads this rank caches for the layer.
    pub fn local_kv_heads(&self) -> usize {
        self.self_attn.local_kv_heads()
    }
}
