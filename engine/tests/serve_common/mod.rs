//! Helpers for the `engine serve` tests: start a server on a free local port (alone, or under
//! `mpirun` with the harness of `common::mpi`), wait until it answers, talk to it over HTTP and
//! read Server-Sent Events. A server is killed when its handle is dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::mpi::{engine_bin, Job};
use crate::common::project_model;

/// How long a server may take to load its model and listen.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The served name of SmolLM2 in these tests.
pub const MODEL: &str = "smollm2";

/// SmolLM2-135M-Instruct, fetched by `make model`.
pub fn smollm2() -> PathBuf {
    project_model("smollm2-135m-instruct")
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a free local port")
}

/// A running `engine serve`.
pub struct Server {
    pub base: String,
    process: Process,
}

enum Process {
    /// `engine serve` alone; its output goes to `log`.
    Single {
        child: Child,
        log: PathBuf,
        _dir: tempfile::TempDir,
    },
    Mpi(Job),
}

impl Server {
    /// `engine serve --model SmolLM2 --served-model-name smollm2 --port <free> <extra>` alone,
    /// with `env` set.
    pub fn single(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("serve.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(engine_bin())
            .args(serve_args(port, extra))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("starting engine serve");
        let mut server = Server {
            base: format!("http://127.0.0.1:{port}"),
            process: Process::Single {
                child,
                log,
                _dir: dir,
            },
        };
        server.wait_ready();
        server
    }

    /// `mpirun -n <ranks> engine serve ...` (see [`Server::single`]).
    pub fn mpi(ranks: usize, extra: &[&str]) -> Server {
        let port = free_port();
        let job = Job::start_mpirun(ranks, &serve_args(port, extra));
        let mut server = Server {
            base: format!("http://127.0.0.1:{port}"),
            process: Process::Mpi(job),
        };
        server.wait_ready();
        server
    }

    /// Polls `/health` until it answers 200; panics with the server's output if it exits or
    /// takes too long.
    fn wait_ready(&mut self) {
        let client = client();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(exit) = self.exited() {
                panic!("engine serve exited before it was ready: {exit}");
            }
            let ok = client
                .get(self.url("/health"))
                .timeout(Duration::from_secs(2))
                .send()
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ok {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "engine serve did not answer /health within {READY_TIMEOUT:?}\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `Some(description)` when the server has exited.
    pub fn exited(&mut self) -> Option<String> {
        match &mut self.process {
            Process::Single { child, log, .. } => {
                let status = child.try_wait().ok().flatten()?;
                Some(format!(
                    "{status}\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                ))
            }
            Process::Mpi(job) => job.wait_timeout(Duration::ZERO).map(|out| out.describe()),
        }
    }

    /// What the server printed so far (alone only; mpirun's output comes with its exit).
    pub fn output(&self) -> String {
        match &self.process {
            Process::Single { log, .. } => std::fs::read_to_string(log).unwrap_or_default(),
            Process::Mpi(job) => format!("({} is still running)", job.what()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Panics, with the server's output, unless it is still running.
    pub fn assert_running(&mut self) {
        if let Some(exit) = self.exited() {
            panic!("engine serve exited: {exit}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Process::Single { child, .. } = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A `Job` kills its ranks when dropped.
    }
}

fn serve_args(port: u16, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--model".into(),
        smollm2().display().to_string(),
        "--served-model-name".into(),
        MODEL.into(),
        "--port".into(),
        port.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// An HTTP client that never goes through a proxy (every request here is to localhost).
pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("HTTP client")
}

/// A status, the headers that matter here, and the JSON body (`Value::Null` if it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub retry_after: Option<String>,
    pub body: Value,
    pub text: String,
}

impl Reply {
    fn read(response: Response) -> Reply {
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().unwrap_or_default();
        Reply {
            status,
            retry_after,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }
}

/// `POST path` with a raw body (and a bearer key, if given).
pub fn post_raw(server: &Server, path: &str, body: &str, key: Option<&str>) -> Reply {
    let mut request = client()
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    Reply::read(request.send().expect("sending a request"))
}

/// `POST path` with a JSON body.
pub fn post(server: &Server, path: &str, body: &Value, key: Option<&str>) -> Reply {
    post_raw(server, path, &body.to_string(), key)
}

/// `GET path`.
pub fn get(server: &Server, path: &str, key: Option<&str>) -> Reply {
    let mut request = client().get(server.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    Reply::read(request.send().expect("sending a request"))
}

/// An open SSE response, read one `data:` payload at a time.
pub struct EventStream {
    lines: std::io::Lines<BufReader<Response>>,
}

impl EventStream {
    /// `POST path` with `body` (which should set `"stream": true`); panics unless the status is
    /// 200 with `text/event-stream`.
    pub fn open(server: &Server, path: &str, body: &Value, key: Option<&str>) -> EventStream {
        let mut request = client()
            .post(server.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().expect("sending a request");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if status != StatusCode::OK || !content_type.starts_with("text/event-stream") {
            panic!(
                "expected an event stream, got {status} {content_type}: {}",
                response.text().unwrap_or_default()
            );
        }
        EventStream {
            lines: BufReader::new(response).lines(),
        }
    }

    /// The next `data:` payload (`[DONE]` included), or `None` at the end of the response.
    pub fn next_data(&mut self) -> Option<String> {
        for line in self.lines.by_ref() {
            let line = line.expect("reading the event stream");
            if let Some(data) = line.strip_prefix("data:") {
                return Some(data.trim_start().to_owned());
            }
        }
        None
    }

    /// Every chunk up to `[DONE]` (which must come, and come last).
    pub fn collect(mut self) -> Vec<Value> {
        let mut chunks = Vec::new();
        loop {
            let data = self
                .next_data()
                .expect("the stream ended without `data: [DONE]`");
            if data == "[DONE]" {
                assert!(self.next_data().is_none(), "data after [DONE]");
                return chunks;
            }
            chunks.push(serde_json::from_str(&data).expect("a chunk is JSON"));
        }
    }
}

/// A streamed completion put together: its text, finish reason and usage (when asked for).
#[derive(Debug, Clone, PartialEq)]
pub struct Streamed {
    pub text: String,
    pub finish_reason: String,
    pub usage: Option<Value>,
    pub chunks: usize,
}

/// Puts chat or completion chunks together.
pub fn assemble(chunks: &[Value]) -> Streamed {
    let mut text = String::new();
    let mut finish_reason = String::new();
    let mut usage = None;
    for chunk in chunks {
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            usage = Some(u.clone());
        }
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let piece = choice["delta"]["content"]
                .as_str()
                .or_else(|| choice["text"].as_str())
                .unwrap_or("");
            text.push_str(piece);
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish_reason = reason.to_owned();
            }
        }
    }
    Streamed {
        text,
        finish_reason,
        usage,
        chunks: chunks.len(),
    }
}

/// A greedy chat request body.
pub fn chat_body(question: &str, max_tokens: u32) -> Value {
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

/// Runs `engine generate --json <args>` and returns its one JSON line per prompt.
pub fn engine_generate(model: &Path, args: &[&str]) -> Vec<Value> {
    let out = Command::new(engine_bin())
        .arg("generate")
        .arg("--model")
        .arg(model)
        .arg("--json")
        .args(args)
        .output()
        .expect("running engine generate");
    assert!(
        out.status.success(),
        "engine generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("engine generate --json line"))
        .collect()
}

/// The value of an unlabelled metric (or the first matching line) in `/metrics`.
pub fn metric(server: &Server, line_prefix: &str) -> f64 {
    let text = get(server, "/metrics", None).text;
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_prefix} in:\n{text}"))
}
