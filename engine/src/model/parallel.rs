//! Tensor-parallel layers in Megatron-LM's vocabulary: each rank holds a slice of a weight,
//! read straight from the checkpoint, and the layer says where the group must communicate.
//!
//! - [`ColumnParallelLinear`] splits the output features (q/k/v, gate/up): no communication, the
//!   output stays sharded.
//! - [`RowParallelLinear`] splits the input features (o, down) and sums the partial products with
//!   an all-reduce: the two all-reduces of a layer.
//! - [`VocabParallelEmbedding`] and [`ParallelLmHead`] split the vocabulary.

use candle_core::{DType, Device, Tensor};

use super::layers::Linear;
use crate::checkpoint::Checkpoint;
use crate::dist::{Communicator, HalfFormat};
use crate::error::{EngineError, Result};

/// Which slice of a dimension this rank holds: `rank` of `size` equal parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub size: usize,
}

impl Shard {
    pub const WHOLE: Shard = Shard { rank: 0, size: 1 };

    pub fn new(rank: usize, size: usize) -> Self {
        Self { rank, size }
    }

    /// `(start, len)` of this rank's part of `total`, which must divide evenly.
    pub fn even_range(&self, total: usize, what: &str) -> Result<(usize, usize)> {
        if !total.is_multiple_of(self.size) {
            return Err(EngineError::Request(format!(
                "tensor parallel size {} does not divide {what} ({total})",
                self.size
            )));
        }
        let len = total / self.size;
        Ok((self.rank * len, len))
    }

    /// `(start, len)` of this rank's part of `total` split as evenly as possible (the first ranks
    /// take one more): for vocabularies that tp does not divide.
    pub fn uneven_range(&self, total: usize) -> (usize, usize) {
        let base = total / self.size;
        let extra = total % self.size;
        let start = self.rank * base + self.rank.min(extra);
        (start, base + usize::from(self.rank < extra))
    }
}

/// Sums a tensor over the group (identity for a group of one). In f32, unless the group asks for
/// the model's dtype (`--allreduce-dtype model`) and that is bf16 or f16.
pub fn all_reduce(x: &Tensor, group: &dyn Communicator) -> Result<Tensor> {
    if group.size() == 1 {
        return Ok(x.clone());
    }
    let dtype = x.dtype();
    let half = match dtype {
        DType::BF16 if group.reduces_in_model_dtype() => Some(HalfFormat::Bf16),
        DType::F16 if group.reduces_in_model_dtype() => Some(HalfFormat::F16),
        _ => None,
    };
    if let Some(device) = crate::dist::transfer::on_device(group, x.device()) {
        // On the GPU (NCCL): in place on device memory, in f32 unless asked for the model's dtype.
        let wire = if half.is_some() { dtype } else { DType::F32 };
        return Ok(device.all_reduce_sum(&x.to_dtype(wire)?)?.to_dtype(dtype)?);
    }
    let flat = x.flatten_all()?;
    match half {
        Some(format) => {
            let mut bits: Vec<u16> = match format {
                HalfFormat::Bf16 => flat
                    .to_vec1::<half::bf16>()?
                    .into_iter()
                    .map(half::bf16::to_bits)
                    .collect(),
                HalfFormat::F16 => flat
                    .to_vec1::<half::f16>()?
                    .into_iter()
                    .map(half::f16::to_bits)
                    .collect(),
            };
            {
                let _span =
                    tracing::info_span!("all_reduce", values = bits.len(), bytes = bits.len() * 2)
                        .entered();
                group.all_reduce_sum_half(&mut bits, format)?;
            }
            let summed = match format {
                HalfFormat::Bf16 => Tensor::from_vec(
                    bits.into_iter()
                        .map(half::bf16::from_bits)
                        .collect::<Vec<_>>(),
                    x.shape(),
                    x.device(),
                )?,
                HalfFormat::F16 => Tensor::from_vec(
                    bits.into_iter()
                        .map(half::f16::from_bits)
                        .collect::<Vec<_>>(),
                    x.shape(),
                    x.device(),
                )?,
            };
            Ok(summed)
        }
        None => {
            let mut data = flat.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            {
                let _span =
                    tracing::info_span!("all_reduce", values = data.len(), bytes = data.len() * 4)
                        .entered();
                group.all_reduce_sum(&mut data)?;
            }
            Ok(Tensor::from_vec(data, x.shape(), x.device())?.to_dtype(dtype)?)
        }
    }
}

