//! Throughput of the parallel layouts against one rank, measured in one run with the real MPI
//! data plane and one thread per rank:
//! - SmolLM2 on 8 long prompts (about 600 tokens each, 32 new tokens: the project's 2k/4k-token
//!   workload scaled down): pp=1 vs pp=2 (2 decode micro-batches), with the even layer split and
//!   with one that balances the bytes each stage reads;
//! - SmolLM2 on 8 short chat questions (decode-bound): the same three;
//! - a synthetic 8-head model (`engine synth --preset small`): tp=1 vs tp=2;
//! - the machine's memory read bandwidth with one and two threads: decode is bound by it, and a
//!   pipeline stage re-reads its weights for every micro-batch.
//!
//! `make bench-parallel` (builds the release engine first). Prints tokens/s and ratios.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Repetitions of each configuration (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Ignored: cargo bench passes it.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The release `engine` beside this bench's executable (target/release/engine).
fn engine_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .context("bench executable has no target folder")?;
    let engine = release.join("engine");
    if !engine.is_file() {
        bail!("{} is missing: build it with `cargo build --release -p shardlab-engine --bin engine` (make bench-parallel does)", engine.display());
    }
    Ok(engine)
}

/// Runs `engine run` on `ranks` ranks (mpirun when more than one), one thread each, and returns
/// tokens (prompt + completion) per second of generation (rank 0's clock): for one workload, the
/// ratio of two of these is the ratio of job times.
fn throughput(
    engine: &Path,
    ranks: usize,
    run_args: &[String],
    work: &Path,
    label: &str,
) -> Result<f64> {
    let out = work.join(format!("{label}.jsonl"));
    let stats = work.join(format!("stats-{label}"));
    let mut command = if ranks == 1 {
        Command::new(engine)
    } else {
        let mut c = Command::new("mpirun");
        c.args([
            "--allow-run-as-root",
            "--oversubscribe",
            "--bind-to",
            "none",
            "-n",
            &ranks.to_string(),
        ]);
        c.arg(engine);
        c
    };
    command
        .env("RAYON_NUM_THREADS", "1")
        .arg("run")
        .args(run_args)
        .args([
            "--out",
            out.to_str().unwrap(),
            "--stats-dir",
            stats.to_str().unwrap(),
        ]);
    let status = command
        .status()
        .with_context(|| format!("running {label}"))?;
    if !status.success() {
        bail!("{label}: engine run failed ({status})");
    }
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&out)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let tokens: u64 = rows
        .iter()
        .map(|r| {
            r["prompt_tokens"].as_u64().unwrap_or(0) + r["completion_tokens"].as_u64().unwrap_or(0)
        })
        .sum();
    let rank0: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stats.join("rank0.json"))?)?;
    let ms = rank0["generate_ms"].as_f64().context("generate_ms")?;
    Ok(tokens as f64 / (ms / 1e3))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let engine = engine_bin()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = tempfile_dir()?;
    let smollm2 = root.join("models/smollm2-135m-instruct");
    let short_prompts = work.join("short.jsonl");
    let questions = [
        "What is 2+2?",
        "Name three colours of the rainbow.",
        "Write one sentence about the sea.",
        "What is the capital of France?",
        "Explain what a pipeline is in one sentence.",
        "Give me a synonym for happy.",
        "How many legs does a spider have?",
        "What is the boiling point of water in Celsius?",
    ];
    write_chat_prompts(&short_prompts, questions.iter().map(|q| q.to_string()))?;
    let long_prompts = work.join("long.jsonl");
    write_chat_prompts(&long_prompts, (0..8).map(long_document))?;
    let common = |model: &Path, prompts: &Path| -> Vec<String> {
        vec![
            "--model".into(),
            model.display().to_string(),
            "--prompts".into(),
            prompts.display().to_string(),
            "--max-new-tokens".into(),
            args.max_new_tokens.to_string(),
            "--batch-size".into(),
            "8".into(),
        ]
    };

    let small = work.join("small");
    let status = Command::new(&engine)
        .args(["synth", "--preset", "small", "--tokenizer"])
        .arg(root.join("models/llama3-tokenizer"))
        .arg("--out")
        .arg(&small)
        .status()?;
    if !status.success() {
        bail!("engine synth --preset small failed");
    }

    let pp2 = vec!["--pp", "2", "--micro-batches", "2"];
    // The last stage also reads the tied lm_head (49152 x 576, about 8 layers of weights):
    // 19 + 11 layers balance the bytes each stage reads per step.
    let pp2_balanced = vec!["--pp", "2", "--micro-batches", "2", "--pp-layers", "19,11"];
    let mut results = Vec::new();
    for (label, model, prompts, ranks, extra) in [
        ("long  pp=1", &smollm2, &long_prompts, 1, vec![]),
        ("long  pp=2", &smollm2, &long_prompts, 2, pp2.clone()),
        (
            "long  pp=2 19,11",
            &smollm2,
            &long_prompts,
            2,
            pp2_balanced.clone(),
        ),
        ("short pp=1", &smollm2, &short_prompts, 1, vec![]),
        ("short pp=2", &smollm2, &short_prompts, 2, pp2.clone()),
        (
            "short pp=2 19,11",
            &smollm2,
            &short_prompts,
            2,
            pp2_balanced.clone(),
        ),
        ("small tp=1", &small, &short_prompts, 1, vec![]),
        ("small tp=2", &small, &short_prompts, 2, vec!["--tp", "2"]),
    ] {
        let mut run_args = common(model, prompts);
        run_args.extend(extra.iter().map(|s| s.to_string()));
        let samples = (0..args.rounds)
            .map(|r| {
                throughput(
                    &engine,
                    ranks,
                    &run_args,
                    &work,
                    &format!("{}-{r}", label.replace([' ', '=', ','], "_")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let value = median(samples.clone());
        println!("{label:20} {value:8.1} tok/s  (rounds: {samples:.1?})");
        results.push(value);
    }
    let (one, two) = memory_read_bandwidth();
    println!("memory read bandwidth: 1 thread {one:.1} GB/s, 2 threads {two:.1} GB/s");
    println!(
        "ratio smollm2 long  pp=2 / pp=1: {:.2} (even split), {:.2} (balanced 19,11)",
        results[1] / results[0],
        results[2] / results[0]
    );
    println!(
        "ratio smollm2 short pp=2 / pp=1: {:.2} (even split), {:.2} (balanced 19,11); decode-bound: \
         each stage reads its weights once per micro-batch, so per core a step reads as many bytes \
         as one rank does (bandwidth scales {:.2}x with two threads, but the bytes double too)",
        results[4] / results[3],
        results[5] / results[3],
        two / one
    );
    println!("ratio small   tp=2 / tp=1: {:.2}", results[7] / results[6]);
    std::fs::remove_dir_all(&work).ok();
    Ok(())
}

/// Writes one chat prompt per text as `engine run` JSONL.
fn write_chat_prompts(path: &Path, texts: impl Iterator<Item = String>) -> Result<()> {
    let lines: Vec<String> = texts
        .enumerate()
        .map(|(i, text)| {
            serde_json::json!({
                "prompt_id": format!("p{i:02}"),
                "variant": "bench",
                "messages": [{"role": "user", "content": text}],
            })
            .to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n")?;
    Ok(())
}

/// A document of about 600 tokens, different for each `seed`, followed by a question on it.
fn long_document(seed: usize) -> String {
    const SENTENCES: [&str; 12] = [
        "The river rose slowly through the night and by morning it had covered the lower fields.",
        "Engineers measured the flow every hour and wrote the figures on a board by the bridge.",
        "A pipeline splits a long job into stages so that each stage works while the others do.",
        "The old mill had not turned for thirty years, but its wheel still stood in the water.",
        "Children from the village came to watch the boats carry sacks of grain down the valley.",
        "Every summer the market filled the square with bread, cheese, honey and painted pottery.",
        "The library kept maps of the region drawn by hand, some older than the town itself.",
        "When the rain stopped, the farmers walked the banks to see what the flood had left behind.",
        "Trains arrived twice a day, bringing letters, newspapers and the occasional traveller.",
        "The council voted to build a new dam upstream, with a lock for the barges to pass.",
        "On clear evenings the observatory on the hill opened its dome to anyone who asked.",
        "Records from the harbour show that the busiest year was also the year of the great storm.",
    ];
    let mut text = format!("Document {seed}.\n");
    for i in 0..48 {
        text.push_str(SENTENCES[(i * 7 + seed * 5 + i / 12) % SENTENCES.len()]);
        text.push(if i % 6 == 5 { '\n' } else { ' ' });
    }
    text.push_str("\nSummarise the document above in two sentences.");
    text
}

/// Read bandwidth in GB/s of summing a 512 MB buffer, with one thread and with two threads each
/// summing their own 512 MB at once (best of three).
fn memory_read_bandwidth() -> (f64, f64) {
    const FLOATS: usize = 128 << 20;
    let buffers: Vec<Vec<f32>> = (0..2).map(|i| vec![i as f32 + 1.0; FLOATS]).collect();
    let read = |buffer: &[f32]| -> f32 {
        // Eight independent accumulators so that the adds keep up with the loads.
        let mut acc = [0f32; 8];
        for chunk in buffer.chunks_exact(8) {
            for (a, x) in acc.iter_mut().zip(chunk) {
                *a += x;
            }
        }
        acc.iter().sum()
    };
    let bytes = (FLOATS * 4) as f64;
    let best = |threads: usize| -> f64 {
        (0..3)
            .map(|_| {
                let clock = std::time::Instant::now();
                std::thread::scope(|scope| {
                    let handles: Vec<_> = buffers[..threads]
                        .iter()
                        .map(|b| scope.spawn(|| read(b)))
                        .collect();
                    for handle in handles {
                        std::hint::black_box(handle.join().expect("reader thread"));
                    }
                });
                threads as f64 * bytes / clock.elapsed().as_secs_f64() / 1e9
            })
            .fold(0.0, f64::max)
    };
    (best(1), best(2))
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("shardlab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
