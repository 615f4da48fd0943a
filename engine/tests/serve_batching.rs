//! Continuous batching in `engine serve` on SmolLM2: 16 streaming requests sent together (joining
//! the running batch at different steps, with different lengths) all finish, each with exactly
//! the text it gets when sent alone; they decode in shared steps, faster than one by one.

mod common;
mod serve_common;

use std::time::Duration;

use serde_json::{json, Value};

use serve_common::{assemble, metric, EventStream, Server, Streamed, MODEL};

const QUESTIONS: [&str; 16] = [
    "What is 2+2?",
    "Name three colours of the rainbow.",
    "Write one sentence about the sea.",
    "What is the capital of France?",
    "Explain what a pipeline is in one sentence.",
    "Give me a synonym for happy.",
    "How many legs does a spider have?",
    "What is the boiling point of water in Celsius?",
    "Say hello in Spanish.",
    "What colour is the sky?",
    "Name a fruit that is yellow.",
    "What is 10 times 3?",
    "Who wrote Hamlet?",
    "What do bees make?",
    "Name a planet.",
    "What is ice made of?",
];

/// Request `i`: chat or completions, greedy or seeded sampling, 6 to 21 tokens.
fn request(i: usize) -> (&'static str, Value) {
    let max_tokens = 6 + (i * 7) % 16;
    let mut body = if i % 4 == 3 {
        json!({"model": MODEL, "prompt": QUESTIONS[i], "max_tokens": max_tokens})
    } else {
        json!({"model": MODEL, "messages": [{"role": "user", "content": QUESTIONS[i]}],
               "max_tokens": max_tokens})
    };
    if i % 5 == 2 {
        body["temperature"] = json!(0.8);
        body["top_p"] = json!(0.9);
        body["seed"] = json!(100 + i);
    } else {
        body["temperature"] = json!(0);
    }
    body["stream"] = json!(true);
    let path = if i % 4 == 3 {
        "/v1/completions"
    } else {
        "/v1/chat/completions"
    };
    (path, body)
}

fn run(server: &Server, i: usize) -> Streamed {
    let (path, body) = request(i);
    let streamed = assemble(&EventStream::open(server, path, &body, None).collect());
    assert!(
        streamed.finish_reason == "stop" || streamed.finish_reason == "length",
        "request {i}: {streamed:?}"
    );
    streamed
}

#[test]
fn sixteen_concurrent_streams_match_each_request_alone() {
    let mut server = Server::single(&["--max-batch", "16"], &[]);

    let alone: Vec<Streamed> = (0..QUESTIONS.len()).map(|i| run(&server, i)).collect();

    // Batching is shown by the batch-size metric below; its speed is `make bench-serve`'s job.
    let together: Vec<Streamed> = std::thread::scope(|scope| {
        let server = &server;
        let handles: Vec<_> = (0..QUESTIONS.len())
            .map(|i| {
                scope.spawn(move || {
                    // Staggered, so that requests join a batch that is already decoding.
                    std::thread::sleep(Duration::from_millis(40 * i as u64));
                    run(server, i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client thread panicked"))
            .collect()
    });
    server.assert_running();

    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(
            (a.text.as_str(), a.finish_reason.as_str()),
            (t.text.as_str(), t.finish_reason.as_str()),
            "request {i} ({:?}) differs alone and in the batch",
            request(i).1
        );
    }
    // A raw-text prompt may legitimately end at once; most must say something.
    let spoke = alone.iter().filter(|a| !a.text.is_empty()).count();
    assert!(
        spoke >= 12,
        "only {spoke} of 16 requests produced text: {alone:?}"
    );
    // Requests sent alone decode alone; sent together, they share steps.
    let steps = metric(&server, "shardlab_batch_size_count");
    let big_steps = steps - metric(&server, "shardlab_batch_size_bucket{le=\"8\"}");
    assert!(
        big_steps >= 5.0,
        "only {big_steps} of {steps} steps decoded more than 8 sequences together"
    );
    assert_eq!(metric(&server, "shardlab_running_sequences"), 0.0);
    assert_eq!(metric(&server, "shardlab_queue_depth"), 0.0);
    assert_eq!(
        metric(&server, "shardlab_time_to_first_token_seconds_count"),
        32.0
    );
    let requests = metric(
        &server,
        "shardlab_requests_total{route=\"/v1/chat/completions\",status=\"200\"}",
    ) + metric(
        &server,
        "shardlab_requests_total{route=\"/v1/completions\",status=\"200\"}",
    );
    assert_eq!(requests, 32.0);
}
