//! The prompts a job reads, as the job factory sees them: anything with an id, a variant, the
//! text and a token budget (the driver's prompt records implement `JobPrompt`).

use serde::{Deserialize, Serialize};

/// A prompt as a job needs it; the driver's prompt records implement this.
pub trait JobPrompt {
    fn prompt_id(&self) -> &str;
    /// The prompt set it belongs to (`2k`, `4k`, ...): one job per strategy and variant.
    fn variant(&self) -> &str;
    fn prompt(&self) -> &str;
    /// The prompt's intended length in tokens, recorded in the shard.
    fn token_budget(&self) -> Option<usize>;
}

/// A plain prompt, for callers without a prompt repository (tests, the internal CLI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptRow {
    pub prompt_id: String,
    pub variant: String,
    /// The prompt as raw text; empty when it is given as `messages`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prompt: String,
    /// The prompt as chat messages (the engine renders them with the model's chat template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<usize>,
}

/// One chat message of a prompt shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl JobPrompt for PromptRow {
    fn prompt_id(&self) -> &str {
        &self.prompt_id
    }
    fn variant(&self) -> &str {
        &self.variant
    }
    fn prompt(&self) -> &str {
        &self.prompt
    }
    fn token_budget(&self) -> Option<usize> {
        self.token_budget
    }
}