/// A linear layer whose output features are split over the group.
#[derive(Debug, Clone)]
pub struct ColumnParallelLinear {
    local: Linear,
}

impl ColumnParallelLinear {
    /// Loads rows `start..start+len` of `{prefix}.weight` (shape `(out_features, in_features)`).
    #[allow(clippy::too_many_arguments)]
    pub fn load_rows(
        ck: &Checkpoint,
        prefix: &str,
        out_features: usize,
        in_features: usize,
        (start, len): (usize, usize),
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let name = format!("{prefix}.weight");
        let weight = ck.load_rows(
            &name,
            &[out_features, in_features],
            start,
            len,
            dtype,
            device,
        )?;
        Ok(Self {
            local: Linear::new(weight),
        })
    }

    /// `(tokens, in)` -> this rank's `(tokens, out / tp)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.local.forward(x)
    }
}

/// A linear layer whose input features are split over the group; the output is all-reduced.
#[derive(Debug, Clone)]
pub struct RowParallelLinear {
    local: Linear,
}

impl RowParallelLinear {
    /// Loads columns `start..start+len` of `{prefix}.weight` (shape `(out_features, in_features)`).
    #[allow(clippy::too_many_arguments)]
    pub fn load_cols(
        ck: &Checkpoint,
        prefix: &str,
        out_features: usize,
        in_features: usize,
        (start, len): (usize, usize),
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let name = format!("{prefix}.weight");
        let weight = ck.load_cols(
            &name,
            &[out_features, in_features],
            start,
            len,
            dtype,
            device,
        )?;
        Ok(Self {
            local: Linear::new(weight),
        })
    }

    /// This rank's `(tokens, in / tp)` -> the full `(tokens, out)`, summed over the group.
    pub fn forward(&self, x: &Tensor, group: &dyn Communicator) -> Result<Tensor> {
        all_reduce(&self.local.forward(x)?, group)
    }
}

/// Token embedding split over the vocabulary: each rank looks up the ids it holds, zeros the rest,
/// and an all-reduce assembles the rows.
#[derive(Debug, Clone)]
pub struct VocabParallelEmbedding {
    table: Tensor,
    start: usize,
}

impl VocabParallelEmbedding {
    pub fn load(
        ck: &Checkpoint,
        name: &str,
        vocab: usize,
        hidden: usize,
        shard: Shard,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (start, len) = shard.uneven_range(vocab);
        let table = ck.load_rows(name, &[vocab, hidden], start, len, dtype, device)?;
        Ok(Self { table, start })
    }

    pub fn table(&self) -> &Tensor {
        &self.table
    }

    pub fn forward(&self, ids: &[u32], group: &dyn Communicator) -> Result<Tensor> {
        let device = self.table.device();
        let local_vocab = self.table.dim(0)?;
        if group.size() == 1 {
            let ids = Tensor::new(ids, device)?;
            return Ok(self.table.index_select(&ids, 0)?);
        }
        let end = self.start + local_vocab;
        let (local, keep): (Vec<u32>, Vec<f32>) = ids
            .iter()
            .map(|&id| {
                let id = id as usize;
                if (self.start..end).contains(&id) {
                    ((id - self.start) as u32, 1.0)
                } else {
                    (0, 0.0)
                }
            })
            .unzip();
        let rows = self.table.index_select(&Tensor::new(local, device)?, 0)?;
        let keep = Tensor::from_vec(keep, (ids.len(), 1), device)?.to_dtype(rows.dtype())?;
        all_reduce(&rows.broadcast_mul(&keep)?, group)
    }
}

/// The output projection split over the vocabulary: each rank computes the logits of its slice.
#[derive(Debug, Clone)]
pub struct ParallelLmHead {
    local: Linear,
    /// First vocabulary id of this rank's slice.
    pub vocab_start: usize,
    pub vocab_size: usize,
}

