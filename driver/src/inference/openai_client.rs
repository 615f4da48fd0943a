//! [`OpenAICompletionClient`]: one prompt in, one normalised completion out, against any
//! OpenAI-compatible endpoint (chat or legacy completions), streamed to time the first token.
//!
//! Failures that may pass (429, 5xx, timeouts, dropped connections, garbled bodies) are retried with
//! exponential backoff and jitter (`backon`), waiting at least as long as a `Retry-After` header
//! asks; every attempt passes the client-side limits first. The API key is read from the
//! environment variable the config names, sent as a sensitive header, and scrubbed from every
//! error message; it is never stored anywhere else.

use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::json;

use super::api_types::{Body, Normalized, TokenLogprob, Usage};
pub use super::client_error::ClientError;
use super::limits::{Limiter, RateLimits};
use super::retry_after::parse_retry_after;
use super::sse::{SseDecoder, SseLine};

/// Which endpoint a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiMode {
    /// `POST {base}/chat/completions`, the prompt as one user message.
    Chat,
    /// `POST {base}/completions`, the prompt as raw text.
    Completions,
}

/// Retries of one request: at most `max_retries` after the first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// Sampling settings sent with every request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    pub max_tokens: u32,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub seed: Option<u64>,
    /// Ask for per-token logprobs with this many alternatives (`None`: no logprobs).
    pub top_logprobs: Option<u32>,
}

/// Everything the client needs; built from the `[baseline]` section of the config.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The API base, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    pub model: String,
    /// The name of the environment variable that holds the API key (`None`: send no key).
    pub api_key_env: Option<String>,
    pub mode: ApiMode,
    pub stream: bool,
    pub params: GenerationParams,
    /// The whole attempt, from connecting to the last byte of the body.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    pub limits: RateLimits,
}

/// A normalised completion and how it was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// Send to last byte of the attempt that succeeded.
    pub latency: Duration,
    /// Send to the first text of the attempt that succeeded (streaming only).
    pub ttft: Option<Duration>,
    /// Attempts made, 1 when the first one succeeded.
    pub attempts: usize,
}

/// A `Retry-After` longer than this is taken as this: the run should go on, if slowly.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The API key, kept out of `Debug` output.
#[derive(Clone)]
struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Client for an OpenAI-compatible endpoint.
pub struct OpenAICompletionClient {
    http: reqwest::Client,
    config: ClientConfig,
    url: String,
    api_key: Option<ApiKey>,
    limiter: Limiter,
}

impl std::fmt::Debug for OpenAICompletionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAICompletionClient")
            .field("url", &self.url)
            .field("model", &self.config.model)
            .field("api_key", &self.api_key)
            .finish()
    }
}

