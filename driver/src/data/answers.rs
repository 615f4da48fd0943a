//! `data/answers.json`: the expected answer of every prompt, per variant, written by the generator
//! next to the prompt files and read by scoring.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::prompts::Variant;

/// What a prompt's answer is and how it is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    /// An integer; checked numerically.
    Number(i64),
    /// A short text (a name, a code, a place); checked exactly, ignoring case and spacing.
    Text(String),
    /// Named points of a summary: each point's line must state its value.
    Points(BTreeMap<String, String>),
}

/// One prompt's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerEntry {
    pub prompt_id: String,
    /// The task family, e.g. `record-lookup`.
    pub task: String,
    /// The answer of each variant (`2k`, `4k`); they differ where the 4k context holds more data.
    pub answers: BTreeMap<String, Answer>,
}

impl AnswerEntry {
    pub fn answer(&self, variant: Variant) -> Option<&Answer> {
        self.answers.get(variant.as_str())
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerSet {
    /// The generator's seed.
    pub seed: u64,
    pub prompts: Vec<AnswerEntry>,
}

/// `answers.json` could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct AnswersError {
    pub path: std::path::PathBuf,
    pub message: String,
}

impl AnswerSet {
    pub fn load(path: &Path) -> Result<Self, AnswersError> {
        let text = std::fs::read_to_string(path).map_err(|e| AnswersError {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        serde_json::from_str(&text).map_err(|e| AnswersError {
            path: path.to_path_buf(),
            message: format!("line {}: {e}", e.line()),
        })
    }

    /// The file's bytes: pretty JSON with a final newline, stable across runs.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("plain data serializes");
        text.push('\n');
        text
    }

    pub fn get(&self, prompt_id: &str) -> Option<&AnswerEntry> {
        self.prompts.iter().find(|e| e.prompt_id == prompt_id)
    }
}
