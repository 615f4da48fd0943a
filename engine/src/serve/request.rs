//! From an OpenAI request body to what the engine runs: the prompt's token ids and the sampling
//! settings, every field checked and every problem a 400 naming the field.

use super::api::{ChatCompletionRequest, CommonParams, CompletionRequest, MessageContent, Prompt};
use super::error::ApiError;
use super::http::AppState;
use crate::chat_template::ChatMessage;
use crate::runtime::batcher::WireParams;

/// Most alternatives per token a request may ask for.
pub const MAX_TOP_LOGPROBS: i64 = 20;

/// What OpenAI's completions endpoint generates when `max_tokens` is not given.
const COMPLETIONS_DEFAULT_MAX_TOKENS: usize = 16;

/// A checked request, ready for the scheduler.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub prompt_ids: Vec<u32>,
    pub params: WireParams,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// Report logprobs (with `params.top_logprobs` alternatives).
    pub logprobs: bool,
}

/// Parses a JSON body; malformed JSON or a field of the wrong type is a 400.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(format!("invalid request body: {e}")).with_code("invalid_json")
    })
}

/// Checks a chat request and renders its messages with the model's chat template.
pub fn prepare_chat(
    state: &AppState,
    request: ChatCompletionRequest,
) -> Result<Prepared, ApiError> {
    check_model_and_n(state, &request.common)?;
    let logprobs = request.logprobs.unwrap_or(false);
    let top_logprobs = match request.top_logprobs {
        None => 0,
        Some(k) if !logprobs && k != 0 => {
            return Err(ApiError::invalid_param(
                "top_logprobs",
                "top_logprobs needs logprobs set to true",
            ))
        }
        Some(k) => top_logprobs_in_range("top_logprobs", k)?,
    };
    if request.messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "messages must not be empty",
        ));
    }
    let messages = request
        .messages
        .into_iter()
        .map(|m| Ok(ChatMessage::new(m.role, message_text(m.content)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let prompt_ids = state.tokenizer.encode_chat(&messages, &state.render)?;
    check_prompt_length(state, "messages", prompt_ids.len())?;
    let max_tokens = request.max_completion_tokens.or(request.common.max_tokens);
    let default_max = state.context - prompt_ids.len();
    finish(
        state,
        request.common,
        prompt_ids,
        max_tokens,
        default_max,
        logprobs,
        top_logprobs,
    )
}

/// Checks a completions request and encodes its prompt (with the BOS, as `engine generate`).
pub fn prepare_completion(
    state: &AppState,
    request: CompletionRequest,
) -> Result<Prepared, ApiError> {
    check_model_and_n(state, &request.common)?;
    if request.echo == Some(true) {
        return Err(ApiError::invalid_param("echo", "echo is not supported"));
    }
    if request.best_of.is_some_and(|b| b != 1) {
        return Err(ApiError::invalid_param(
            "best_of",
            "only best_of=1 is supported",
        ));
    }
    let (logprobs, top_logprobs) = match request.logprobs {
        None => (false, 0),
        Some(k) => (true, top_logprobs_in_range("logprobs", k)?),
    };
    let one_prompt = || ApiError::invalid_param("prompt", "give exactly one prompt");
    let prompt_ids = match request.prompt {
        Prompt::Text(text) => state.tokenizer.encode(&text, true)?,
        Prompt::Texts(mut texts) if texts.len() == 1 => {
            state.tokenizer.encode(&texts.remove(0), true)?
        }
        Prompt::Tokens(ids) => token_ids(state, &ids)?,
        Prompt::TokenLists(lists) if lists.len() == 1 => token_ids(state, &lists[0])?,
        Prompt::Texts(_) | Prompt::TokenLists(_) => return Err(one_prompt()),
    };
    if prompt_ids.is_empty() {
        return Err(ApiError::invalid_param("prompt", "the prompt is empty"));
    }
    check_prompt_length(state, "prompt", prompt_ids.len())?;
    let default_max = COMPLETIONS_DEFAULT_MAX_TOKENS.min(state.context - prompt_ids.len());
    let max_tokens = request.common.max_tokens;
    finish(
        state,
        request.common,
        prompt_ids,
        max_tokens,
        default_max,
        logprobs,
        top_logprobs,
    )
}

/// A message's text: its `content` string, or its text parts joined (`null` is empty).
fn message_text(content: Option<MessageContent>) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(MessageContent::Text(text)) => Ok(text),
        Some(MessageContent::Parts(parts)) => parts
            .into_iter()
            .map(|part| match (part.kind.as_str(), part.text) {
                ("text", Some(text)) => Ok(text),
                (kind, _) => Err(ApiError::invalid_param(
                    "messages",
                    format!("content parts of type `{kind}` are not supported, only text"),
                )),
            })
            .collect(),
    }
}

