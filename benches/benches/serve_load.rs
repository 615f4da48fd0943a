//! Load on `engine serve` (release build, SmolLM2, one compute thread): the same 32 streaming chat
//! requests (greedy, 64 tokens each with `ignore_eos`) at concurrency 1, 4 and 16, each level
//! measured once after a warm-up. Prints output tokens/s (completion tokens over the level's wall
//! time), p50/p99 time to first token (to the first chunk with text), and the throughput of each
//! level against concurrency 1.
//!
//! `make bench-serve` (builds the release engine first). The server runs with
//! `RAYON_NUM_THREADS=1` (override with `--threads`): of the machine's two cores, one computes and
//! the other is left to the HTTP side and to this client.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use reqwest::blocking::Client;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
struct Args {
    /// Requests per concurrency level.
    #[arg(long, default_value_t = 32)]
    requests: usize,
    /// Concurrency levels, the first being the baseline of the ratios.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    concurrency: Vec<usize>,
    /// Tokens each request generates (`ignore_eos`, so every level does the same work).
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// The server's compute threads (RAYON_NUM_THREADS).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The server's --max-batch.
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// Ignored: cargo bench passes it.
    #[arg(long, hide = true)]
    bench: bool,
}

const QUESTIONS: [&str; 16] = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "Describe the water cycle.",
    "Write a poem about autumn leaves.",
    "Explain what a computer network is.",
    "Describe your ideal weekend.",
    "Why is the sky blue?",
    "Give some tips for learning to cook.",
    "Explain photosynthesis to a child.",
    "Describe a busy market in the morning.",
    "What makes a good friend?",
    "Explain how rain forms.",
    "Write a letter to a pen pal.",
    "Describe how bread is made.",
    "Explain why exercise is healthy.",
    "Tell me about the moon.",
];

/// The release `engine` beside this bench's executable (target/release/engine).
fn engine_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .context("bench executable has no target folder")?;
    let engine = release.join("engine");
    if !engine.is_file() {
        bail!("{} is missing: build it with `cargo build --release -p shardlab-engine --bin engine` (make bench-serve does)", engine.display());
    }
    Ok(engine)
}

/// The server process, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One request's figures.
#[derive(Debug, Clone, Copy)]
struct Sample {
    ttft: Duration,
    tokens: usize,
}

/// Sends one streaming chat request and reads it to the end.
fn one_request(client: &Client, base: &str, question: &str, max_tokens: usize) -> Result<Sample> {
    let body = json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": true,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let sent = Instant::now();
    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()?;
    if !response.status().is_success() {
        bail!("{}: {}", response.status(), response.text()?);
    }
    let mut ttft = None;
    let mut tokens = None;
    for line in BufReader::new(response).lines() {
        let line = line?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(data)?;
        let has_text = chunk["choices"][0]["delta"]["content"]
            .as_str()
            .is_some_and(|t| !t.is_empty());
        if has_text && ttft.is_none() {
            ttft = Some(sent.elapsed());
        }
        if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
            tokens = Some(n as usize);
        }
    }
    Ok(Sample {
        ttft: ttft.unwrap_or_else(|| sent.elapsed()),
        tokens: tokens.context("the stream carried no usage")?,
    })
}

/// Runs `requests` requests with `concurrency` clients; returns the samples and the wall time.
fn level(
    client: &Client,
    base: &str,
    requests: usize,
    concurrency: usize,
    max_tokens: usize,
) -> Result<(Vec<Sample>, Duration)> {
    let next = AtomicUsize::new(0);
    let samples = Mutex::new(Vec::with_capacity(requests));
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= requests {
                            return Ok(());
                        }
                        let question = QUESTIONS[i % QUESTIONS.len()];
                        let sample = one_request(client, base, question, max_tokens)?;
                        samples.lock().expect("samples lock").push(sample);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a client thread panicked")?;
        }
        Ok(())
    })?;
    let wall = start.elapsed();
    Ok((samples.into_inner().expect("samples lock"), wall))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let engine = engine_bin()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = root.join("models/smollm2-135m-instruct");
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = Server(
        Command::new(&engine)
            .env("RAYON_NUM_THREADS", args.threads.to_string())
            .args(["serve", "--served-model-name", "smollm2", "--model"])
            .arg(&model)
            .args(["--port", &port.to_string()])
            .args(["--max-batch", &args.max_batch.to_string()])
            .stdin(Stdio::null())
            .spawn()
            .context("starting engine serve")?,
    );
    let client = Client::builder().no_proxy().build()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while client
        .get(format!("{base}/health"))
        .send()
        .map_or(true, |r| !r.status().is_success())
    {
        if Instant::now() > deadline {
            bail!("engine serve did not come up within 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Warm-up: page the weights in, reach steady allocations.
    level(&client, &base, 2, 2, args.max_tokens)?;

    println!(
        "engine serve, SmolLM2 f32, RAYON_NUM_THREADS={}, --max-batch {}, {} requests of {} tokens per level",
        args.threads, args.max_batch, args.requests, args.max_tokens
    );
    println!(
        "{:>11} {:>10} {:>9} {:>12} {:>12} {:>8}",
        "concurrency", "wall s", "tokens", "output tok/s", "TTFT p50 ms", "p99 ms"
    );
    let mut baseline = None;
    for &concurrency in &args.concurrency {
        let (samples, wall) = level(
            &client,
            &base,
            args.requests,
            concurrency.max(1),
            args.max_tokens,
        )?;
        let tokens: usize = samples.iter().map(|s| s.tokens).sum();
        let throughput = tokens as f64 / wall.as_secs_f64();
        let mut ttfts: Vec<Duration> = samples.iter().map(|s| s.ttft).collect();
        ttfts.sort();
        println!(
            "{concurrency:>11} {:>10.1} {tokens:>9} {throughput:>12.1} {:>12.0} {:>8.0}",
            wall.as_secs_f64(),
            percentile(&ttfts, 50.0).as_secs_f64() * 1e3,
            percentile(&ttfts, 99.0).as_secs_f64() * 1e3,
        );
        let base_throughput = *baseline.get_or_insert(throughput);
        if concurrency != args.concurrency[0] {
            println!(
                "{:>11} throughput x{:.2} of concurrency {}",
                "",
                throughput / base_throughput,
                args.concurrency[0]
            );
        }
    }
    Ok(())
}
