//! [`ClientError`]: why a request failed, and whether another attempt may succeed.

use std::time::Duration;

/// Why a request (or the client) failed. Messages never contain the API key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("{url}: no complete response within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: connection failed: {message}")]
    Connection { url: String, message: String },
    #[error("{url}: invalid response: {message}")]
    InvalidResponse { url: String, message: String },
    #[error(
        "the API key's environment variable `{var}` (baseline.api_key_env) is not set or empty"
    )]
    MissingApiKey { var: String },
    #[error("{0}")]
    Limits(String),
    #[error("client setup: {0}")]
    Setup(String),
}

impl ClientError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Status { status, .. } => {
                matches!(status, 408 | 409 | 425 | 429) || *status >= 500
            }
            ClientError::Timeout { .. }
            | ClientError::Connection { .. }
            | ClientError::InvalidResponse { .. } => true,
            ClientError::MissingApiKey { .. } | ClientError::Limits(_) | ClientError::Setup(_) => {
                false
            }
        }
    }

    /// How long the server asked the client to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passing_failures_are_retried() {
        let status = |status| ClientError::Status {
            url: "u".into(),
            status,
            body: String::new(),
            retry_after: None,
        };
        assert!(status(429).is_retryable());
        assert!(status(503).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!status(401).is_retryable());
        assert!(!ClientError::MissingApiKey { var: "K".into() }.is_retryable());
    }
}
