//! `engine serve` under a real `mpirun` on SmolLM2: `--tp 3` and `--pp 2` answer the same as one
//! rank (greedy chat, non-streamed and streamed, sent together so they batch), after idling longer
//! than `--comm-timeout` (rank 0's heartbeats keep the followers' watchdogs quiet).
//! Never skips: without `mpirun` on PATH it fails and says how to install it.

mod common;
mod serve_common;

use std::time::Duration;

use serde_json::{json, Value};

use serve_common::{assemble, post, EventStream, Server, MODEL};

/// Shorter than the idle wait below: a job whose followers were not kept alive would die.
const COMM_TIMEOUT_S: u64 = 3;

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

/// Every conversation at once, alternately streamed and not: `(text, finish_reason)` each.
fn answers(server: &Server) -> Vec<(String, String)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = conversations()
            .into_iter()
            .enumerate()
            .map(|(i, messages)| {
                scope.spawn(move || {
                    let mut body = json!({"model": MODEL, "messages": messages,
                                          "max_tokens": 16, "temperature": 0});
                    if i % 2 == 1 {
                        body["stream"] = json!(true);
                        let chunks = EventStream::open(server, "/v1/chat/completions", &body, None)
                            .collect();
                        let streamed = assemble(&chunks);
                        return (streamed.text, streamed.finish_reason);
                    }
                    let reply = post(server, "/v1/chat/completions", &body, None);
                    assert_eq!(reply.status, 200, "{}", reply.text);
                    let choice = &reply.body["choices"][0];
                    (
                        choice["message"]["content"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                        choice["finish_reason"].as_str().unwrap_or("").to_owned(),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client thread panicked"))
            .collect()
    })
}

#[test]
fn tp3_and_pp2_serve_the_same_answers_as_one_rank() {
    let expected = {
        let single = Server::single(&[], &[]);
        answers(&single)
    };
    assert!(
        expected.iter().filter(|(text, _)| !text.is_empty()).count() >= 4,
        "SmolLM2 should answer: {expected:?}"
    );
    let timeout = COMM_TIMEOUT_S.to_string();
    for (ranks, layout) in [(3, ["--tp", "3"]), (2, ["--pp", "2"])] {
        let mut args = layout.to_vec();
        args.extend(["--comm-timeout", &timeout]);
        let mut server = Server::mpi(ranks, &args);
        std::thread::sleep(Duration::from_secs(2 * COMM_TIMEOUT_S));
        server.assert_running();
        let got = answers(&server);
        for (i, (want, got)) in expected.iter().zip(&got).enumerate() {
            assert_eq!(
                want, got,
                "{layout:?}: conversation {i} differs from one rank"
            );
        }
        // Idle again, then a second round on the same job.
        std::thread::sleep(Duration::from_secs(COMM_TIMEOUT_S + 1));
        assert_eq!(answers(&server), got, "{layout:?}: a second round differs");
        server.assert_running();
    }
}