impl OpenAICompletionClient {
    /// Builds the client, reading the API key from the environment variable the config names.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let api_key = match &config.api_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.trim().is_empty() => Some(ApiKey(key.trim().to_string())),
                _ => return Err(ClientError::MissingApiKey { var: var.clone() }),
            },
        };
        let mut headers = HeaderMap::new();
        if let Some(key) = &api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.0)).map_err(|_| {
                ClientError::Setup(
                    "the API key holds characters an HTTP header cannot carry".to_string(),
                )
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| ClientError::Setup(error_chain(&e)))?;
        let path = match config.mode {
            ApiMode::Chat => "chat/completions",
            ApiMode::Completions => "completions",
        };
        let url = format!("{}/{path}", config.base_url.trim_end_matches('/'));
        let limiter = Limiter::new(config.limits);
        Ok(Self {
            http,
            config,
            url,
            api_key,
            limiter,
        })
    }

    /// The endpoint requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Completes `prompt`, retrying what may pass. `prompt_tokens` is the client's estimate of
    /// the prompt's length, charged against `tokens_per_minute` with `max_tokens`.
    pub async fn complete(
        &self,
        prompt: &str,
        prompt_tokens: u32,
    ) -> Result<Completion, ClientError> {
        let body = self.request_body(prompt);
        let tokens = prompt_tokens.saturating_add(self.config.params.max_tokens);
        let retry = &self.config.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(retry.initial_backoff)
            .with_max_delay(retry.max_backoff)
            .with_max_times(retry.max_retries)
            .with_jitter();
        let mut attempts = 0;
        let result = (|| {
            attempts += 1;
            self.attempt(&body, tokens)
        })
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(ClientError::is_retryable)
        .adjust(|err, next| {
            // `None` means the retries are spent; otherwise wait at least what the server asked.
            let next = next?;
            Some(match err.retry_after() {
                Some(asked) => next.max(asked.min(MAX_RETRY_AFTER)),
                None => next,
            })
        })
        .notify(
            |err, wait| tracing::warn!(error = %err, wait_ms = wait.as_millis() as u64, "retrying"),
        )
        .await;
        let result = result.map(|mut c| {
            c.attempts = attempts;
            c
        });
        result.map_err(|e| self.scrub(e))
    }

    fn request_body(&self, prompt: &str) -> serde_json::Value {
        let p = &self.config.params;
        let mut body = json!({
            "model": self.config.model,
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "stream": self.config.stream,
        });
        match self.config.mode {
            ApiMode::Chat => {
                body["messages"] = json!([{"role": "user", "content": prompt}]);
                if let Some(n) = p.top_logprobs {
                    body["logprobs"] = json!(true);
                    body["top_logprobs"] = json!(n);
                }
            }
            ApiMode::Completions => {
                body["prompt"] = json!(prompt);
                if let Some(n) = p.top_logprobs {
                    body["logprobs"] = json!(n);
                }
            }
        }
        if let Some(top_p) = p.top_p {
            body["top_p"] = json!(top_p);
        }
        if let Some(seed) = p.seed {
            body["seed"] = json!(seed);
        }
        if self.config.stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }

    /// One attempt: wait for the limits, send, read the whole response.
    async fn attempt(
        &self,
        body: &serde_json::Value,
        tokens: u32,
    ) -> Result<Completion, ClientError> {
        let _slot = self
            .limiter
            .admit(tokens)
            .await
            .map_err(|e| ClientError::Limits(e.to_string()))?;
        let start = Instant::now();
        let response = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let text = response.text().await.unwrap_or_default();
            return Err(ClientError::Status {
                url: self.url.clone(),
                status: status.as_u16(),
                body: snippet(&text),
                retry_after,
            });
        }
        let (normalized, ttft) = if self.config.stream {
            self.read_stream(response, start).await?
        } else {
            let bytes = response
                .bytes()
                .await
                .map_err(|e| self.transport_error(&e))?;
            let body: Body = serde_json::from_slice(&bytes).map_err(|e| self.invalid(e, &bytes))?;
            let mut normalized = Normalized::default();
            normalized.absorb(body);
            (normalized, None)
        };
        Ok(Completion {
            text: normalized.text,
            finish_reason: normalized.finish_reason,
            usage: normalized.usage,
            logprobs: normalized.logprobs,
            latency: start.elapsed(),
            ttft,
            attempts: 1,
        })
    }

    async fn read_stream(
        &self,
        response: reqwest::Response,
        start: Instant,
    ) -> Result<(Normalized, Option<Duration>), ClientError> {
        let mut normalized = Normalized::default();
        let mut ttft = None;
        let mut decoder = SseDecoder::default();
        let mut stream = response.bytes_stream();
        let mut done = false;
        let mut handle = |line: SseLine, normalized: &mut Normalized| -> Result<(), ClientError> {
            match line {
                SseLine::Done => done = true,
                SseLine::Data(data) => {
                    let body: Body = serde_json::from_str(&data)
                        .map_err(|e| self.invalid(e, data.as_bytes()))?;
                    if !normalized.absorb(body).is_empty() && ttft.is_none() {
                        ttft = Some(start.elapsed());
                    }
                }
                SseLine::Other => {}
            }
            Ok(())
        };
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| self.transport_error(&e))?;
            for line in decoder.push(&piece) {
                handle(line, &mut normalized)?;
            }
        }
        if let Some(line) = decoder.finish() {
            handle(line, &mut normalized)?;
        }
        if !done {
            return Err(ClientError::InvalidResponse {
                url: self.url.clone(),
                message: "the stream ended before `data: [DONE]`".to_string(),
            });
        }
        Ok((normalized, ttft))
    }

    fn transport_error(&self, e: &reqwest::Error) -> ClientError {
        if e.is_timeout() {
            ClientError::Timeout {
                url: self.url.clone(),
                timeout: self.config.request_timeout,
            }
        } else {
            ClientError::Connection {
                url: self.url.clone(),
                message: error_chain(e),
            }
        }
    }

    fn invalid(&self, e: serde_json::Error, body: &[u8]) -> ClientError {
        ClientError::InvalidResponse {
            url: self.url.clone(),
            message: format!("{e} in `{}`", snippet(&String::from_utf8_lossy(body))),
        }
    }

    /// Removes the API key from an error's text, in case a server echoed it back.
    fn scrub(&self, err: ClientError) -> ClientError {
        let Some(ApiKey(key)) = &self.api_key else {
            return err;
        };
        let clean = |s: &mut String| {
            if s.contains(key.as_str()) {
                *s = s.replace(key.as_str(), "<redacted>");
            }
        };
        let mut err = err;
        match &mut err {
            ClientError::Status { body, .. } => clean(body),
            ClientError::Connection { message, .. }
            | ClientError::InvalidResponse { message, .. } => clean(message),
            _ => {}
        }
        err
    }
}

/// The first 300 characters of a body, on one line.
fn snippet(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &one_line[..cut]),
        None => one_line,
    }
}

/// An error with its sources: reqwest's own message alone is often just "error sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_short_and_on_one_line() {
        assert_eq!(snippet("a\n  b"), "a b");
        assert_eq!(snippet(&"x".repeat(400)).len(), 303);
    }
}
