//! `POST /v1/chat/completions` and `POST /v1/completions`: one JSON response, or Server-Sent
//! Events (`data: {chunk}` lines ending with `data: [DONE]`) when `stream` is set.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};

use super::api::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatLogprobs,
    ChatTokenLogprob, Completion, CompletionChoice, CompletionLogprobs, Delta, ResponseMessage,
    TopLogprob, Usage,
};
use super::error::ApiError;
use super::generation::{Generation, Piece};
use super::http::{unix_now, AppState};
use super::request::{parse, prepare_chat, prepare_completion, Prepared};
use crate::runtime::sampling::SampledToken;
use crate::runtime::FinishReason;

/// Which API a response is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let arrived = Instant::now();
    let prepared = body
        .map_err(rejected_body)
        .and_then(|body| parse(&body))
        .and_then(|request| prepare_chat(&state, request));
    match prepared {
        Ok(prepared) => respond(state, prepared, Kind::Chat, arrived).await,
        Err(e) => e.into_response(),
    }
}

pub async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let arrived = Instant::now();
    let prepared = body
        .map_err(rejected_body)
        .and_then(|body| parse(&body))
        .and_then(|request| prepare_completion(&state, request));
    match prepared {
        Ok(prepared) => respond(state, prepared, Kind::Completion, arrived).await,
        Err(e) => e.into_response(),
    }
}

fn rejected_body(rejection: BytesRejection) -> ApiError {
    ApiError {
        status: rejection.status(),
        ..ApiError::invalid(rejection.body_text())
    }
}

async fn respond(
    state: Arc<AppState>,
    prepared: Prepared,
    kind: Kind,
    arrived: Instant,
) -> Response {
    let chunker = Chunker {
        kind,
        id: match kind {
            Kind::Chat => format!("chatcmpl-{:032x}", rand::random::<u128>()),
            Kind::Completion => format!("cmpl-{:032x}", rand::random::<u128>()),
        },
        created: unix_now(),
        model: state.model_name.clone(),
        logprobs: prepared.logprobs,
        include_usage: prepared.include_usage,
        text_offset: 0,
        state: Arc::clone(&state),
    };
    let stream = prepared.stream;
    let mut generation = match Generation::submit(state, prepared, arrived) {
        Ok(generation) => generation,
        Err(e) => return e.into_response(),
    };
    if stream {
        return Sse::new(sse_events(generation, chunker)).into_response();
    }
    match generation.complete().await {
        Ok(whole) => {
            let usage = Usage::new(generation.prompt_tokens, generation.completion_tokens);
            chunker.response(whole, usage)
        }
        Err(e) => e.into_response(),
    }
}

/// The SSE events of a streamed request. The stream owns the generation: when the client goes
/// away the server drops the stream, and with it the request.
fn sse_events(
    generation: Generation,
    chunker: Chunker,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let start = stream::iter(chunker.start());
    let rest = stream::unfold(Some((generation, chunker)), |state| async move {
        let (mut generation, mut chunker) = state?;
        let mut events = Vec::new();
        match generation.next_piece().await {
            Some(Ok(piece)) => {
                let finish = piece.finish;
                events.extend(chunker.piece(piece));
                if finish.is_none() {
                    return Some((events, Some((generation, chunker))));
                }
                if chunker.include_usage {
                    let usage = Usage::new(generation.prompt_tokens, generation.completion_tokens);
                    events.push(chunker.usage(usage));
                }
            }
            Some(Err(e)) => events.push(json_event(&e.body())),
            None => {}
        }
        events.push(SseEvent::default().data("[DONE]"));
        Some((events, None))
    })
    .flat_map(stream::iter);
    start.chain(rest).map(Ok)
}

fn json_event<T: serde::Serialize>(value: &T) -> SseEvent {
    match serde_json::to_string(value) {
        Ok(text) => SseEvent::default().data(text),
        Err(e) => SseEvent::default().data(format!(
            r#"{{"error": {{"message": "cannot encode a chunk: {e}", "type": "server_error", "param": null, "code": null}}}}"#
        )),
    }
}

/// Builds the response bodies and chunks of one request.
struct Chunker {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
    include_usage: bool,
    /// Completions: where the next token's text starts in the completion.
    text_offset: usize,
    state: Arc<AppState>,
}

impl Chunker {
    /// `usage: null` on every chunk but the last when usage was asked for; absent otherwise.
    fn chunk_usage(&self) -> Option<Option<Usage>> {
        self.include_usage.then_some(None)
    }

