//! Hugging Face `config.json` and `generation_config.json` for Llama models.
//!
//! Mirrors the HF field names so a checkpoint's config reads side by side with the struct. Covers
//! the Llama 3.x additions: GQA (`num_key_value_heads`), `rope_scaling` of type `llama3`,
//! `tie_word_embeddings`, and `eos_token_id` as a number or a list.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// One token id or several (HF writes both forms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            Self::One(id) => vec![*id],
            Self::Many(ids) => ids.clone(),
        }
    }
}

/// `rope_scaling` as written by HF. Only `llama3` (and `default`) are supported; anything else is
/// refused at load time rather than silently computed wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    /// HF writes `rope_type`; older configs write `type`.
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_freq_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_freq_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<usize>,
}

/// Llama 3 frequency-dependent rope scaling ("llama3" in HF).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// A Llama `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    #[serde(default = "default_architectures")]
    pub architectures: Vec<String>,
    #[serde(default = "default_model_type")]
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
}

fn default_architectures() -> Vec<String> {
    vec!["LlamaForCausalLM".into()]
}
fn default_model_type() -> String {
    "llama".into()
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_position_embeddings() -> usize {
    4096
}
fn default_hidden_act() -> String {
    "silu".into()
}

impl LlamaConfig {
    /// Reads and validates `config.json`; every error names the file and the field.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EngineError::io(path, "cannot read model config", e))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| {
            EngineError::config(path, json_error_field(&e), format!("invalid config: {e}"))
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Writes the config as pretty JSON (atomically).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| EngineError::config(path, "*", e.to_string()))?;
        crate::fsutil::write_atomic(path, text.as_bytes())
    }

    /// Checks the fields the engine relies on, naming the first one that is wrong.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, message: String| Err(EngineError::config(path, field, message));
        if self.model_type != "llama" {
            return bad(
                "model_type",
                format!("expected \"llama\", found {:?}", self.model_type),
            );
        }
        if self.hidden_act != "silu" {
            return bad(
                "hidden_act",
                format!("only \"silu\" is supported, found {:?}", self.hidden_act),
            );
        }
        for (field, value) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if value == 0 {
                return bad(field, "must be positive".into());
            }
        }
        let kv = self.num_key_value_heads();
        if kv == 0 || !self.num_attention_heads.is_multiple_of(kv) {
            return bad(
                "num_key_value_heads",
                format!(
                    "{kv} does not divide num_attention_heads {}",
                    self.num_attention_heads
                ),
            );
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(
                "hidden_size",
                format!(
                    "{} is not a multiple of num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            );
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(
                "head_dim",
                format!("{} must be even for rope", self.head_dim()),
            );
        }
        if self.rms_norm_eps.is_nan() || self.rms_norm_eps <= 0.0 {
            return bad("rms_norm_eps", "must be positive".into());
        }
        if self.rope_theta.is_nan() || self.rope_theta <= 0.0 {
            return bad("rope_theta", "must be positive".into());
        }
        self.llama3_rope_scaling()
            .map_err(|(field, message)| EngineError::config(path, field, message))?;
        Ok(())
    }

    pub fn num_key_value_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// The llama3 rope scaling, `None` for plain rope; `Err((field, message))` for unknown types.
    pub fn llama3_rope_scaling(
        &self,
    ) -> std::result::Result<Option<Llama3RopeScaling>, (String, String)> {
        let Some(scaling) = &self.rope_scaling else {
            return Ok(None);
        };
        match scaling.rope_type.as_str() {
            "default" => Ok(None),
            "llama3" => {
                let need = |name: &str, v: Option<f64>| {
                    v.ok_or_else(|| {
                        (
                            format!("rope_scaling.{name}"),
                            "required for rope_type \"llama3\"".to_string(),
                        )
                    })
                };
                let s = Llama3RopeScaling {
                    factor: need("factor", scaling.factor)?,
                    low_freq_factor: need("low_freq_factor", scaling.low_freq_factor)?,
                    high_freq_factor: need("high_freq_factor", scaling.high_freq_factor)?,
                    original_max_position_embeddings: scaling
                        .original_max_position_embeddings
                        .ok_or_else(|| {
                            (
                                "rope_scaling.original_max_position_embeddings".to_string(),
                                "required for rope_type \"llama3\"".to_string(),
                            )
                        })?,
                };
                if s.high_freq_factor <= s.low_freq_factor {
                    return Err((
                        "rope_scaling.high_freq_factor".into(),
                        "must be greater than low_freq_factor".into(),
                    ));
                }
                Ok(Some(s))
            }
            other => Err((
                "rope_scaling.rope_type".into(),
                format!("unsupported rope type {other:?} (supported: \"default\", \"llama3\")"),
            )),
        }
    }
}

