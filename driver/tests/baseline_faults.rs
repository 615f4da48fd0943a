//! `driver baseline` against a misbehaving endpoint: bursts of 429 with Retry-After, 500s, a hung
//! response past the client timeout, a connection reset, invalid JSON. Every row ends `ok` after
//! its retries or `failed` with its error; the client-side rate limit and concurrency bound hold;
//! the API key never reaches a file or the logs.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::fault_server::{max_in_window, Fault, FaultServer};
use driver::data::table::{PromptTable, RowStatus};

const API_KEY_ENV: &str = "SHARDLAB_FAULT_TEST_KEY";
const API_KEY: &str = "sk-shardlab-test-7f3e9a1c5d";
const MAX_RETRIES: usize = 3;
const REQUESTS_PER_MINUTE: usize = 600;
const CONCURRENCY: usize = 4;

/// Each row's fate by attempt; rows not named here answer at once.
fn plan(row: &str, attempt: usize) -> Fault {
    match (row, attempt) {
        // A burst: the last three rows (sent when the queue has drained, so only Retry-After
        // holds them back) refused twice with Retry-After: 1, then served.
        ("p18/4k" | "p19/4k" | "p20/4k", 1 | 2) => Fault::TooMany { retry_after_s: 1 },
        ("p04/2k", 1 | 2) => Fault::ServerError,
        ("p05/2k", 1) => Fault::Hang,
        ("p06/2k", 1) => Fault::Reset,
        ("p07/2k", 1) => Fault::InvalidJson,
        // Never served.
        ("p08/2k", _) => Fault::ServerError,
        ("p09/2k", _) => Fault::BadRequest,
        ("p10/2k", _) => Fault::InvalidJson,
        ("p11/2k", _) => Fault::Hang,
        _ => Fault::Ok,
    }
}

