//! The Llama decoder-only transformer (Touvron et al., arXiv:2302.13971; Llama 3, arXiv:2407.21783),
//! loaded from HF tensor names (`model.embed_tokens`, `model.layers.{i}.self_attn.q_proj`, ...).
//!
//! One [`Llama`] is one rank's part of the model: its tensor-parallel slice ([`Shard`]) of the
//! layers of its pipeline stage ([`ShardPlan`]). A single rank holds the whole model.

use std::ops::Range;

use candle_core::{DType, Device, Tensor};

use super::attention::{causal_mask, SequenceSlot};
use super::block::{DecoderLayer, Residual};
use super::layers::RmsNorm;
use super::parallel::{ParallelLmHead, Shard, VocabParallelEmbedding};
use super::rope::RotaryEmbedding;
use crate::checkpoint::Checkpoint;
use crate::config::{LlamaConfig, ModelFiles};
use crate::dist::{Communicator, SoloCommunicator};
use crate::error::{EngineError, Result};
use crate::runtime::kv_cache::SequenceKvCache;

/// New tokens for several sequences, each with its KV cache. Every stage gets the token ids (they
/// lay out the batch); only the first stage embeds them.
pub struct SequenceBatch<'a> {
    pub tokens: Vec<&'a [u32]>,
    pub caches: Vec<&'a mut SequenceKvCache>,
}

/// What part of the model a rank holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    /// This rank's slice of every tensor-parallel layer.
    pub tp: Shard,
    /// Decoder layers of this rank's pipeline stage.
    pub layers: Range<usize>,
}

impl ShardPlan {
    /// The whole model on one rank.
    pub fn whole(config: &LlamaConfig) -> Self {
        Self {
            tp: Shard::WHOLE,
            layers: 0..config.num_hidden_layers,
        }
    }
}

/// Splits `layers` over `stages`: evenly, the remainder to the earlier stages, unless `explicit`
/// gives each stage's count.
pub fn split_layers(
    layers: usize,
    stages: usize,
    explicit: Option<&[usize]>,
) -> Result<Vec<Range<usize>>> {
    if stages == 0 || stages > layers {
        return Err(EngineError::Request(format!(
            "--pp {stages}: a pipeline needs between 1 and {layers} stages (the model has {layers} layers)"
        )));
    }
    let counts: Vec<usize> = match explicit {
        Some(counts) => {
            if counts.len() != stages
                || counts.iter().sum::<usize>() != layers
                || counts.contains(&0)
            {
                return Err(EngineError::Request(format!(
                    "--pp-layers {counts:?}: needs {stages} positive counts summing to {layers}"
                )));
            }
            counts.to_vec()
        }
        None => (0..stages)
            .map(|s| layers / stages + usize::from(s < layers % stages))
            .collect(),
    };
    let mut start = 0;
    Ok(counts
        .into_iter()
        .map(|n| {
            start += n;
            start - n..start
        })
        .collect())
}

/// Logits of this rank's vocabulary slice, `(rows, slice)` in f32.
#[derive(Debug, Clone)]
pub struct ShardedLogits {
    pub local: Tensor,
    pub vocab_start: usize,
    pub vocab_size: usize,
}

/// What a stage produces: hidden states for the next stage, or logits on the last one.
#[derive(Debug, Clone)]
pub enum StageOutput {
    /// `(sequences' new tokens, hidden)`.
    Hidden(Tensor),
    /// One row per sequence: its last token.
    Logits(ShardedLogits),
}

#[derive(Debug, Clone)]
pub struct Llama {
    config: LlamaConfig,
    plan: ShardPlan,
    embed_tokens: Option<VocabParallelEmbedding>,
    layers: Vec<DecoderLayer>,
    norm: Option<RmsNorm>,
    lm_head: Option<ParallelLmHead>,
    rotary: RotaryEmbedding,
    dtype: DType,
    device: Device,
}

impl Llama {
    /// Loads a HF Llama folder's config and all of its weights on one rank.
    pub fn load_dir(dir: &std::path::Path, dtype: DType, device: &Device) -> Result<Self> {
        let (config, ck) = open_dir(dir)?;
        let plan = ShardPlan::whole(&config);
        Self::load(&ck, config, plan, dtype, device)
    }

