//! The OpenAI API's response bodies as the driver reads them (chat and legacy completions, whole or
//! streamed), and their normalisation into one [`Normalized`] shape. Fields the driver does not use
//! are ignored; missing optional fields default, so other OpenAI-compatible servers parse too.

use serde::Deserialize;

/// Token usage as reported by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// One generated token with its log-probability and the alternatives asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub top: Vec<(String, f32)>,
}

/// A response (or the sum of a stream's chunks) in one shape for both APIs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Normalized {
    pub text: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// Present when logprobs were asked for and the server sent them.
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// A body or a chunk: `choices` and maybe `usage` (both APIs, streamed or not).
#[derive(Debug, Deserialize)]
pub struct Body {
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    /// Chat, whole.
    #[serde(default)]
    pub message: Option<Message>,
    /// Chat, streamed.
    #[serde(default)]
    pub delta: Option<Message>,
    /// Completions.
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub logprobs: Option<Logprobs>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub content: Option<String>,
}

/// Chat logprobs (`content`) or legacy completion logprobs (`tokens`, `token_logprobs`, ...).
#[derive(Debug, Deserialize)]
pub struct Logprobs {
    #[serde(default)]
    pub content: Option<Vec<ChatTokenLogprob>>,
    #[serde(default)]
    pub tokens: Option<Vec<String>>,
    #[serde(default)]
    pub token_logprobs: Option<Vec<Option<f32>>>,
    #[serde(default)]
    pub top_logprobs: Option<Vec<Option<std::collections::BTreeMap<String, f32>>>>,
}

#[derive(Debug, Deserialize)]
pub struct ChatTokenLogprob {
    pub token: String,
    pub logprob: f32,
    #[serde(default)]
    pub top_logprobs: Vec<Alternative>,
}

#[derive(Debug, Deserialize)]
pub struct Alternative {
    pub token: String,
    pub logprob: f32,
}

impl Logprobs {
    fn normalize(self) -> Vec<TokenLogprob> {
        if let Some(content) = self.content {
            return content
                .into_iter()
                .map(|t| TokenLogprob {
                    token: t.token,
                    logprob: t.logprob,
                    top: t
                        .top_logprobs
                        .into_iter()
                        .map(|a| (a.token, a.logprob))
                        .collect(),
                })
                .collect();
        }
        let tokens = self.tokens.unwrap_or_default();
        let logprobs = self.token_logprobs.unwrap_or_default();
        let mut tops = self.top_logprobs.unwrap_or_default().into_iter();
        tokens
            .into_iter()
            .zip(logprobs)
            .map(|(token, logprob)| {
                let mut top: Vec<(String, f32)> = tops
                    .next()
                    .flatten()
                    .map(|m| m.into_iter().collect())
                    .unwrap_or_default();
                top.sort_by(|a, b| b.1.total_cmp(&a.1));
                TokenLogprob {
                    token,
                    logprob: logprob.unwrap_or(f32::NAN),
                    top,
                }
            })
            .collect()
    }
}

impl Normalized {
    /// Adds a whole body or one streamed chunk (choice 0 only; the driver asks for one).
    /// Returns the text the chunk added.
    pub fn absorb(&mut self, body: Body) -> String {
        if let Some(usage) = body.usage {
            self.usage = Some(usage);
        }
        let mut added = String::new();
        for choice in body.choices.into_iter().filter(|c| c.index == 0) {
            let text = choice
                .message
                .and_then(|m| m.content)
                .or_else(|| choice.delta.and_then(|d| d.content))
                .or(choice.text)
                .unwrap_or_default();
            added.push_str(&text);
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
            if let Some(logprobs) = choice.logprobs {
                self.logprobs
                    .get_or_insert_with(Vec::new)
                    .extend(logprobs.normalize());
            }
        }
        self.text.push_str(&added);
        added
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn absorb_all(bodies: &[&str]) -> Normalized {
        let mut n = Normalized::default();
        for b in bodies {
            n.absorb(serde_json::from_str(b).unwrap());
        }
        n
    }

    #[test]
    fn chat_and_completion_bodies_normalize_alike() {
        let chat = absorb_all(&[
            r#"{"choices": [{"index": 0, "message": {"role": "assistant",
            "content": "Paris"}, "finish_reason": "stop", "logprobs": {"content": [{"token": "Paris",
            "logprob": -0.1, "bytes": [80], "top_logprobs": [{"token": "Paris", "logprob": -0.1},
            {"token": "Lyon", "logprob": -2.5}]}]}}], "usage": {"prompt_tokens": 9,
            "completion_tokens": 1, "total_tokens": 10}}"#,
        ]);
        let completion = absorb_all(&[r#"{"choices": [{"index": 0, "text": "Paris",
            "finish_reason": "stop", "logprobs": {"tokens": ["Paris"], "token_logprobs": [-0.1],
            "top_logprobs": [{"Lyon": -2.5, "Paris": -0.1}], "text_offset": [0]}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}"#]);
        assert_eq!(chat, completion);
        assert_eq!(chat.text, "Paris");
        assert_eq!(chat.usage.unwrap().completion_tokens, 1);
        assert_eq!(chat.logprobs.unwrap()[0].top[1], ("Lyon".to_string(), -2.5));
    }

    #[test]
    fn streamed_chunks_accumulate_text_finish_and_usage() {
        let n = absorb_all(&[
            r#"{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}], "usage": null}"#,
            r#"{"choices": [{"index": 0, "delta": {"content": "Hel"}}]}"#,
            r#"{"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "length"}]}"#,
            r#"{"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}"#,
        ]);
        assert_eq!(n.text, "Hello");
        assert_eq!(n.finish_reason.as_deref(), Some("length"));
        assert_eq!(n.usage.unwrap().total_tokens, 5);
        assert_eq!(n.logprobs, None);
    }
}
