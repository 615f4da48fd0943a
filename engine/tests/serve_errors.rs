//! Every error `engine serve` answers, each with its status and OpenAI's error shape
//! (`{"error": {"message", "type", "param", "code"}}`), on a server that keeps serving after each;
//! a full queue gets 429 with Retry-After; a client that disconnects mid-stream frees its slot.

mod common;
mod serve_common;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use serve_common::{chat_body, get, metric, post, post_raw, EventStream, Reply, Server, MODEL};

const KEY_VAR: &str = "SHARDLAB_TEST_API_KEY";
const KEY: &str = "sk-test-0123456789";

/// Asserts the status and the error shape; returns the error object.
fn assert_error(reply: &Reply, status: StatusCode, param: Option<&str>) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text);
    let error = &reply.body["error"];
    let fields: Vec<&str> = error
        .as_object()
        .unwrap_or_else(|| panic!("no error object in {}", reply.text))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        ["code", "message", "param", "type"],
        "{}",
        reply.text
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        reply.text
    );
    assert!(error["type"].is_string(), "{}", reply.text);
    assert_eq!(error["param"].as_str(), param, "{}", reply.text);
    error.clone()
}

fn chat(server: &Server, body: &Value) -> Reply {
    post(server, "/v1/chat/completions", body, Some(KEY))
}

