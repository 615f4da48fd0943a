//! Client-side limits: requests and tokens per minute (`governor`'s GCRA) and a bound on requests
//! in flight. Requests are spaced evenly (a burst of one), so no window of any length holds more
//! than its share of `requests_per_minute`: providers often enforce a per-minute limit per second.
//! Tokens replenish continuously with a bucket of one minute's worth, as providers count them.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};

/// The limits of one endpoint; 0 means no limit for the two rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub requests_per_minute: u32,
    pub tokens_per_minute: u32,
    /// Requests in flight at once (at least 1).
    pub concurrency: usize,
}

/// A request that can never pass the limits.
#[derive(Debug, thiserror::Error)]
#[error("a request of {needed} tokens can never fit tokens_per_minute = {limit}")]
pub struct TooLarge {
    pub needed: u32,
    pub limit: u32,
}

pub(crate) struct Limiter {
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<(DefaultDirectRateLimiter, u32)>,
    slots: Semaphore,
}

impl Limiter {
    pub fn new(limits: RateLimits) -> Self {
        let requests = NonZeroU32::new(limits.requests_per_minute).map(|rpm| {
            let period = Duration::from_secs(60) / rpm.get();
            let quota = Quota::with_period(period)
                .unwrap_or(Quota::per_minute(rpm))
                .allow_burst(NonZeroU32::MIN);
            RateLimiter::direct(quota)
        });
        let tokens = NonZeroU32::new(limits.tokens_per_minute)
            .map(|tpm| (RateLimiter::direct(Quota::per_minute(tpm)), tpm.get()));
        Self {
            requests,
            tokens,
            slots: Semaphore::new(limits.concurrency.max(1)),
        }
    }

    /// Waits for a slot, then for the rate limits to let one request of `tokens` tokens go.
    /// The permit bounds the requests in flight; drop it when the attempt ends.
    pub async fn admit(&self, tokens: u32) -> Result<SemaphorePermit<'_>, TooLarge> {
        if let Some((_, limit)) = &self.tokens {
            if tokens > *limit {
                return Err(TooLarge {
                    needed: tokens,
                    limit: *limit,
                });
            }
        }
        let permit = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        if let (Some((limiter, limit)), Some(n)) = (&self.tokens, NonZeroU32::new(tokens)) {
            // Checked above: n <= the bucket's capacity, so this cannot fail.
            if limiter.until_n_ready(n).await.is_err() {
                return Err(TooLarge {
                    needed: tokens,
                    limit: *limit,
                });
            }
        }
        if let Some(limiter) = &self.requests {
            limiter.until_ready().await;
        }
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn requests_are_spaced_by_the_per_minute_period() {
        let limiter = Limiter::new(RateLimits {
            requests_per_minute: 1200,
            tokens_per_minute: 0,
            concurrency: 8,
        });
        let start = Instant::now();
        let mut grants = Vec::new();
        for _ in 0..6 {
            let _permit = limiter.admit(10).await.unwrap();
            grants.push(start.elapsed());
        }
        // 1200 per minute: one every 50 ms; the first goes at once.
        for pair in grants.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(45), "{grants:?}");
        }
    }

    #[tokio::test]
    async fn a_request_larger_than_the_token_limit_is_refused() {
        let limiter = Limiter::new(RateLimits {
            requests_per_minute: 0,
            tokens_per_minute: 100,
            concurrency: 1,
        });
        assert!(limiter.admit(100).await.is_ok());
        let err = limiter.admit(101).await.unwrap_err();
        assert_eq!((err.needed, err.limit), (101, 100));
    }
}
