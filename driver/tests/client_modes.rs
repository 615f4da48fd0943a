//! `OpenAICompletionClient` in each mode (chat or completions, streamed or not, with logprobs):
//! what it sends, and the one normalised shape it hands back.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::fault_server::{Fault, FaultServer};
use driver::inference::limits::RateLimits;
use driver::inference::openai_client::{
    ApiMode, ClientConfig, GenerationParams, OpenAICompletionClient, RetryPolicy,
};

fn config(base_url: String, mode: ApiMode, stream: bool) -> ClientConfig {
    ClientConfig {
        base_url,
        model: "test-model".into(),
        api_key_env: None,
        mode,
        stream,
        params: GenerationParams {
            max_tokens: 16,
            temperature: 0.0,
            top_p: Some(0.9),
            seed: Some(7),
            top_logprobs: Some(2),
        },
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_retries: 0,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        },
        limits: RateLimits {
            requests_per_minute: 0,
            tokens_per_minute: 10_000,
            concurrency: 1,
        },
    }
}

#[test]
fn every_mode_normalises_to_text_finish_usage_and_logprobs() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let keys = HashMap::from([("What is 2+2?".to_string(), "q1".to_string())]);
    let server = FaultServer::start(&runtime, keys, None, Arc::new(|_: &str, _| Fault::Ok));
    for (mode, stream) in [
        (ApiMode::Chat, true),
        (ApiMode::Chat, false),
        (ApiMode::Completions, true),
        (ApiMode::Completions, false),
    ] {
        let client = OpenAICompletionClient::new(config(server.base_url(), mode, stream)).unwrap();
        let c = runtime
            .block_on(client.complete("What is 2+2?", 10))
            .unwrap_or_else(|e| panic!("{mode:?} stream={stream}: {e}"));
        let what = format!("{mode:?} stream={stream}");
        assert_eq!(c.text, "answer to q1", "{what}");
        assert_eq!(c.finish_reason.as_deref(), Some("stop"), "{what}");
        assert_eq!(c.usage.unwrap().completion_tokens, 3, "{what}");
        assert_eq!(c.attempts, 1);
        assert_eq!(c.ttft.is_some(), stream, "{what}");
        let logprobs = c.logprobs.expect("logprobs were asked for");
        assert!(!logprobs.is_empty(), "{what}");
        assert_eq!(logprobs[0].logprob, -0.5, "{what}");
        assert_eq!(logprobs[0].top[1], ("x".to_string(), -2.0), "{what}");

        let sent = server.seen().last().unwrap().body.clone();
        assert_eq!(sent["model"], "test-model");
        assert_eq!(sent["max_tokens"], 16);
        assert_eq!(sent["seed"], 7);
        assert_eq!(sent["stream"], stream);
        match mode {
            ApiMode::Chat => {
                assert_eq!(sent["messages"][0]["role"], "user");
                assert_eq!(sent["messages"][0]["content"], "What is 2+2?");
                assert_eq!(
                    (sent["logprobs"].clone(), sent["top_logprobs"].clone()),
                    (true.into(), 2.into())
                );
            }
            ApiMode::Completions => {
                assert_eq!(sent["prompt"], "What is 2+2?");
                assert_eq!(sent["logprobs"], 2);
            }
        }
        assert_eq!(sent.get("stream_options").is_some(), stream, "{what}");
    }
}

#[test]
fn a_request_over_the_token_limit_is_refused_without_sending() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = FaultServer::start(
        &runtime,
        HashMap::new(),
        None,
        Arc::new(|_: &str, _| Fault::Ok),
    );
    let client =
        OpenAICompletionClient::new(config(server.base_url(), ApiMode::Chat, true)).unwrap();
    let err = runtime
        .block_on(client.complete("long", 20_000))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tokens_per_minute = 10000"), "{err}");
    assert!(server.seen().is_empty());
}