    /// Loads the part of the model in `plan`, reading only its slices from the checkpoint.
    pub fn load(
        ck: &Checkpoint,
        config: LlamaConfig,
        plan: ShardPlan,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (v, h) = (config.vocab_size, config.hidden_size);
        let first = plan.layers.start == 0;
        let last = plan.layers.end == config.num_hidden_layers;
        let needs_embedding = first || (last && config.tie_word_embeddings);
        let embed = needs_embedding
            .then(|| {
                VocabParallelEmbedding::load(
                    ck,
                    "model.embed_tokens.weight",
                    v,
                    h,
                    plan.tp,
                    dtype,
                    device,
                )
            })
            .transpose()?;
        let lm_head = if !last {
            None
        } else if config.tie_word_embeddings {
            embed.as_ref().map(|e| ParallelLmHead::tied(e, v))
        } else {
            Some(ParallelLmHead::load(ck, v, h, plan.tp, dtype, device)?)
        };
        let layers = plan
            .layers
            .clone()
            .map(|i| DecoderLayer::load(ck, i, &config, plan.tp, dtype, device))
            .collect::<Result<_>>()?;
        let norm = last
            .then(|| RmsNorm::load(ck, "model.norm", h, config.rms_norm_eps, dtype, device))
            .transpose()?;
        Ok(Self {
            embed_tokens: if first { embed } else { None },
            layers,
            norm,
            lm_head,
            rotary: RotaryEmbedding::new(&config, dtype, device)?,
            config,
            plan,
            dtype,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn plan(&self) -> &ShardPlan {
        &self.plan
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// A KV cache for one sequence of up to `capacity` tokens, for this rank's layers and heads.
    pub fn new_cache(&self, capacity: usize) -> Result<SequenceKvCache> {
        let kv_heads = self.layers.first().map_or(0, |l| l.local_kv_heads());
        SequenceKvCache::new(
            self.layers.len(),
            kv_heads,
            self.config.head_dim(),
            capacity,
            self.dtype,
            &self.device,
        )
    }

    /// Single-rank convenience: the whole model, logits `(sequences, vocab)` of each sequence's
    /// last token.
    pub fn forward(&self, batch: SequenceBatch<'_>) -> Result<Tensor> {
        match self.forward_stage(batch, None, &SoloCommunicator)? {
            StageOutput::Logits(logits) if logits.vocab_start == 0 => Ok(logits.local),
            _ => Err(EngineError::Request(
                "forward() needs the whole model on one rank".into(),
            )),
        }
    }

    /// Runs this rank's part: embeds the tokens (first stage) or takes `hidden` from the previous
    /// stage, appends to the caches, and returns hidden states or, on the last stage, the logits of
    /// each sequence's last token for this rank's vocabulary slice.
    pub fn forward_stage(
        &self,
        batch: SequenceBatch<'_>,
        hidden: Option<Tensor>,
        tp: &dyn Communicator,
    ) -> Result<StageOutput> {
        let SequenceBatch { tokens, mut caches } = batch;
        if tokens.len() != caches.len() || tokens.is_empty() || tokens.iter().any(|t| t.is_empty())
        {
            return Err(EngineError::Request(
                "a batch needs one cache and at least one new token per sequence".into(),
            ));
        }
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut slots = Vec::with_capacity(tokens.len());
        let mut last_rows = Vec::with_capacity(tokens.len());
        for (seq, cache) in tokens.iter().zip(caches.iter()) {
            let cached = cache.len();
            if cached + seq.len() > self.rotary.max_positions() {
                return Err(EngineError::Request(format!(
                    "sequence of {} tokens exceeds the context length {}",
                    cached + seq.len(),
                    self.rotary.max_positions()
                )));
            }
            if let Some(bad) = seq
                .iter()
                .find(|&&id| id as usize >= self.config.vocab_size)
            {
                return Err(EngineError::Request(format!(
                    "token id {bad} is outside the vocabulary of {}",
                    self.config.vocab_size
                )));
            }
            let offset = ids.len();
            ids.extend_from_slice(seq);
            positions.extend((cached..cached + seq.len()).map(|p| p as u32));
            let mask = (seq.len() > 1)
                .then(|| causal_mask(cached, seq.len(), self.dtype, &self.device))
                .transpose()?;
            slots.push(SequenceSlot {
                offset,
                len: seq.len(),
                mask,
            });
            last_rows.push((offset + seq.len() - 1) as u32);
        }
        let n = ids.len();
        let positions = Tensor::from_vec(positions, n, &self.device)?;
        let (cos, sin) = self.rotary.tables_for(&positions)?;

        let x = match (&self.embed_tokens, hidden) {
            (Some(embed), None) => embed.forward(&ids, tp)?,
            (None, Some(hidden)) => hidden,
            (Some(_), Some(_)) => {
                return Err(EngineError::Request(
                    "the first stage embeds its own tokens".into(),
                ))
            }
            (None, None) => {
                return Err(EngineError::Request(
                    "a later stage needs the previous stage's hidden states".into(),
                ))
            }
        };
        let mut x = Residual::new(x);
        for (index, layer) in self.layers.iter().enumerate() {
            let mut layer_caches: Vec<_> = caches.iter_mut().map(|c| c.layer_mut(index)).collect();
            x = layer.forward(x, &cos, &sin, &slots, &mut layer_caches, tp)?;
        }
        let (Some(norm), Some(lm_head)) = (&self.norm, &self.lm_head) else {
            return Ok(StageOutput::Hidden(x.resolve()?));
        };
        let last_rows = Tensor::from_vec(last_rows, slots.len(), &self.device)?;
        let last = x.select_rows(&last_rows)?;
        let normed = match &last.pending {
            Some(delta) => norm.add_and_forward(&last.stream, delta)?.1,
            None => norm.forward(&last.stream)?,
        };
        let logits = lm_head.forward(&normed)?.to_dtype(DType::F32)?;
        Ok(StageOutput::Logits(ShardedLogits {
            local: logits,
            vocab_start: lm_head.vocab_start,
            vocab_size: lm_head.vocab_size,
        }))
    }
}

/// Reads `config.json` and opens the weights of a model folder.
pub fn open_dir(dir: &std::path::Path) -> Result<(LlamaConfig, Checkpoint)> {
    let files = ModelFiles::new(dir);
    if !files.config().exists() {
        return Err(EngineError::file(
            files.config(),
            "missing: not a Hugging Face model folder",
        ));
    }
    let config = LlamaConfig::from_file(&files.config())?;
    let ck = Checkpoint::open(&files)?;
    Ok((config, ck))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_split_evenly_with_the_remainder_first() {
        assert_eq!(
            split_layers(30, 4, None).unwrap(),
            vec![0..8, 8..16, 16..23, 23..30]
        );
        assert_eq!(
            split_layers(80, 2, Some(&[30, 50])).unwrap(),
            vec![0..30, 30..80]
        );
        assert!(split_layers(3, 4, None).is_err());
        assert!(split_layers(80, 2, Some(&[40, 39])).is_err());
    }
}