    /// The first chunk of a chat stream announces the assistant's role.
    fn start(&self) -> Vec<SseEvent> {
        match self.kind {
            Kind::Chat => vec![self.chat_chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                },
                None,
                None,
            )],
            Kind::Completion => Vec::new(),
        }
    }

    /// A piece's text (if any), then the finish chunk on the last piece.
    fn piece(&mut self, piece: Piece) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let has_content = !piece.text.is_empty() || !piece.tokens.is_empty();
        match self.kind {
            Kind::Chat => {
                if has_content {
                    let logprobs = self.chat_logprobs(&piece.tokens);
                    let delta = Delta {
                        role: None,
                        content: Some(piece.text),
                    };
                    events.push(self.chat_chunk(delta, logprobs, None));
                }
                if let Some(finish) = piece.finish {
                    events.push(self.chat_chunk(Delta::default(), None, Some(finish)));
                }
            }
            Kind::Completion => {
                if has_content || piece.finish.is_some() {
                    let logprobs = self.completion_logprobs(&piece.tokens);
                    events.push(json_event(&Completion {
                        id: self.id.clone(),
                        object: "text_completion",
                        created: self.created,
                        model: self.model.clone(),
                        choices: vec![CompletionChoice {
                            index: 0,
                            text: piece.text,
                            logprobs,
                            finish_reason: piece.finish,
                        }],
                        usage: self.chunk_usage(),
                    }));
                }
            }
        }
        events
    }

    fn chat_chunk(
        &self,
        delta: Delta,
        logprobs: Option<ChatLogprobs>,
        finish: Option<FinishReason>,
    ) -> SseEvent {
        json_event(&ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChatChunkChoice {
                index: 0,
                delta,
                logprobs,
                finish_reason: finish,
            }],
            usage: self.chunk_usage(),
        })
    }

    /// The closing chunk of `stream_options.include_usage`: no choices, the usage.
    fn usage(&self, usage: Usage) -> SseEvent {
        match self.kind {
            Kind::Chat => json_event(&ChatCompletionChunk {
                id: self.id.clone(),
                object: "chat.completion.chunk",
                created: self.created,
                model: self.model.clone(),
                choices: Vec::new(),
                usage: Some(Some(usage)),
            }),
            Kind::Completion => json_event(&Completion {
                id: self.id.clone(),
                object: "text_completion",
                created: self.created,
                model: self.model.clone(),
                choices: Vec::new(),
                usage: Some(Some(usage)),
            }),
        }
    }

    /// The non-streamed response.
    fn response(mut self, whole: Piece, usage: Usage) -> Response {
        let finish = whole.finish.unwrap_or(FinishReason::Length);
        match self.kind {
            Kind::Chat => Json(ChatCompletion {
                id: self.id.clone(),
                object: "chat.completion",
                created: self.created,
                model: self.model.clone(),
                choices: vec![ChatChoice {
                    index: 0,
                    logprobs: self.chat_logprobs(&whole.tokens),
                    message: ResponseMessage {
                        role: "assistant",
                        content: whole.text,
                    },
                    finish_reason: finish,
                }],
                usage,
            })
            .into_response(),
            Kind::Completion => {
                let logprobs = self.completion_logprobs(&whole.tokens);
                Json(Completion {
                    id: self.id.clone(),
                    object: "text_completion",
                    created: self.created,
                    model: self.model.clone(),
                    choices: vec![CompletionChoice {
                        index: 0,
                        text: whole.text,
                        logprobs,
                        finish_reason: Some(finish),
                    }],
                    usage: Some(Some(usage)),
                })
                .into_response()
            }
        }
    }

    fn token_text(&self, id: u32) -> String {
        self.state
            .tokenizer
            .decode(&[id], false)
            .unwrap_or_default()
    }

    fn chat_logprobs(&self, tokens: &[SampledToken]) -> Option<ChatLogprobs> {
        self.logprobs.then(|| ChatLogprobs {
            content: tokens
                .iter()
                .map(|t| {
                    let token = self.token_text(t.token);
                    ChatTokenLogprob {
                        bytes: token.as_bytes().to_vec(),
                        token,
                        logprob: t.logprob,
                        top_logprobs: t
                            .top
                            .iter()
                            .map(|&(id, logprob)| {
                                let token = self.token_text(id);
                                TopLogprob {
                                    bytes: token.as_bytes().to_vec(),
                                    token,
                                    logprob,
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
        })
    }

    fn completion_logprobs(&mut self, tokens: &[SampledToken]) -> Option<CompletionLogprobs> {
        if !self.logprobs {
            return None;
        }
        let mut out = CompletionLogprobs::default();
        for t in tokens {
            let token = self.token_text(t.token);
            out.text_offset.push(self.text_offset);
            self.text_offset += token.len();
            out.tokens.push(token);
            out.token_logprobs.push(t.logprob);
            out.top_logprobs.push(
                t.top
                    .iter()
                    .map(|&(id, logprob)| (self.token_text(id), serde_json::Value::from(logprob)))
                    .collect(),
            );
        }
        Some(out)
    }
}
