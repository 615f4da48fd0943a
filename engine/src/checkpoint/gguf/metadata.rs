//! Typed access to GGUF metadata: every error names the GGUF file and the key.

use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};

use crate::error::{EngineError, Result};

/// Typed access to GGUF metadata; every error names the file and the key.
pub(super) struct Metadata<'a> {
    pub path: &'a Path,
    pub content: &'a Content,
}

impl Metadata<'_> {
    pub fn bad(&self, key: &str, message: impl Into<String>) -> EngineError {
        EngineError::config(self.path, key, message)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    pub fn require(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| self.bad(key, "missing from the GGUF metadata"))
    }

    pub fn string(&self, key: &str) -> Result<&str> {
        match self.require(key)? {
            Value::String(s) => Ok(s),
            other => Err(self.bad(key, format!("expected a string, found {other:?}"))),
        }
    }

    pub fn opt_string(&self, key: &str) -> Result<Option<&str>> {
        self.get(key).map(|_| self.string(key)).transpose()
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        let value = self.require(key)?;
        integer(value)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                self.bad(
                    key,
                    format!("expected a non-negative integer, found {value:?}"),
                )
            })
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.get(key).map(|_| self.usize(key)).transpose()
    }

    /// A token id: a non-negative integer below `vocab_size`.
    pub fn opt_token_id(&self, key: &str, vocab_size: usize) -> Result<Option<u32>> {
        let Some(id) = self.opt_usize(key)? else {
            return Ok(None);
        };
        if id >= vocab_size {
            return Err(self.bad(
                key,
                format!("token id {id} is outside the vocabulary of {vocab_size}"),
            ));
        }
        Ok(Some(id as u32))
    }

    /// A float; f32 values become the f64 of their shortest decimal (1e-5, not 9.99999974e-6).
    pub fn f64(&self, key: &str) -> Result<f64> {
        match self.require(key)? {
            Value::F32(x) => Ok(x.to_string().parse().unwrap_or(f64::from(*x))),
            Value::F64(x) => Ok(*x),
            other => Err(self.bad(key, format!("expected a float, found {other:?}"))),
        }
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key).map(|_| self.f64(key)).transpose()
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.bad(key, format!("expected a bool, found {other:?}"))),
        }
    }

    pub fn array(&self, key: &str) -> Result<&[Value]> {
        match self.require(key)? {
            Value::Array(items) => Ok(items),
            other => Err(self.bad(
                key,
                format!("expected an array, found {:?}", other.value_type()),
            )),
        }
    }

    pub fn strings(&self, key: &str) -> Result<Vec<&str>> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.as_str()),
                other => Err(self.bad(
                    key,
                    format!("entry {i}: expected a string, found {other:?}"),
                )),
            })
            .collect()
    }

    pub fn integers(&self, key: &str) -> Result<Vec<i64>> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                integer(v).ok_or_else(|| {
                    self.bad(key, format!("entry {i}: expected an integer, found {v:?}"))
                })
            })
            .collect()
    }
}

fn integer(value: &Value) -> Option<i64> {
    match *value {
        Value::U8(n) => Some(n.into()),
        Value::I8(n) => Some(n.into()),
        Value::U16(n) => Some(n.into()),
        Value::I16(n) => Some(n.into()),
        Value::U32(n) => Some(n.into()),
        Value::I32(n) => Some(n.into()),
        Value::U64(n) => i64::try_from(n).ok(),
        Value::I64(n) => Some(n),
        _ => None,
    }
}
