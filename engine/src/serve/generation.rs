//! One request in flight, seen from the HTTP side: submitted to the scheduler, then read piece by
//! piece (text plus the tokens behind it) until it finishes. Dropping it cancels the request: the
//! scheduler sees the closed channel before its next step and frees the slot.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::error::ApiError;
use super::http::AppState;
use super::request::Prepared;
use super::scheduler::{Event, Submission};
use super::text::TextStream;
use crate::runtime::sampling::SampledToken;
use crate::runtime::FinishReason;

/// Text that can go to the client now, and the tokens it came from.
#[derive(Debug, Clone, Default)]
pub struct Piece {
    pub text: String,
    /// The sampled tokens (with logprobs) since the last piece; empty unless logprobs were asked.
    pub tokens: Vec<SampledToken>,
    /// Set on the last piece.
    pub finish: Option<FinishReason>,
}

/// A submitted request.
pub struct Generation {
    state: Arc<AppState>,
    events: UnboundedReceiver<Event>,
    text: TextStream,
    arrived: Instant,
    last_token: Option<Instant>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    logprobs: bool,
    pending: Vec<SampledToken>,
    done: bool,
}

impl Generation {
    /// Hands the request to the scheduler; 429 when every slot is taken.
    pub fn submit(
        state: Arc<AppState>,
        prepared: Prepared,
        arrived: Instant,
    ) -> Result<Self, ApiError> {
        if !state.limits.try_take() {
            return Err(ApiError::queue_full(1));
        }
        let (sender, events) = unbounded_channel();
        let prompt_tokens = prepared.prompt_ids.len();
        let submission = Submission {
            prompt_ids: prepared.prompt_ids,
            params: prepared.params,
            events: sender,
        };
        if state.submit.send(submission).is_err() {
            state.limits.give_back();
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        state.metrics.prompt_tokens.inc_by(prompt_tokens as u64);
        Ok(Self {
            events,
            text: TextStream::new(prepared.stop),
            arrived,
            last_token: None,
            prompt_tokens,
            completion_tokens: 0,
            logprobs: prepared.logprobs,
            pending: Vec::new(),
            done: false,
            state,
        })
    }

    /// The next piece, or `None` after the last one.
    pub async fn next_piece(&mut self) -> Option<Result<Piece, ApiError>> {
        if self.done {
            return None;
        }
        loop {
            let Some(event) = self.events.recv().await else {
                self.done = true;
                return Some(Err(ApiError::internal(
                    "the engine stopped before the request finished",
                )));
            };
            match event {
                Event::Rejected(message) => {
                    self.done = true;
                    return Some(Err(ApiError::invalid(message)));
                }
                Event::Token { token, finish } => {
                    let piece = self.accept(token, finish);
                    match piece {
                        Ok(Some(piece)) => return Some(Ok(piece)),
                        Ok(None) => continue,
                        Err(e) => {
                            self.done = true;
                            return Some(Err(e));
                        }
                    }
                }
            }
        }
    }

    /// Records a token; returns a piece when there is text to send or the request is finished.
    fn accept(
        &mut self,
        token: SampledToken,
        finish: Option<FinishReason>,
    ) -> Result<Option<Piece>, ApiError> {
        let now = Instant::now();
        let metrics = &self.state.metrics;
        match self.last_token {
            None => metrics
                .time_to_first_token
                .observe((now - self.arrived).as_secs_f64()),
            Some(last) => metrics
                .inter_token_latency
                .observe((now - last).as_secs_f64()),
        }
        self.last_token = Some(now);
        metrics.generation_tokens.inc();
        self.completion_tokens += 1;
        let tokenizer = &self.state.tokenizer;
        let id = token.token;
        let mut text = self.text.push(tokenizer, id)?;
        // End-of-generation tokens count in usage but have no text, so no logprob entry.
        if self.logprobs && !self.state.end_of_generation.contains(&id) {
            self.pending.push(token);
        }
        let finish = if self.text.stopped() {
            Some(FinishReason::Stop)
        } else {
            finish
        };
        if finish.is_some() {
            text.push_str(&self.text.finish(tokenizer)?);
            self.done = true;
            metrics
                .request_latency
                .observe((now - self.arrived).as_secs_f64());
        } else if text.is_empty() {
            return Ok(None);
        }
        Ok(Some(Piece {
            text,
            tokens: std::mem::take(&mut self.pending),
            finish,
        }))
    }

    /// Reads the request to its end: the whole text, every token, and why it finished.
    pub async fn complete(&mut self) -> Result<Piece, ApiError> {
        let mut whole = Piece::default();
        while let Some(piece) = self.next_piece().await {
            let piece = piece?;
            whole.text.push_str(&piece.text);
            whole.tokens.extend(piece.tokens);
            whole.finish = piece.finish;
        }
        Ok(whole)
    }
}
