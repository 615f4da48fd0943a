//! The facts about a model that decide which parallel layouts are possible: attention heads, KV
//! heads, layers (and the MLP width), from a Hugging Face `config.json` or stated in a profile;
//! and the widths the performance model (`crate::perf`) counts FLOPs and bytes with.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::strategy::StrategyError;

/// The shape facts of a Llama-architecture model that constrain tp and pp (and size its costs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFacts {
    /// Query heads (`num_attention_heads`).
    pub heads: usize,
    /// KV heads (`num_key_value_heads`; the query heads when absent: no GQA).
    pub kv_heads: usize,
    /// Decoder layers (`num_hidden_layers`).
    pub layers: usize,
    /// MLP width (`intermediate_size`), split by column-parallel gate/up projections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<usize>,
    /// Model width (`hidden_size`); only the performance model needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_size: Option<usize>,
    /// Width of one attention head (`head_dim`; absent: hidden_size / heads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Vocabulary (`vocab_size`): the embedding's and the LM head's rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<usize>,
    /// The LM head reuses the embedding's weights (`tie_word_embeddings`, HF's default false).
    #[serde(default)]
    pub tie_word_embeddings: bool,
}

/// The fields of `config.json` this module reads.
#[derive(Deserialize)]
struct HfConfig {
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    num_hidden_layers: usize,
    #[serde(default)]
    intermediate_size: Option<usize>,
    #[serde(default)]
    hidden_size: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default)]
    vocab_size: Option<usize>,
    #[serde(default)]
    tie_word_embeddings: bool,
}

impl ModelFacts {
    /// Llama 3.3 70B Instruct (its config.json): 64 heads, 8 KV heads, 80 layers, hidden 8192,
    /// head_dim 128, MLP 28672, vocab 128256, untied LM head.
    pub fn llama_3_3_70b() -> Self {
        Self {
            heads: 64,
            kv_heads: 8,
            layers: 80,
            intermediate_size: Some(28672),
            hidden_size: Some(8192),
            head_dim: Some(128),
            vocab_size: Some(128256),
            tie_word_embeddings: false,
        }
    }

    /// Reads the facts from a Hugging Face `config.json`; errors name the file and the field.
    pub fn from_config_json(path: &Path) -> Result<Self, StrategyError> {
        let text = std::fs::read_to_string(path).map_err(|e| StrategyError::ModelConfig {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let config: HfConfig =
            serde_json::from_str(&text).map_err(|e| StrategyError::ModelConfig {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let facts = Self {
            heads: config.num_attention_heads,
            kv_heads: config
                .num_key_value_heads
                .unwrap_or(config.num_attention_heads),
            layers: config.num_hidden_layers,
            intermediate_size: config.intermediate_size,
            hidden_size: config.hidden_size,
            head_dim: config.head_dim,
            vocab_size: config.vocab_size,
            tie_word_embeddings: config.tie_word_embeddings,
        };
        facts.check().map_err(|reason| StrategyError::ModelConfig {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(facts)
    }

    /// The facts must describe a model at all: non-zero counts, query heads grouped over KV heads.
    pub fn check(&self) -> Result<(), String> {
        if self.heads == 0 || self.kv_heads == 0 || self.layers == 0 {
            return Err(format!(
                "num_attention_heads ({}), num_key_value_heads ({}) and num_hidden_layers ({}) must all be positive",
                self.heads, self.kv_heads, self.layers
            ));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "num_key_value_heads ({}) does not divide num_attention_heads ({})",
                self.kv_heads, self.heads
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_heads_kv_heads_and_layers_from_config_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"num_attention_heads": 9, "num_key_value_heads": 3, "num_hidden_layers": 30,
                "hidden_size": 576, "intermediate_size": 1536}"#,
        )
        .unwrap();
        let facts = ModelFacts::from_config_json(&path).unwrap();
        assert_eq!((facts.heads, facts.kv_heads, facts.layers), (9, 3, 30));
        assert_eq!(facts.intermediate_size, Some(1536));
        assert_eq!(facts.hidden_size, Some(576));
        assert_eq!((facts.head_dim, facts.vocab_size), (None, None));
        assert!(!facts.tie_word_embeddings);
    }

    #[test]
    fn reads_the_widths_the_performance_model_needs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"num_attention_heads": 9, "num_key_value_heads": 3, "num_hidden_layers": 30,
                "hidden_size": 576, "head_dim": 64, "vocab_size": 49152,
                "tie_word_embeddings": true}"#,
        )
        .unwrap();
        let facts = ModelFacts::from_config_json(&path).unwrap();
        assert_eq!(
            (facts.hidden_size, facts.head_dim, facts.vocab_size),
            (Some(576), Some(64), Some(49152))
        );
        assert!(facts.tie_word_embeddings);
    }

    #[test]
    fn missing_kv_heads_means_one_kv_head_per_query_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"num_attention_heads": 8, "num_hidden_layers": 2}"#,
        )
        .unwrap();
        assert_eq!(ModelFacts::from_config_json(&path).unwrap().kv_heads, 8);
    }

    #[test]
    fn a_config_without_layers_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"num_attention_heads": 8}"#).unwrap();
        let err = ModelFacts::from_config_json(&path).unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("num_hidden_layers"),
            "{err}"
        );
    }
}