#[test]
fn faults_end_ok_after_retries_or_failed_with_their_error_within_the_limits() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = FaultServer::start(
        &runtime,
        common::prompt_keys(),
        Some(API_KEY.to_string()),
        Arc::new(plan),
    );
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let config = common::write_config(
        dir.path(),
        &server.base_url(),
        &results,
        &format!(
            "model = \"test-model\"\napi_key_env = \"{API_KEY_ENV}\"\nmax_tokens = 16\n\
             request_timeout_s = 2.0\nconnect_timeout_s = 2.0\nmax_retries = {MAX_RETRIES}\n\
             initial_backoff_ms = 50\nmax_backoff_ms = 400\n\
             requests_per_minute = {REQUESTS_PER_MINUTE}\nconcurrency = {CONCURRENCY}\n"
        ),
    );
    // Debug logs from every crate: the key must not show up even there.
    let output = common::driver()
        .env("RUST_LOG", "debug")
        .env(API_KEY_ENV, API_KEY)
        .args(["baseline", "--no-progress", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Four rows never succeed: the run reports them and exits 1.
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("4 rows failed"), "{stderr}");

    let table = PromptTable::read_parquet(&results.join("baseline_prompts.parquet")).unwrap();
    let rows: HashMap<String, _> = table.rows.iter().map(|r| (r.key(), r)).collect();
    assert_eq!(rows.len(), 40);
    let failed_with = [
        ("p08/2k", "HTTP 500"),
        ("p09/2k", "HTTP 400"),
        ("p10/2k", "invalid response"),
        ("p11/2k", "no complete response within 2s"),
    ];
    for (key, row) in &rows {
        match failed_with.iter().find(|(k, _)| k == key) {
            Some((_, error)) => {
                assert_eq!(row.status, RowStatus::Failed, "{key}");
                let message = row.local_error.as_deref().unwrap_or_default();
                assert!(message.contains(error), "{key}: {message}");
                assert_eq!(row.local_completion, None, "{key}");
            }
            None => {
                assert_eq!(row.status, RowStatus::Ok, "{key}: {:?}", row.local_error);
                assert_eq!(
                    row.local_completion.as_deref(),
                    Some(format!("answer to {key}").as_str()),
                    "rows and answers must stay aligned"
                );
                assert_eq!(row.local_completion_tokens, Some(3));
                let (ttft, latency) = (row.local_ttft_ms.unwrap(), row.local_latency_ms.unwrap());
                assert!(0.0 < ttft && ttft <= latency, "{key}: {ttft} {latency}");
                assert_eq!(row.local_error, None);
            }
        }
    }

    // Attempts per row: retried what may pass, up to the limit; a 400 is not retried.
    let counts = server.counts();
    let expected = |key: &str| match key {
        "p18/4k" | "p19/4k" | "p20/4k" | "p04/2k" => 3,
        "p05/2k" | "p06/2k" | "p07/2k" => 2,
        "p08/2k" | "p10/2k" | "p11/2k" => 1 + MAX_RETRIES,
        _ => 1,
    };
    for key in rows.keys() {
        assert_eq!(
            counts.get(key).copied().unwrap_or(0),
            expected(key),
            "{key}"
        );
    }
    let seen = server.seen();
    assert_eq!(seen.len(), counts.values().sum::<usize>());
    assert!(
        seen.iter().all(|s| s.authorized),
        "every request carries the key"
    );

    // Retry-After honoured: a refused row comes back no sooner than a second later; a hung one
    // after the 2 s timeout.
    let attempts_of = |key: &str| -> Vec<_> { seen.iter().filter(|s| s.row == key).collect() };
    for key in ["p18/4k", "p19/4k", "p20/4k"] {
        for pair in attempts_of(key).windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(
                gap >= Duration::from_millis(950),
                "{key}: retried after {gap:?}"
            );
        }
    }
    let hung = attempts_of("p05/2k");
    assert!(hung[1].at - hung[0].at >= Duration::from_secs(2));

    // The rate limit: 600 a minute is one every 100 ms, so at most 10 in any second, and never
    // two within 50 ms (both windows allow 50 ms of jitter between sending and arriving on a busy
    // machine). Without the limit the four slots fire together.
    let per_second = REQUESTS_PER_MINUTE / 60;
    let busiest = max_in_window(&seen, Duration::from_millis(950));
    assert!(busiest <= per_second, "{busiest} requests within a second");
    let mut by_time = seen.clone();
    by_time.sort_by_key(|s| s.at);
    let close: Vec<String> = by_time
        .windows(2)
        .filter(|p| p[1].at - p[0].at < Duration::from_millis(50))
        .map(|p| {
            format!(
                "{} #{} -> {} #{} after {:?}",
                p[0].row,
                p[0].attempt,
                p[1].row,
                p[1].attempt,
                p[1].at - p[0].at
            )
        })
        .collect();
    assert!(close.is_empty(), "requests closer than 50 ms: {close:?}");
    let in_flight = server
        .max_in_flight
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(in_flight <= CONCURRENCY, "{in_flight} requests in flight");
    assert!(in_flight >= 2, "the hung requests overlap others");

    // The API key is in no file and no log line.
    for file in common::files_under(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes
                .windows(API_KEY.len())
                .any(|w| w == API_KEY.as_bytes()),
            "{} holds the API key",
            file.display()
        );
    }
    assert!(
        !stdout.contains(API_KEY) && !stderr.contains(API_KEY),
        "the logs hold the API key"
    );
    assert!(
        stderr.contains("row{key=p08/2k}") && stderr.contains("retrying"),
        "retries are logged with their row: {stderr}"
    );
}

#[test]
fn an_unset_api_key_variable_is_named_and_nothing_is_sent() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = FaultServer::start(
        &runtime,
        common::prompt_keys(),
        None,
        Arc::new(|_: &str, _| Fault::Ok),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(
        dir.path(),
        &server.base_url(),
        &dir.path().join("results"),
        "model = \"m\"\napi_key_env = \"SHARDLAB_UNSET_KEY_VARIABLE\"\n",
    );
    let output = common::driver()
        .env_remove("SHARDLAB_UNSET_KEY_VARIABLE")
        .args(["baseline", "--no-progress", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("SHARDLAB_UNSET_KEY_VARIABLE"), "{stderr}");
    assert!(server.seen().is_empty());
}