impl ParallelLmHead {
    /// Loads this rank's slice of `lm_head.weight`.
    pub fn load(
        ck: &Checkpoint,
        vocab: usize,
        hidden: usize,
        shard: Shard,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (start, len) = shard.uneven_range(vocab);
        let weight = ck.load_rows(
            "lm_head.weight",
            &[vocab, hidden],
            start,
            len,
            dtype,
            device,
        )?;
        Ok(Self {
            local: Linear::new(weight),
            vocab_start: start,
            vocab_size: vocab,
        })
    }

    /// Tied to the embedding: reuses its slice (the same vocabulary split).
    pub fn tied(embedding: &VocabParallelEmbedding, vocab: usize) -> Self {
        Self {
            local: Linear::new(embedding.table().clone()),
            vocab_start: embedding.start,
            vocab_size: vocab,
        }
    }

    /// `(rows, hidden)` -> this rank's logits `(rows, vocab slice)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.local.forward(x)
    }
}

/// The query heads and KV heads a rank holds. With `tp <= kv_heads` each rank has `kv_heads / tp`
/// KV heads; with more ranks than KV heads (Llama 3.3 70B at tp=16) each KV head is replicated on
/// `tp / kv_heads` ranks, each of which holds the query heads that use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadShard {
    pub q_start: usize,
    pub q_heads: usize,
    pub kv_start: usize,
    pub kv_heads: usize,
}

impl HeadShard {
    pub fn new(num_heads: usize, num_kv_heads: usize, shard: Shard) -> Result<Self> {
        let tp = shard.size;
        if !num_heads.is_multiple_of(tp) {
            return Err(EngineError::Request(format!(
                "tensor parallel size {tp} does not divide num_attention_heads ({num_heads})"
            )));
        }
        let q_heads = num_heads / tp;
        let q_start = shard.rank * q_heads;
        let group = num_heads / num_kv_heads;
        let (kv_start, kv_heads) = if tp <= num_kv_heads {
            if !num_kv_heads.is_multiple_of(tp) {
                return Err(EngineError::Request(format!(
                    "tensor parallel size {tp} does not divide num_key_value_heads ({num_kv_heads})"
                )));
            }
            (shard.rank * num_kv_heads / tp, num_kv_heads / tp)
        } else {
            if !tp.is_multiple_of(num_kv_heads) {
                return Err(EngineError::Request(format!(
                    "tensor parallel size {tp} is above num_key_value_heads ({num_kv_heads}) but not a multiple of it, so KV heads cannot be replicated evenly"
                )));
            }
            (q_start / group, 1)
        };
        Ok(Self {
            q_start,
            q_heads,
            kv_start,
            kv_heads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_heads_are_replicated_past_their_count() {
        // Llama 3.3 70B: 64 heads, 8 KV heads.
        let at = |rank, tp| HeadShard::new(64, 8, Shard::new(rank, tp)).unwrap();
        assert_eq!(
            at(3, 8),
            HeadShard {
                q_start: 24,
                q_heads: 8,
                kv_start: 3,
                kv_heads: 1
            }
        );
        assert_eq!(
            at(5, 16),
            HeadShard {
                q_start: 20,
                q_heads: 4,
                kv_start: 2,
                kv_heads: 1
            }
        );
        assert_eq!(
            at(1, 4),
            HeadShard {
                q_start: 16,
                q_heads: 16,
                kv_start: 2,
                kv_heads: 2
            }
        );
        assert!(HeadShard::new(64, 8, Shard::new(0, 12)).is_err());
        // SmolLM2: 9 heads, 3 KV heads.
        assert_eq!(
            HeadShard::new(9, 3, Shard::new(2, 3)).unwrap(),
            HeadShard {
                q_start: 6,
                q_heads: 3,
                kv_start: 2,
                kv_heads: 1
            }
        );
    }

    #[test]
    fn uneven_vocab_ranges_cover_everything() {
        let parts: Vec<_> = (0..3).map(|r| Shard::new(r, 3).uneven_range(10)).collect();
        assert_eq!(parts, vec![(0, 4), (4, 3), (7, 3)]);
    }
}