/// HF `generation_config.json`: where the end-of-generation ids live for instruct models.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
}

impl GenerationConfig {
    /// Reads `generation_config.json` if present; a missing file is not an error.
    pub fn from_file_if_exists(path: &Path) -> Result<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| EngineError::io(path, "cannot read generation config", e))?;
        serde_json::from_str(&text).map(Some).map_err(|e| {
            EngineError::config(path, json_error_field(&e), format!("invalid JSON: {e}"))
        })
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| EngineError::config(path, "*", e.to_string()))?;
        crate::fsutil::write_atomic(path, text.as_bytes())
    }
}

/// Best effort at naming the field a serde error is about ("missing field `x`" / "unknown variant").
fn json_error_field(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if let Some(rest) = msg.split('`').nth(1) {
        return rest.to_string();
    }
    format!("line {} column {}", e.line(), e.column())
}

/// The files of a Hugging Face model folder.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
}

impl ModelFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn generation_config(&self) -> PathBuf {
        self.dir.join("generation_config.json")
    }
    pub fn tokenizer(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }
    pub fn tokenizer_config(&self) -> PathBuf {
        self.dir.join("tokenizer_config.json")
    }
    pub fn single_weights(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
    pub fn weights_index(&self) -> PathBuf {
        self.dir.join("model.safetensors.index.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA33_70B: &str = r#"{
      "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 128000,
      "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 8192,
      "initializer_range": 0.02, "intermediate_size": 28672, "max_position_embeddings": 131072,
      "mlp_bias": false, "model_type": "llama", "num_attention_heads": 64, "num_hidden_layers": 80,
      "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
      "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192, "rope_type": "llama3"},
      "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
      "transformers_version": "4.47.0.dev0", "use_cache": true, "vocab_size": 128256}"#;

    #[test]
    fn parses_llama33_70b_config() {
        let c: LlamaConfig = serde_json::from_str(LLAMA33_70B).unwrap();
        c.validate(Path::new("config.json")).unwrap();
        assert_eq!(c.head_dim(), 128);
        assert_eq!(c.num_key_value_heads(), 8);
        assert_eq!(
            c.eos_token_id.as_ref().unwrap().to_vec(),
            vec![128001, 128008, 128009]
        );
        let s = c.llama3_rope_scaling().unwrap().unwrap();
        assert_eq!(s.factor, 8.0);
        assert_eq!(s.original_max_position_embeddings, 8192);
    }

    #[test]
    fn unknown_rope_type_names_the_field() {
        let text = LLAMA33_70B.replace("\"llama3\"", "\"yarn\"");
        let c: LlamaConfig = serde_json::from_str(&text).unwrap();
        let err = c
            .validate(Path::new("m/config.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("m/config.json"), "{err}");
        assert!(err.contains("rope_scaling.rope_type"), "{err}");
        assert!(err.contains("yarn"), "{err}");
    }

    #[test]
    fn eos_as_single_number() {
        let text = LLAMA33_70B.replace("[128001, 128008, 128009]", "2");
        let c: LlamaConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(c.eos_token_id.unwrap().to_vec(), vec![2]);
    }
}
