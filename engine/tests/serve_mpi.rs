//! `engine serve` under a real `mpirun` on SmolLM2: `--tp 3` and `--pp 2` answer the same as one
//! rank (greedy chat, non-streamed and streamed, sent together so they batch), after idling longer
//! than `--comm-timeout` (rank 0's heartbeats keep the followers' watchdogs quiet).
//! Never skips: without `mpirun` on PATH it fails and says how to install it.

mod common;
mod serve_common;

use std::time::Duration;

use serde_json::{json, Value};

use serve_common::{assemble, post, EventStream, Server, MODEL};

/// Shorter than the idle wait below, so a job whose followers were not kept alive would die; not
/// so short that a rank starved of CPU on a loaded two-core machine trips it.
const COMM_TIMEOUT_S: u64 = 8;

fn conversations() -> Vec<Value> {
    vec![
        json!([{"role": "user", "content": "What is 2+2?"}]),
        json!([{"role": "user", "content": "What is the capital of France?"}]),
        json!([{"role": "system", "content": "You are a helpful assistant."},
               {"role": "user", "content": "Name three primary colors."}]),
        json!([{"role": "user", "content": "Write a haiku about the sea."}]),
        json!([{"role": "user", "content": "How many legs does a spider have? Answer briefly."}]),
    ]
}

/// One conversation, greedy, streamed or not: `(text, finish_reason)`.
fn answer(server: &Server, messages: Value, stream: bool) -> (String, String) {
    let mut body = json!({"model": MODEL, "messages": messages, "max_tokens": 16,
                          "temperature": 0});
    if stream {
        body["stream"] = json!(true);
        let chunks = EventStream::open(server, "/v1/chat/completions", &body, None).collect();
        let streamed = assemble(&chunks);
        return (streamed.text, streamed.finish_reason);
    }
    let reply = post(server, "/v1/chat/completions", &body, None);
    assert_eq!(reply.status, 200, "{}", reply.text);
    let choice = &reply.body["choices"][0];
    let field = |v: &Value| v.as_str().unwrap_or("").to_owned();
    (
        field(&choice["message"]["content"]),
        field(&choice["finish_reason"]),
    )
}

/// Every conversation at once, alternately streamed and not. A failed client shows what became
/// of the server.
fn answers(server: &mut Server) -> Vec<(String, String)> {
    let shared = &*server;
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = conversations()
            .into_iter()
            .enumerate()
            .map(|(i, messages)| scope.spawn(move || answer(shared, messages, i % 2 == 1)))
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    if results.iter().any(Result::is_err) {
        let state = server.exited().unwrap_or_else(|| "it still runs".into());
        panic!("a client failed (see above); the server: {state}");
    }
    results.into_iter().map(|r| r.unwrap_or_default()).collect()
}

#[test]
fn tp3_and_pp2_serve_the_same_answers_as_one_rank() {
    let expected = answers(&mut Server::single(&[], &[]));
    assert!(
        expected.iter().filter(|(text, _)| !text.is_empty()).count() >= 4,
        "SmolLM2 should answer: {expected:?}"
    );
    let timeout = COMM_TIMEOUT_S.to_string();
    for (ranks, layout) in [(3, ["--tp", "3"]), (2, ["--pp", "2"])] {
        let mut args = layout.to_vec();
        args.extend(["--comm-timeout", &timeout]);
        let mut server = Server::mpi(ranks, &args);
        std::thread::sleep(Duration::from_secs(COMM_TIMEOUT_S + 4));
        server.assert_running();
        let got = answers(&mut server);
        for (i, (want, got)) in expected.iter().zip(&got).enumerate() {
            assert_eq!(
                want, got,
                "{layout:?}: conversation {i} differs from one rank"
            );
        }
        assert_eq!(
            answers(&mut server),
            got,
            "{layout:?}: a second round differs"
        );
        server.assert_running();
    }
}
