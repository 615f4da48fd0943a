//! Causal self-attention with grouped-query heads (Ainslie et al., arXiv:2305.13245) and rotary
//! positions, over packed sequences, each attending to its own KV cache.
//!
//! Grouped heads are handled without materialising repeated K/V: the query heads that share a KV
//! head are folded into the row dimension, `(kv_heads, group * tokens, head_dim)`, so one batched
//! matmul per sequence covers them all.

use candle_core::{DType, Device, Tensor};

use super::parallel::{ColumnParallelLinear, HeadShard, RowParallelLinear, Shard};
use super::rope::rotate_in_place;
use crate::checkpoint::Checkpoint;
use crate::config::LlamaConfig;
use crate::dist::Communicator;
use crate::error::Result;
use crate::runtime::kv_cache::LayerKvCache;

/// Query rows per attention chunk during prefill.
const PREFILL_CHUNK: usize = 128;

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
    q_proj: ColumnParallelLinear,
    k_proj: ColumnParallelLinear,
    v_proj: ColumnParallelLinear,
    o_proj: RowParallelLinear,
    /// Query heads on this rank.
    num_heads: usize,
    /// KV heads on this rank (replicated across ranks when tp exceeds the model's KV heads).
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// Loads this rank's heads: q/k/v rows and o columns of the heads in `shard`.
    pub fn load(
        ck: &Checkpoint,
        prefix: &str,
        cfg: &LlamaConfig,
        shard: Shard,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads());
        let heads = HeadShard::new(nh, nkv, shard)?;
        let q_rows = (heads.q_start * hd, heads.q_heads * hd);
        let kv_rows = (heads.kv_start * hd, heads.kv_heads * hd);
        let p = |name: &str| format!("{prefix}.{name}");
        Ok(Self {
            q_proj: ColumnParallelLinear::load_rows(
                ck,
                &p("q_proj"),
                nh * hd,
                h,
                q_rows,
                dtype,
                device,
            )?,
            k_proj: ColumnParallelLinear::load_rows(
                ck,
                &p("k_proj"),
                nkv * hd,
                h,
                kv_rows,
                dtype,
                device,
            )?,
            v_proj: ColumnParallelLinear::load_rows(
                ck,
                &p("v_proj"),
                nkv * hd,
                h,
                kv_rows,
                dtype,
                device,
            )?,
            o_proj: RowParallelLinear::load_cols(
                ck,
                &p("o_proj"),
                h,
                nh * hd,
                q_rows,
                dtype,
                device,
            )?,
            num_heads: heads.q_heads,
            num_kv_heads: heads.kv_heads,
            head_dim: hd,
        })
    }

    /// KV heads this rank caches.
    pub fn local_kv_heads(&self) -> usize {
        self.num_kv_heads
    }

    /// `x`: `(tokens, hidden)` packed over `slots`; `caches[i]` belongs to `slots[i]`.
    pub fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        slots: &[SequenceSlot],
        caches: &mut [&mut LayerKvCache],
        tp: &dyn Communicator,
    ) -> Result<Tensor> {
        let tokens = x.dim(0)?;
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let q = self.q_proj.forward(x)?.reshape((tokens, nh, hd))?;
        let k = self.k_proj.forward(x)?.reshape((tokens, nkv, hd))?;
        let v = self.v_proj.forward(x)?.reshape((tokens, nkv, hd))?;
        // The projections' outputs are fresh buffers: rotate them where they lie.
        rotate_in_place(&q, cos, sin)?;
        rotate_in_place(&k, cos, sin)?;

        let scale = 1.0 / (hd as f64).sqrt();
        let mut outputs = Vec::with_capacity(slots.len());
        for (slot, cache) in slots.iter().zip(caches.iter_mut()) {
            let n = slot.len;
            let k_new = k.narrow(0, slot.offset, n)?.transpose(0, 1)?.contiguous()?;
            let v_new = v.narrow(0, slot.offset, n)?.transpose(0, 1)?.contiguous()?;
            let (keys, values) = cache.append(&k_new, &v_new)?;
            if n == 1 && kernels::decode_attention_supported(&q, &keys) {
                // One new token: the fused kernel reads the cache in place.
                let q_row = q.narrow(0, slot.offset, 1)?.reshape((nh, hd))?;
                let (key_buf, value_buf) = cache.buffers();
                let len = cache.len();
                outputs.push(kernels::decode_attention(
                    &q_row,
                    key_buf,
                    value_buf,
                    len,
                    scale as f32,
                )?);
                continue;
            }
            outputs.push(prefill_attention(
                &q.narrow(0, slot.offset, n)?,
                &keys,
                &values,
                slot.mask.as_ref(),
                (nh, nkv, hd),
                scale,
            )?);
        }
        let attended = if outputs.len() == 1 {
            outputs.pop().expect("one output")
        } else {
            Tensor::cat(&outputs, 0)?
        };
        self.o_proj.forward(&attended, tp)
    }
}

/// Attention of `n` new query rows `(n, heads, hd)` against the cached keys and values
/// `(kv_heads, cached + n, hd)` (the last `n` rows the new tokens'), with the additive causal
/// `mask` `(n, cached + n)`, in chunks of query rows: a chunk only reads the keys it can see
/// (skipping the masked upper triangle, about a third of the work for a long prompt) and the score
/// buffer stays bounded. `heads`: (query heads, KV heads, head width). Returns `(n, heads * hd)`.
pub fn prefill_attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    mask: Option<&Tensor>,
    (nh, nkv, hd): (usize, usize, usize),
    scale: f64,
) -> Result<Tensor> {
    let group = nh / nkv;
    let n = q.dim(0)?;
    let cached = keys.dim(1)? - n;
    // (n, heads, hd) -> (kv_heads, group, n, hd): query heads sharing a KV head are adjacent.
    let q = q
        .transpose(0, 1)?
        .contiguous()?
        .reshape((nkv, group, n, hd))?;
    let mut chunks = Vec::with_capacity(n.div_ceil(PREFILL_CHUNK));
    for start in (0..n).step_by(PREFILL_CHUNK) {
        let rows = PREFILL_CHUNK.min(n - start);
        let visible = cached + start + rows;
        let q = q
            .narrow(2, start, rows)?
            .contiguous()?
            .reshape((nkv, group * rows, hd))?;
        let keys = keys.narrow(1, 0, visible)?;
        let scores = (q.matmul(&keys.t()?)? * scale)?;
        let scores = match mask {
            Some(mask) => scores
                .reshape((nkv, group, rows, visible))?
                .broadcast_add(&mask.narrow(0, start, rows)?.narrow(1, 0, visible)?)?
                .reshape((nkv, group * rows, visible))?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&values.narrow(1, 0, visible)?)?; // (kv_heads, group * rows, hd)
        chunks.push(out.reshape((nh, rows, hd))?);
    }
    let out = if chunks.len() == 1 {
        chunks.pop().expect("one chunk")
    } else {
        Tensor::cat(&chunks, 1)?
    };
    Ok(out.transpose(0, 1)?.reshape((n, nh * hd))?)
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
