//! A model folder loaded once: weights, tokenizer and end-of-generation ids together.

use std::path::Path;

use candle_core::{DType, Device};

use crate::config::{GenerationConfig, LlamaConfig, ModelFiles};
use crate::error::Result;
use crate::model::Llama;
use crate::tokenizer::ModelTokenizer;

use super::generate::Generator;

/// Everything needed to generate from a HF model folder.
pub struct LoadedModel {
    pub model: Llama,
    pub tokenizer: ModelTokenizer,
    /// Union of `eos_token_id` in config.json and generation_config.json.
    pub end_of_generation: Vec<u32>,
}

impl LoadedModel {
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let files = ModelFiles::new(dir);
        let model = Llama::load_dir(dir, dtype, device)?;
        let tokenizer = ModelTokenizer::from_dir(dir)?;
        let mut end_of_generation: Vec<u32> = model
            .config()
            .eos_token_id
            .as_ref()
            .map(|ids| ids.to_vec())
            .unwrap_or_default();
        if let Some(generation) = GenerationConfig::from_file_if_exists(&files.generation_config())?
        {
            end_of_generation.extend(
                generation
                    .eos_token_id
                    .map(|ids| ids.to_vec())
                    .unwrap_or_default(),
            );
        }
        end_of_generation.sort_unstable();
        end_of_generation.dedup();
        Ok(Self {
            model,
            tokenizer,
            end_of_generation,
        })
    }

    pub fn generator(&self) -> Generator<'_> {
        Generator::new(
            &self.model,
            &self.tokenizer,
            self.end_of_generation.iter().copied(),
        )
    }
}

/// Union of `eos_token_id` in config.json and generation_config.json.
pub fn end_of_generation_ids(dir: &Path, config: &LlamaConfig) -> Result<Vec<u32>> {
    let files = ModelFiles::new(dir);
    let mut ids: Vec<u32> = config
        .eos_token_id
        .as_ref()
        .map(|ids| ids.to_vec())
        .unwrap_or_default();
    if let Some(generation) = GenerationConfig::from_file_if_exists(&files.generation_config())? {
        ids.extend(
            generation
                .eos_token_id
                .map(|ids| ids.to_vec())
                .unwrap_or_default(),
        );
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}
