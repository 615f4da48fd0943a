//! The Llama decoder-only transformer (Touvron et al., arXiv:2302.13971; Llama 3, arXiv:2407.21783),
//! loaded from HF tensor names (`model.embed_tokens`, `model.layers.{i}.self_attn.q_proj`, ...).

use candle_core::{DType, Device, Tensor};

use super::attention::{causal_mask, SequenceSlot};
use super::block::DecoderLayer;
use super::layers::{Embedding, Linear, RmsNorm};
use super::rope::RotaryEmbedding;
use crate::checkpoint::Checkpoint;
use crate::config::{LlamaConfig, ModelFiles};
use crate::error::{EngineError, Result};
use crate::runtime::kv_cache::SequenceKvCache;

/// New tokens for several sequences, each with its KV cache.
pub struct SequenceBatch<'a> {
    pub tokens: Vec<&'a [u32]>,
    pub caches: Vec<&'a mut SequenceKvCache>,
}

#[derive(Debug, Clone)]
pub struct Llama {
    config: LlamaConfig,
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rotary: RotaryEmbedding,
    dtype: DType,
    device: Device,
}

impl Llama {
    /// Loads a HF Llama folder's config and weights.
    pub fn load_dir(dir: &std::path::Path, dtype: DType, device: &Device) -> Result<Self> {
        let files = ModelFiles::new(dir);
        if !files.config().exists() {
            return Err(EngineError::file(
                files.config(),
                "missing: not a Hugging Face model folder",
            ));
        }
        let config = LlamaConfig::from_file(&files.config())?;
        let ck = Checkpoint::open(&files)?;
        Self::load(&ck, config, dtype, device)
    }

    pub fn load(
        ck: &Checkpoint,
        config: LlamaConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (v, h) = (config.vocab_size, config.hidden_size);
        let embed = ck.load("model.embed_tokens.weight", &[v, h], dtype, device)?;
        let lm_head = if config.tie_word_embeddings {
            Linear::new(embed.clone())
        } else {
            Linear::load(ck, "lm_head", v, h, dtype, device)?
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| DecoderLayer::load(ck, i, &config, dtype, device))
            .collect::<Result<_>>()?;
        Ok(Self {
            embed_tokens: Embedding::new(embed),
            layers,
            norm: RmsNorm::load(ck, "model.norm", h, config.rms_norm_eps, dtype, device)?,
            lm_head,
            rotary: RotaryEmbedding::new(&config, dtype, device)?,
            config,
            dtype,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A KV cache for one sequence of up to `capacity` tokens.
    pub fn new_cache(&self, capacity: usize) -> Result<SequenceKvCache> {
        SequenceKvCache::new(
            self.layers.len(),
            self.config.num_key_value_heads(),
            self.config.head_dim(),
            capacity,
            self.dtype,
            &self.device,
        )
    }

    /// Runs the new tokens of each sequence through the model, appending to their caches, and
    /// returns the logits of each sequence's last token, `(sequences, vocab)` in f32.
    pub fn forward(&self, batch: SequenceBatch<'_>) -> Result<Tensor> {
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
            let mask = if seq.len() > 1 {
                Some(causal_mask(cached, seq.len(), self.dtype, &self.device)?)
            } else {
                None
            };
            slots.push(SequenceSlot {
                offset,
                len: seq.len(),
                mask,
            });
            last_rows.push((offset + seq.len() - 1) as u32);
        }
        let n = ids.len();
        let ids = Tensor::from_vec(ids, n, &self.device)?;
        let positions = Tensor::from_vec(positions, n, &self.device)?;
        let (cos, sin) = self.rotary.tables_for(&positions)?;

        let mut x = self.embed_tokens.forward(&ids)?;
        for (index, layer) in self.layers.iter().enumerate() {
            let mut layer_caches: Vec<_> = caches.iter_mut().map(|c| c.layer_mut(index)).collect();
            x = layer.forward(&x, &cos, &sin, &slots, &mut layer_caches)?;
        }
        let last_rows = Tensor::from_vec(last_rows, slots.len(), &self.device)?;
        let last = x.index_select(&last_rows, 0)?;
        let logits = self.lm_head.forward(&self.norm.forward(&last)?)?;
        Ok(logits.to_dtype(DType::F32)?)
    }
}
