//! One decoder layer: pre-norm attention and pre-norm MLP, each with a residual connection.
//!
//! Each residual add is fused into the RMSNorm that follows it (`kernels::add_rms_norm`): the
//! attention's output into the MLP's norm, and the MLP's output into the next layer's input
//! norm (or the final norm), so a layer hands on its MLP output still to be added ([`Residual`]).

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
        residual: Residual,
        cos: &Tensor,
        sin: &Tensor,
        slots: &[SequenceSlot],
        caches: &mut [&mut LayerKvCache],
        tp: &dyn Communicator,
    ) -> Result<Residual> {
        let (x, normed) = match &residual.pending {
            Some(delta) => self
                .input_layernorm
                .add_and_forward(&residual.stream, delta)?,
            None => (
                residual.stream.clone(),
                self.input_layernorm.forward(&residual.stream)?,
            ),
        };
        let attn = self
            .self_attn
            .forward(&normed, cos, sin, slots, caches, tp)?;
        let (x, normed) = self.post_attention_layernorm.add_and_forward(&x, &attn)?;
        Ok(Residual {
            stream: x,
            pending: Some(self.mlp.forward(&normed, tp)?),
        })
    }
}

/// The hidden states between layers: the residual stream and the last sublayer's output, which
/// is added to it by the next norm (fused) or by [`Residual::resolve`].
#[derive(Debug, Clone)]
pub struct Residual {
    pub stream: Tensor,
    pub pending: Option<Tensor>,
}

impl Residual {
    /// Hidden states with nothing pending (the embedding, or a previous stage's output).
    pub fn new(hidden: Tensor) -> Self {
        Self {
            stream: hidden,
            pending: None,
        }
    }

    /// The hidden states with the pending output added.
    pub fn resolve(self) -> Result<Tensor> {
        Ok(match self.pending {
            Some(delta) => (self.stream + delta)?,
            None => self.stream,
        })
    }

    /// The given rows of both parts (the last stage only needs each sequence's last token).
    pub fn select_rows(&self, rows: &Tensor) -> Result<Self> {
        Ok(Self {
            stream: self.stream.index_select(rows, 0)?,
            pending: match &self.pending {
                Some(delta) => Some(delta.index_select(rows, 0)?),
                None => None,
            },
        })
    }
}

impl DecoderLayer {
    /// KV heads this rank caches for the layer.
    pub fn local_kv_heads(&self) -> usize {
        self.self_attn.local_kv_heads()
    }
}
