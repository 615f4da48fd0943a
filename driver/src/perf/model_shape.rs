//! [`ModelShape`]: every width of a Llama-architecture model the cost formulas need, and the bytes
//! of one stored value, complete (unlike `ModelFacts`, where the widths are optional).

use serde::{Deserialize, Serialize};

use crate::parallelism::model::ModelFacts;

use super::PerfError;

/// A model's widths and the size of its weights' and KV cache's values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelShape {
    pub hidden_size: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub layers: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub tie_word_embeddings: bool,
    /// Bytes of one weight or KV cache value (the engine's `--dtype`).
    pub value_bytes: usize,
}

/// The engine's `--dtype` default (engine/src/main.rs) when the profile names none.
const ENGINE_DEFAULT_DTYPE: &str = "f32";

/// Bytes of one value of an engine `--dtype`.
pub fn dtype_bytes(dtype: &str) -> Option<usize> {
    match dtype {
        "bf16" | "f16" => Some(2),
        "f32" => Some(4),
        _ => None,
    }
}

impl ModelShape {
    /// Llama 3.3 70B Instruct in bf16.
    pub fn llama_3_3_70b_bf16() -> Self {
        Self {
            hidden_size: 8192,
            heads: 64,
            kv_heads: 8,
            head_dim: 128,
            layers: 80,
            intermediate_size: 28672,
            vocab_size: 128256,
            tie_word_embeddings: false,
            value_bytes: 2,
        }
    }

    /// The shape from a model's facts and the engine's dtype (none: the engine's default);
    /// a width the facts lack is an error naming its config.json key.
    pub fn from_facts(facts: &ModelFacts, dtype: Option<&str>) -> Result<Self, PerfError> {
        let need =
            |value: Option<usize>, key: &'static str| value.ok_or(PerfError::MissingWidth { key });
        let hidden_size = need(facts.hidden_size, "hidden_size")?;
        let dtype = dtype.unwrap_or(ENGINE_DEFAULT_DTYPE);
        Ok(Self {
            hidden_size,
            heads: facts.heads,
            kv_heads: facts.kv_heads,
            // HF's default: the model width split evenly over the query heads.
            head_dim: facts.head_dim.unwrap_or(hidden_size / facts.heads.max(1)),
            layers: facts.layers,
            intermediate_size: need(facts.intermediate_size, "intermediate_size")?,
            vocab_size: need(facts.vocab_size, "vocab_size")?,
            tie_word_embeddings: facts.tie_word_embeddings,
            value_bytes: dtype_bytes(dtype).ok_or_else(|| PerfError::UnknownDtype {
                dtype: dtype.into(),
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_70b_facts_give_the_70b_shape_in_bf16() {
        let shape = ModelShape::from_facts(&ModelFacts::llama_3_3_70b(), Some("bf16")).unwrap();
        assert_eq!(shape, ModelShape::llama_3_3_70b_bf16());
    }

    #[test]
    fn head_dim_defaults_to_hidden_over_heads_and_dtype_to_f32() {
        let facts = ModelFacts {
            head_dim: None,
            ..ModelFacts::llama_3_3_70b()
        };
        let shape = ModelShape::from_facts(&facts, None).unwrap();
        assert_eq!((shape.head_dim, shape.value_bytes), (128, 4));
    }

    #[test]
    fn a_missing_width_names_its_config_key() {
        let facts = ModelFacts {
            vocab_size: None,
            ..ModelFacts::llama_3_3_70b()
        };
        let err = ModelShape::from_facts(&facts, Some("bf16"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("vocab_size"), "{err}");
        let err = ModelShape::from_facts(&ModelFacts::llama_3_3_70b(), Some("fp8"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("fp8"), "{err}");
    }
}