fn check_model_and_n(state: &AppState, common: &CommonParams) -> Result<(), ApiError> {
    if common.model != state.model_name {
        return Err(ApiError::invalid_param(
            "model",
            format!(
                "the model `{}` does not exist; this server serves `{}`",
                common.model, state.model_name
            ),
        )
        .with_code("model_not_found"));
    }
    if common.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid_param("n", "only n=1 is supported"));
    }
    Ok(())
}

fn top_logprobs_in_range(param: &'static str, k: i64) -> Result<usize, ApiError> {
    if !(0..=MAX_TOP_LOGPROBS).contains(&k) {
        return Err(ApiError::invalid_param(
            param,
            format!("{param} must be between 0 and {MAX_TOP_LOGPROBS}, got {k}"),
        ));
    }
    Ok(k as usize)
}

fn token_ids(state: &AppState, ids: &[i64]) -> Result<Vec<u32>, ApiError> {
    ids.iter()
        .map(|&id| {
            if (0..state.vocab_size as i64).contains(&id) {
                Ok(id as u32)
            } else {
                Err(ApiError::invalid_param(
                    "prompt",
                    format!(
                        "token id {id} is outside the vocabulary of {}",
                        state.vocab_size
                    ),
                ))
            }
        })
        .collect()
}

fn check_prompt_length(state: &AppState, param: &'static str, len: usize) -> Result<(), ApiError> {
    if len >= state.context {
        return Err(ApiError::invalid_param(
            param,
            format!(
                "this model's maximum context length is {} tokens, but the prompt has {len} \
                 tokens; shorten it",
                state.context
            ),
        )
        .with_code("context_length_exceeded"));
    }
    Ok(())
}

/// The sampling fields, checked.
fn finish(
    state: &AppState,
    common: CommonParams,
    prompt_ids: Vec<u32>,
    max_tokens: Option<i64>,
    default_max: usize,
    logprobs: bool,
    top_logprobs: usize,
) -> Result<Prepared, ApiError> {
    let prompt = prompt_ids.len();
    let max_new_tokens = match max_tokens {
        None => default_max,
        Some(m) if m < 1 => {
            return Err(ApiError::invalid_param(
                "max_tokens",
                format!("max_tokens must be at least 1, got {m}"),
            ))
        }
        Some(m) if m as u64 > (state.context - prompt) as u64 => {
            return Err(ApiError::invalid_param(
                "max_tokens",
                format!(
                    "this model's maximum context length is {} tokens, but {} were requested \
                     ({prompt} in the prompt, {m} in the completion); lower max_tokens",
                    state.context,
                    prompt as u64 + m as u64
                ),
            )
            .with_code("context_length_exceeded"))
        }
        Some(m) => m as usize,
    };
    let temperature = common.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid_param(
            "temperature",
            format!("temperature must be between 0 and 2, got {temperature}"),
        ));
    }
    let top_p = common.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid_param(
            "top_p",
            format!("top_p must be in (0, 1], got {top_p}"),
        ));
    }
    let top_k = match common.top_k {
        None | Some(-1) => 0,
        Some(k) if (0..=state.vocab_size as i64).contains(&k) => k as usize,
        Some(k) => {
            return Err(ApiError::invalid_param(
                "top_k",
                format!("top_k must be -1 (off) or between 0 and the vocabulary size, got {k}"),
            ))
        }
    };
    // Unseeded sampling is random, as with OpenAI; seeded sampling repeats.
    let seed = match common.seed {
        Some(seed) => seed as u64,
        None => rand::random(),
    };
    Ok(Prepared {
        prompt_ids,
        params: WireParams {
            temperature,
            top_p,
            top_k,
            seed,
            max_new_tokens,
            top_logprobs,
            ignore_eos: common.ignore_eos.unwrap_or(false),
        },
        stop: common.stop.map(|s| s.into_vec()).unwrap_or_default(),
        stream: common.stream.unwrap_or(false),
        include_usage: common
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        logprobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::api::ContentPart;

    #[test]
    fn message_text_joins_text_parts_and_refuses_others() {
        let part = |kind: &str, text: Option<&str>| ContentPart {
            kind: kind.into(),
            text: text.map(Into::into),
        };
        assert_eq!(message_text(None).unwrap(), "");
        assert_eq!(
            message_text(Some(MessageContent::Text("hi".into()))).unwrap(),
            "hi"
        );
        let parts = vec![part("text", Some("a")), part("text", Some("b"))];
        assert_eq!(
            message_text(Some(MessageContent::Parts(parts))).unwrap(),
            "ab"
        );
        let image = vec![part("image_url", None)];
        let err = message_text(Some(MessageContent::Parts(image))).unwrap_err();
        assert_eq!(err.param, Some("messages"));
        assert!(err.message.contains("image_url"), "{}", err.message);
    }
}
