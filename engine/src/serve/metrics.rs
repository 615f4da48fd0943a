//! Prometheus metrics for `GET /metrics` (names after vLLM's, prefixed `shardlab_`).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Every metric the server keeps, registered in its own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Finished HTTP requests by route and status code.
    pub requests: IntCounterVec,
    pub prompt_tokens: IntCounter,
    pub generation_tokens: IntCounter,
    /// Requests waiting for a batch slot.
    pub queue_depth: IntGauge,
    /// Sequences in the running batch.
    pub running: IntGauge,
    /// From the request's arrival to its first token.
    pub time_to_first_token: Histogram,
    /// Between consecutive tokens of one request.
    pub inter_token_latency: Histogram,
    /// From the request's arrival to its last token.
    pub request_latency: Histogram,
    /// Sequences decoded together, per step.
    pub batch_size: Histogram,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "shardlab_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )?;
        let prompt_tokens = IntCounter::new(
            "shardlab_prompt_tokens_total",
            "Prompt tokens of admitted requests",
        )?;
        let generation_tokens =
            IntCounter::new("shardlab_generation_tokens_total", "Generated tokens")?;
        let queue_depth =
            IntGauge::new("shardlab_queue_depth", "Requests waiting for a batch slot")?;
        let running = IntGauge::new(
            "shardlab_running_sequences",
            "Sequences in the running batch",
        )?;
        let time_to_first_token = Histogram::with_opts(
            HistogramOpts::new(
                "shardlab_time_to_first_token_seconds",
                "Time from a request's arrival to its first token",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0,
            ]),
        )?;
        let inter_token_latency = Histogram::with_opts(
            HistogramOpts::new(
                "shardlab_inter_token_latency_seconds",
                "Time between consecutive tokens of a request",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0,
                10.0,
            ]),
        )?;
        let request_latency = Histogram::with_opts(
            HistogramOpts::new(
                "shardlab_request_latency_seconds",
                "Time from a request's arrival to its last token",
            )
            .buckets(vec![
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0,
            ]),
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "shardlab_batch_size",
                "Sequences decoded together in one step",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(prompt_tokens.clone()))?;
        registry.register(Box::new(generation_tokens.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(running.clone()))?;
        registry.register(Box::new(time_to_first_token.clone()))?;
        registry.register(Box::new(inter_token_latency.clone()))?;
        registry.register(Box::new(request_latency.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        Ok(Self {
            registry,
            requests,
            prompt_tokens,
            generation_tokens,
            queue_depth,
            running,
            time_to_first_token,
            inter_token_latency,
            request_latency,
            batch_size,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec fails only on a malformed metric family, which ours are not.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("encoding metrics: {e}");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::new().unwrap();
        m.requests
            .with_label_values(&["/v1/completions", "200"])
            .inc();
        m.time_to_first_token.observe(0.2);
        let text = m.render();
        for name in [
            "shardlab_requests_total{route=\"/v1/completions\",status=\"200\"} 1",
            "shardlab_prompt_tokens_total 0",
            "shardlab_queue_depth 0",
            "shardlab_time_to_first_token_seconds_bucket{le=\"0.25\"} 1",
            "shardlab_inter_token_latency_seconds_count 0",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
