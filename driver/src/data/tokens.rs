//! Token counts with the real Llama 3 tokenizer (`tokenizer.json`), the unit of every prompt budget.

use std::path::{Path, PathBuf};

/// A tokenizer could not be loaded or failed on a text.
#[derive(Debug, thiserror::Error)]
#[error("tokenizer {path}: {message}")]
pub struct TokenizerError {
    pub path: PathBuf,
    pub message: String,
}

/// Counts tokens the way the budgets are defined: the text alone, without special tokens.
pub struct TokenCounter {
    path: PathBuf,
    tokenizer: tokenizers::Tokenizer,
}

impl TokenCounter {
    /// Loads `tokenizer.json` (or the folder holding it).
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let path = if path.is_dir() {
            path.join("tokenizer.json")
        } else {
            path.to_path_buf()
        };
        let tokenizer = tokenizers::Tokenizer::from_file(&path).map_err(|e| TokenizerError {
            message: format!(
                "cannot load: {e} (fetch it with `make model`, or point `prompts.tokenizer` at it)"
            ),
            path: path.clone(),
        })?;
        Ok(Self { path, tokenizer })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn count(&self, text: &str) -> Result<usize, TokenizerError> {
        self.tokenizer
            .encode_fast(text, false)
            .map(|encoding| encoding.len())
            .map_err(|e| TokenizerError {
                path: self.path.clone(),
                message: format!("cannot encode: {e}"),
            })
    }
}
