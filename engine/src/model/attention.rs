//! Causal self-attention with grouped-query heads (Ainslie et al., arXiv:2305.13245) and rotary
//! positions, over packed sequences, each attending to its own KV cache.
//!
//! Grouped heads are handled without materialising repeated K/V: the query heads that share a KV
//! head are folded into the row dimension, `(kv_heads, group * tokens, head_dim)`, so one batched
//! matmul per sequence covers them all.

use candle_core::{DType, Device, Tensor};

use super::layers::Linear;
use super::rope::apply_rotary;
use crate::checkpoint::Checkpoint;
use crate::config::LlamaConfig;
use crate::error::Result;
use crate::runtime::kv_cache::LayerKvCache;

/// Where one sequence sits in a packed batch, and its causal mask when it has several new tokens.
#[derive(Debug, Clone)]
pub struct SequenceSlot {
    /// First row of this sequence in the packed token dimension.
    pub offset: usize,
    /// New tokens of this sequence in this forward pass.
    pub len: usize,
    /// Additive mask `(len, cached + len)`, `None` for a single new token.
    pub mask: Option<Tensor>,
}

#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn load(
        ck: &Checkpoint,
        prefix: &str,
        cfg: &LlamaConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads());
        Ok(Self {
            q_proj: Linear::load(ck, &format!("{prefix}.q_proj"), nh * hd, h, dtype, device)?,
            k_proj: Linear::load(ck, &format!("{prefix}.k_proj"), nkv * hd, h, dtype, device)?,
            v_proj: Linear::load(ck, &format!("{prefix}.v_proj"), nkv * hd, h, dtype, device)?,
            o_proj: Linear::load(ck, &format!("{prefix}.o_proj"), h, nh * hd, dtype, device)?,
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim: hd,
        })
    }

    /// `x`: `(tokens, hidden)` packed over `slots`; `caches[i]` belongs to `slots[i]`.
    pub fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        slots: &[SequenceSlot],
        caches: &mut [&mut LayerKvCache],
    ) -> Result<Tensor> {
        let tokens = x.dim(0)?;
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let q = self.q_proj.forward(x)?.reshape((1, tokens, nh, hd))?;
        let k = self.k_proj.forward(x)?.reshape((1, tokens, nkv, hd))?;
        let v = self.v_proj.forward(x)?.reshape((tokens, nkv, hd))?;
        let q = apply_rotary(&q, cos, sin)?.squeeze(0)?;
        let k = apply_rotary(&k, cos, sin)?.squeeze(0)?;

        let group = nh / nkv;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut outputs = Vec::with_capacity(slots.len());
        for (slot, cache) in slots.iter().zip(caches.iter_mut()) {
            let n = slot.len;
            // (n, heads, hd) -> (kv_heads, group * n, hd): query heads sharing a KV head are adjacent.
            let q = q.narrow(0, slot.offset, n)?.transpose(0, 1)?.contiguous()?;
            let q = q.reshape((nkv, group * n, hd))?;
            let k_new = k.narrow(0, slot.offset, n)?.transpose(0, 1)?.contiguous()?;
            let v_new = v.narrow(0, slot.offset, n)?.transpose(0, 1)?.contiguous()?;
            let (keys, values) = cache.append(&k_new, &v_new)?;
            let kv_len = keys.dim(1)?;
            let scores = (q.matmul(&keys.t()?)? * scale)?;
            let scores = match &slot.mask {
                Some(mask) => scores
                    .reshape((nkv, group, n, kv_len))?
                    .broadcast_add(mask)?
                    .reshape((nkv, group * n, kv_len))?,
                None => scores,
            };
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let out = probs.matmul(&values)?; // (kv_heads, group * n, hd)
            let out = out
                .reshape((nh, n, hd))?
                .transpose(0, 1)?
                .reshape((n, nh * hd))?;
            outputs.push(out);
        }
        let attended = if outputs.len() == 1 {
            outputs.pop().expect("one output")
        } else {
            Tensor::cat(&outputs, 0)?
        };
        self.o_proj.forward(&attended)
    }
}

/// Causal mask for `new` tokens following `cached` ones: 0 where allowed, -inf above the diagonal.
pub fn causal_mask(cached: usize, new: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let total = cached + new;
    let mask: Vec<f32> = (0..new)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > cached + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (new, total), device)?.to_dtype(dtype)?)
}