#[test]
fn every_error_has_its_status_and_openai_shape_and_the_server_keeps_serving() {
    let mut server = Server::single(
        &[
            "--api-key-env",
            KEY_VAR,
            "--max-batch",
            "1",
            "--max-queue",
            "1",
        ],
        &[(KEY_VAR, KEY)],
    );
    let ok = chat_body("What is 2+2?", 4);

    // 401: no key, a wrong key; open routes need none.
    let reply = post(&server, "/v1/chat/completions", &ok, None);
    assert_eq!(
        assert_error(&reply, StatusCode::UNAUTHORIZED, None)["code"],
        "invalid_api_key"
    );
    let reply = post(&server, "/v1/chat/completions", &ok, Some("sk-wrong"));
    assert_error(&reply, StatusCode::UNAUTHORIZED, None);
    assert_error(
        &get(&server, "/v1/models", None),
        StatusCode::UNAUTHORIZED,
        None,
    );
    assert_eq!(get(&server, "/health", None).status, StatusCode::OK);
    assert_eq!(get(&server, "/metrics", None).status, StatusCode::OK);
    let models = get(&server, "/v1/models", Some(KEY));
    assert_eq!(models.body["data"][0]["id"], MODEL, "{}", models.text);

    // 400: malformed JSON, wrong types, unknown model, out-of-range fields, too long a prompt.
    for body in [r#"{"model": "smollm2", "messages": ["#, "not json", ""] {
        let reply = post_raw(&server, "/v1/chat/completions", body, Some(KEY));
        assert_error(&reply, StatusCode::BAD_REQUEST, None);
    }
    let reply = post_raw(
        &server,
        "/v1/completions",
        r#"{"model": "smollm2", "prompt": "hi", "max_tokens": "many"}"#,
        Some(KEY),
    );
    assert_error(&reply, StatusCode::BAD_REQUEST, None);
    let mut unknown = ok.clone();
    unknown["model"] = json!("gpt-4o");
    let error = assert_error(
        &chat(&server, &unknown),
        StatusCode::BAD_REQUEST,
        Some("model"),
    );
    assert_eq!(error["code"], "model_not_found");
    for (field, value) in [
        ("max_tokens", json!(0)),
        ("max_tokens", json!(-3)),
        ("max_tokens", json!(1_000_000)),
        ("temperature", json!(3.5)),
        ("top_p", json!(0)),
        ("n", json!(2)),
    ] {
        let mut body = ok.clone();
        body[field] = value.clone();
        let reply = chat(&server, &body);
        assert_error(&reply, StatusCode::BAD_REQUEST, Some(field));
    }
    let mut body = ok.clone();
    body["max_completion_tokens"] = json!(0);
    assert_error(
        &chat(&server, &body),
        StatusCode::BAD_REQUEST,
        Some("max_tokens"),
    );
    let long = "hello ".repeat(9000);
    let error = assert_error(
        &chat(&server, &chat_body(&long, 4)),
        StatusCode::BAD_REQUEST,
        Some("messages"),
    );
    assert_eq!(error["code"], "context_length_exceeded");
    let reply = post(
        &server,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": long, "max_tokens": 4}),
        Some(KEY),
    );
    assert_error(&reply, StatusCode::BAD_REQUEST, Some("prompt"));
    let reply = post(
        &server,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": [1, 2, 999999], "max_tokens": 4}),
        Some(KEY),
    );
    assert_error(&reply, StatusCode::BAD_REQUEST, Some("prompt"));
    let reply = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": MODEL, "messages": [], "max_tokens": 4}),
        Some(KEY),
    );
    assert_error(&reply, StatusCode::BAD_REQUEST, Some("messages"));
    // 404 and 405, in the same shape.
    assert_error(
        &get(&server, "/v1/nothing", Some(KEY)),
        StatusCode::NOT_FOUND,
        None,
    );
    assert_error(
        &get(&server, "/v1/chat/completions", Some(KEY)),
        StatusCode::METHOD_NOT_ALLOWED,
        None,
    );

    // Still serving.
    let reply = chat(&server, &ok);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.body["usage"]["completion_tokens"], 4,
        "{}",
        reply.text
    );

    // 429: one request runs (--max-batch 1), one waits (--max-queue 1), the next is turned away.
    let mut long_body = chat_body("Write a long story about a dragon.", 4000);
    long_body["stream"] = json!(true);
    long_body["ignore_eos"] = json!(true);
    let mut running = EventStream::open(&server, "/v1/chat/completions", &long_body, Some(KEY));
    for _ in 0..3 {
        running.next_data().expect("the long stream's first chunks");
    }
    let waiting = std::thread::scope(|scope| {
        let server = &server;
        let waiting = scope.spawn(move || {
            let started = Instant::now();
            (chat(server, &chat_body("Name a colour.", 6)), started)
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while metric(server, "shardlab_queue_depth") < 1.0 {
            assert!(Instant::now() < deadline, "the second request never queued");
            std::thread::sleep(Duration::from_millis(50));
        }
        let reply = chat(server, &ok);
        let error = assert_error(&reply, StatusCode::TOO_MANY_REQUESTS, None);
        assert_eq!(error["code"], "rate_limit_exceeded");
        let retry: u64 = reply
            .retry_after
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("429 without a Retry-After in seconds: {reply:?}"));
        assert!(retry >= 1);

        // The running client hangs up mid-stream: its slot goes to the waiting request, long
        // before the 4000 tokens it asked for.
        let hung_up = Instant::now();
        drop(running);
        let (reply, _) = waiting.join().expect("the waiting client panicked");
        (reply, hung_up.elapsed())
    });
    let (reply, after_hang_up) = waiting;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(
        after_hang_up < Duration::from_secs(60),
        "the waiting request took {after_hang_up:?} after the other client hung up"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server, "shardlab_running_sequences") != 0.0 {
        assert!(Instant::now() < deadline, "the hung-up sequence still runs");
        std::thread::sleep(Duration::from_millis(50));
    }

    // And after all that, a normal request, streamed this time.
    let mut body = ok.clone();
    body["stream"] = json!(true);
    let chunks = EventStream::open(&server, "/v1/chat/completions", &body, Some(KEY)).collect();
    assert!(!chunks.is_empty());
    server.assert_running();
    let unauthorized = metric(
        &server,
        "shardlab_requests_total{route=\"/v1/chat/completions\",status=\"401\"}",
    );
    assert_eq!(unauthorized, 2.0);
}
