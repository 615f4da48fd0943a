//! An OpenAI-compatible test server that misbehaves on purpose: per row and attempt it answers,
//! refuses with 429 + Retry-After, fails with 500 or 400, hangs, resets the connection, or sends
//! invalid JSON. It logs every request (arrival time, row, attempt) and the most requests it had
//! in flight at once. Raw HTTP/1.1 over tokio, one request per connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Stream the answer `answer to {row}`.
    Ok,
    /// Wait, then stream the answer.
    Slow(Duration),
    /// 429 with `Retry-After: {secs}`.
    TooMany { retry_after_s: u64 },
    /// 500.
    ServerError,
    /// 400 (not worth retrying).
    BadRequest,
    /// Read the request and never answer (until the client gives up).
    Hang,
    /// Close the connection with a TCP reset before answering.
    Reset,
    /// 200 with a body that is not JSON.
    InvalidJson,
}

/// Decides each request's fate from its row key and attempt number (1-based).
pub type Plan = Arc<dyn Fn(&str, usize) -> Fault + Send + Sync>;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub row: String,
    pub attempt: usize,
    pub fault: Fault,
    pub authorized: bool,
    /// The request body as JSON.
    pub body: serde_json::Value,
}

pub struct FaultServer {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Seen>>>,
    pub max_in_flight: Arc<AtomicUsize>,
}

struct State {
    plan: Plan,
    keys: HashMap<String, String>,
    api_key: Option<String>,
    log: Arc<Mutex<Vec<Seen>>>,
    attempts: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    max_in_flight: Arc<AtomicUsize>,
}

impl FaultServer {
    /// Starts the server on `runtime`; `keys` maps prompt texts to row keys.
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        keys: HashMap<String, String>,
        api_key: Option<String>,
        plan: Plan,
    ) -> Self {
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(State {
            plan,
            keys,
            api_key,
            log: Arc::clone(&log),
            attempts: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: Arc::clone(&max_in_flight),
        });
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&state)));
            }
        });
        Self {
            addr,
            log,
            max_in_flight,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    /// Requests per row.
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for s in self.seen() {
            *counts.entry(s.row).or_default() += 1;
        }
        counts
    }
}

/// Reads one request: the header block, then `Content-Length` bytes of body.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buffer[header_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

fn prompt_of(json: &serde_json::Value) -> String {
    json["messages"][0]["content"]
        .as_str()
        .or(json["prompt"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn response(status: &str, extra_headers: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{extra_headers}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The answer `answer to {row}` in the shape the request asked for: chat or completions, whole or
/// streamed, with logprobs when asked.
fn answer(row: &str, request: &serde_json::Value) -> String {
    let chat = request.get("messages").is_some();
    let stream = request["stream"].as_bool().unwrap_or(false);
    let logprobs = request.get("logprobs").is_some();
    let usage =
        serde_json::json!({"prompt_tokens": 100, "completion_tokens": 3, "total_tokens": 103});
    let lp = |token: &str| {
        if !logprobs {
            return serde_json::Value::Null;
        }
        if chat {
            serde_json::json!({"content": [{"token": token, "logprob": -0.5, "bytes": [],
                "top_logprobs": [{"token": token, "logprob": -0.5}, {"token": "x", "logprob": -2.0}]}]})
        } else {
            serde_json::json!({"tokens": [token], "token_logprobs": [-0.5],
                "top_logprobs": [{token: -0.5, "x": -2.0}], "text_offset": [0]})
        }
    };
    let choice = |text: &str, finish: Option<&str>| {
        let mut c = serde_json::json!({"index": 0, "finish_reason": finish, "logprobs": lp(text)});
        match (chat, stream) {
            (true, true) => c["delta"] = serde_json::json!({"content": text}),
            (true, false) => {
                c["message"] = serde_json::json!({"role": "assistant", "content": text})
            }
            (false, _) => c["text"] = serde_json::json!(text),
        }
        c
    };
    if !stream {
        let full = format!("answer to {row}");
        let body = serde_json::json!({"choices": [choice(&full, Some("stop"))], "usage": usage})
            .to_string();
        return response("200 OK", "", "application/json", &body);
    }
    let mut body = String::new();
    let chunks = [
        serde_json::json!({"choices": [choice("answer to ", None)]}),
        serde_json::json!({"choices": [choice(row, Some("stop"))]}),
        serde_json::json!({"choices": [], "usage": usage}),
    ];
    for c in chunks {
        body.push_str(&format!("data: {c}\n\n"));
    }
    body.push_str("data: [DONE]\n\n");
    format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n{body}")
}

async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let Some((head, body)) = read_request(&mut stream).await else {
        return;
    };
    let now = Instant::now();
    let in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let row = state
        .keys
        .get(&prompt_of(&request))
        .cloned()
        .unwrap_or_else(|| "?".to_string());
    let authorized = match &state.api_key {
        None => true,
        Some(key) => head
            .lines()
            .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Bearer {key}"))),
    };
    let attempt = {
        let mut attempts = state.attempts.lock().unwrap();
        let n = attempts.entry(row.clone()).or_default();
        *n += 1;
        *n
    };
    let fault = if authorized {
        (state.plan)(&row, attempt)
    } else {
        Fault::BadRequest
    };
    state.log.lock().unwrap().push(Seen {
        at: now,
        row: row.clone(),
        attempt,
        fault,
        authorized,
        body: request.clone(),
    });
    // The request counts as finished before its last bytes go out, so that a client that has
    // read a whole response never sees the server count it as still in flight.
    let done = || state.in_flight.fetch_sub(1, Ordering::SeqCst);
    match fault {
        Fault::Ok | Fault::Slow(_) => {
            if let Fault::Slow(wait) = fault {
                tokio::time::sleep(wait).await;
            }
            done();
            let _ = stream.write_all(answer(&row, &request).as_bytes()).await;
        }
        Fault::TooMany { retry_after_s } => {
            done();
            let r = response(
                "429 Too Many Requests",
                &format!("Retry-After: {retry_after_s}\r\n"),
                "application/json",
                r#"{"error":{"message":"rate limited","type":"rate_limit"}}"#,
            );
            let _ = stream.write_all(r.as_bytes()).await;
        }
        Fault::ServerError => {
            done();
            let r = response(
                "500 Internal Server Error",
                "",
                "application/json",
                r#"{"error":{"message":"boom"}}"#,
            );
            let _ = stream.write_all(r.as_bytes()).await;
        }
        Fault::BadRequest => {
            done();
            let message = if authorized {
                r#"{"error":{"message":"bad request"}}"#
            } else {
                r#"{"error":{"message":"missing or wrong API key"}}"#
            };
            let status = if authorized {
                "400 Bad Request"
            } else {
                "401 Unauthorized"
            };
            let r = response(status, "", "application/json", message);
            let _ = stream.write_all(r.as_bytes()).await;
        }
        Fault::Hang => {
            // Wait for the client to give up and close its end.
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(120), async {
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            done();
        }
        Fault::Reset => {
            done();
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            drop(stream);
            return;
        }
        Fault::InvalidJson => {
            done();
            let _ = stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: {\"choices\": [{\"delta\": \n\ndata: [DONE]\n\n",
                )
                .await;
        }
    }
    let _ = stream.shutdown().await;
}

/// The most requests that arrived within any `window`.
pub fn max_in_window(seen: &[Seen], window: Duration) -> usize {
    let mut times: Vec<Instant> = seen.iter().map(|s| s.at).collect();
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t - times[i] < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}
