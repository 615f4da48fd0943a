//! Throughput of the parallel layouts against one rank, measured in one run with the real MPI
//! data plane and one thread per rank:
//! - SmolLM2 on 8 chat prompts: pp=1 vs pp=2 (2 micro-batches), with the even layer split and with
//!   one that balances the bytes each stage reads;
//! - a synthetic 8-head model (`engine synth --preset small`): tp=1 vs tp=2.
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
/// completion tokens per second of generation (rank 0's clock).
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
        .map(|r| r["completion_tokens"].as_u64().unwrap_or(0))
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
    let prompts = work.join("prompts.jsonl");
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
    let lines: Vec<String> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| serde_json::json!({"prompt_id": format!("p{i:02}"), "variant": "bench", "messages": [{"role": "user", "content": q}]}).to_string())
        .collect();
    std::fs::write(&prompts, lines.join("\n") + "\n")?;
    let common = |model: &Path| -> Vec<String> {
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

    let mut results = Vec::new();
    for (label, model, ranks, extra) in [
        ("smollm2 pp=1", &smollm2, 1, vec![]),
        (
            "smollm2 pp=2",
            &smollm2,
            2,
            vec!["--pp", "2", "--micro-batches", "2"],
        ),
        // The last stage also reads the tied lm_head (49152 x 576, about 8 layers of weights):
        // 19 + 11 layers balance the bytes each stage reads per step.
        (
            "smollm2 pp=2 19,11",
            &smollm2,
            2,
            vec!["--pp", "2", "--micro-batches", "2", "--pp-layers", "19,11"],
        ),
        ("small tp=1", &small, 1, vec![]),
        ("small tp=2", &small, 2, vec!["--tp", "2"]),
    ] {
        let mut run_args = common(model);
        run_args.extend(extra.iter().map(|s| s.to_string()));
        let samples = (0..args.rounds)
            .map(|r| {
                throughput(
                    &engine,
                    ranks,
                    &run_args,
                    &work,
                    &format!("{}-{r}", label.replace([' ', '='], "_")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let value = median(samples.clone());
        println!("{label:20} {value:8.1} tok/s  (rounds: {samples:.1?})");
        results.push(value);
    }
    println!(
        "ratio smollm2 pp=2 / pp=1: {:.2} (even split), {:.2} (balanced 19,11)",
        results[1] / results[0],
        results[2] / results[0]
    );
    println!("ratio small   tp=2 / tp=1: {:.2}", results[4] / results[3]);
    std::fs::remove_dir_all(&work).ok();
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("shardlab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
