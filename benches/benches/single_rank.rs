//! Single-rank speed of the engine against candle-transformers' `models::llama` on the same
//! weights, measured in the same run: prefill of a 512-token prompt and 64 decode steps.
//!
//! `RAYON_NUM_THREADS=1 cargo bench -p shardlab-benches --bench single_rank -- [--model DIR]
//! [--rounds N] [--prefill 512] [--decode 64]`. Rounds alternate between the two engines so
//! machine noise hits both alike; the medians and their ratios are printed.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama as reference;
use clap::Parser;
use engine::model::{Llama, SequenceBatch};
use engine::runtime::sampling::argmax;

#[derive(Parser, Debug)]
struct Args {
    /// HF model folder (default: the project's SmolLM2).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[arg(long, default_value_t = 512)]
    prefill: usize,
    #[arg(long, default_value_t = 64)]
    decode: usize,
    /// Ignored: cargo bench passes it.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Seconds for the prefill and for the decode steps.
struct Timing {
    prefill_s: f64,
    decode_s: f64,
    tokens: Vec<u32>,
}

fn run_ours(model: &Llama, prompt: &[u32], steps: usize) -> Result<Timing> {
    let mut cache = model.new_cache(prompt.len() + steps)?;
    let start = Instant::now();
    let logits = model.forward(SequenceBatch {
        tokens: vec![prompt],
        caches: vec![&mut cache],
    })?;
    let prefill_s = start.elapsed().as_secs_f64();
    let mut next = argmax(&logits.squeeze(0)?.to_vec1::<f32>()?);
    let mut tokens = vec![next];
    let start = Instant::now();
    for _ in 0..steps {
        let step = [next];
        let logits = model.forward(SequenceBatch {
            tokens: vec![&step[..]],
            caches: vec![&mut cache],
        })?;
        next = argmax(&logits.squeeze(0)?.to_vec1::<f32>()?);
        tokens.push(next);
    }
    Ok(Timing {
        prefill_s,
        decode_s: start.elapsed().as_secs_f64(),
        tokens,
    })
}

fn run_reference(
    model: &reference::Llama,
    cfg: &reference::Config,
    prompt: &[u32],
    steps: usize,
) -> Result<Timing> {
    let device = Device::Cpu;
    let mut cache = reference::Cache::new(true, DType::F32, cfg, &device)?;
    let start = Instant::now();
    let input = Tensor::new(prompt, &device)?.unsqueeze(0)?;
    let logits = model.forward(&input, 0, &mut cache)?;
    let prefill_s = start.elapsed().as_secs_f64();
    let mut next = argmax(&logits.squeeze(0)?.to_vec1::<f32>()?);
    let mut tokens = vec![next];
    let start = Instant::now();
    for i in 0..steps {
        let input = Tensor::new(&[next], &device)?.unsqueeze(0)?;
        let logits = model.forward(&input, prompt.len() + i, &mut cache)?;
        next = argmax(&logits.squeeze(0)?.to_vec1::<f32>()?);
        tokens.push(next);
    }
    Ok(Timing {
        prefill_s,
        decode_s: start.elapsed().as_secs_f64(),
        tokens,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = args.model.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/smollm2-135m-instruct")
    });
    let device = Device::Cpu;
    let ours = Llama::load_dir(&dir, DType::F32, &device)
        .with_context(|| format!("loading {}", dir.display()))?;
    let cfg_json = std::fs::read_to_string(dir.join("config.json"))?;
    let ref_cfg: reference::LlamaConfig = serde_json::from_str(&cfg_json)?;
    let ref_cfg = ref_cfg.into_config(false);
    let mut shards: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    shards.retain(|p| p.extension().is_some_and(|e| e == "safetensors"));
    shards.sort();
    // SAFETY: read-only map of files this benchmark does not modify.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&shards, DType::F32, &device)? };
    let theirs = reference::Llama::load(vb, &ref_cfg)?;

    // A deterministic prompt of ordinary token ids (no special tokens).
    let vocab = ours.config().vocab_size as u32;
    let prompt: Vec<u32> = (0..args.prefill as u32)
        .map(|i| 100 + (i * 7919) % (vocab - 200))
        .collect();
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    println!(
        "model {} | prefill {} tokens, decode {} tokens | threads {threads} | {} rounds",
        dir.display(),
        args.prefill,
        args.decode,
        args.rounds
    );

    // Warm-up (page in the weights, size the allocator) and a check that both agree.
    let a = run_ours(&ours, &prompt, 4)?;
    let b = run_reference(&theirs, &ref_cfg, &prompt, 4)?;
    if a.tokens != b.tokens {
        println!(
            "warning: greedy tokens differ between the engines: {:?} vs {:?}",
            a.tokens, b.tokens
        );
    }
    let (mut op, mut od, mut rp, mut rd) = (vec![], vec![], vec![], vec![]);
    for round in 0..args.rounds {
        let o = run_ours(&ours, &prompt, args.decode)?;
        let r = run_reference(&theirs, &ref_cfg, &prompt, args.decode)?;
        println!(
            "round {round}: engine prefill {:.1} tok/s decode {:.1} tok/s | candle-transformers prefill {:.1} tok/s decode {:.1} tok/s",
            args.prefill as f64 / o.prefill_s,
            args.decode as f64 / o.decode_s,
            args.prefill as f64 / r.prefill_s,
            args.decode as f64 / r.decode_s
        );
        op.push(args.prefill as f64 / o.prefill_s);
        od.push(args.decode as f64 / o.decode_s);
        rp.push(args.prefill as f64 / r.prefill_s);
        rd.push(args.decode as f64 / r.decode_s);
    }
    let (op, od, rp, rd) = (median(op), median(od), median(rp), median(rd));
    println!(
        "median prefill: engine {op:.1} tok/s, candle-transformers {rp:.1} tok/s, ratio {:.3}",
        op / rp
    );
    println!(
        "median decode:  engine {od:.1} tok/s, candle-transformers {rd:.1} tok/s, ratio {:.3}",
        od / rd
    );
    Ok(())
}
