//! `engine bench`: how fast this rank's shard prefills and decodes on its device, next to the
//! FLOPs and bytes that work needs, so each figure reads as a rate (TFLOP/s, GB/s) to hold
//! against the chip's. One pipeline stage (`--pp 1`), any `--tp`: every rank runs the same
//! steps and rank 0 reports.
//!
//! Counting (per rank, Kaplan et al. 2020's 2 FLOPs per parameter per token): a prefill of `P`
//! tokens does `2 x layer_params x P` in the linear layers plus causal attention's
//! `2 x 2 x heads x head_dim x P^2 / 2` per layer, and the lm_head once (the last token); a decode
//! step of `B` sequences reads every weight once (`params x dtype bytes`) plus each sequence's
//! K and V (`2 x layers x kv_heads x head_dim x context x dtype bytes`).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::dist::DistContext;
use crate::error::{EngineError, Result};
use crate::model::llama::open_dir;
use crate::model::parallel::{HeadShard, Shard};
use crate::model::{Llama, SequenceBatch, ShardPlan, StageOutput};
use crate::runtime::kv_cache::SequenceKvCache;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub model: std::path::PathBuf,
    pub dtype: DType,
    pub device: Device,
    /// Prompt lengths to prefill (one sequence each).
    pub prompt_tokens: Vec<usize>,
    /// Sequences decoded together.
    pub decode_batches: Vec<usize>,
    /// Tokens already in each sequence's cache when decode is timed.
    pub decode_context: usize,
    /// Decode steps timed per batch size.
    pub decode_steps: usize,
}

/// The figures, for rank 0 to print and write.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub device: String,
    pub dtype: String,
    pub tp: usize,
    pub layers: usize,
    /// Linear-layer parameters on this rank (the decoder layers and the lm_head).
    pub layer_params: u64,
    pub lm_head_params: u64,
    pub prefill: Vec<PrefillFigure>,
    pub decode: Vec<DecodeFigure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrefillFigure {
    pub tokens: usize,
    pub ms: f64,
    pub flops: f64,
    pub tflops_per_s: f64,
    pub tokens_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecodeFigure {
    pub batch: usize,
    pub context: usize,
    pub ms_per_step: f64,
    /// Weights plus the batch's KV cache, read once a step.
    pub bytes_per_step: f64,
    pub gb_per_s: f64,
    pub tokens_per_s: f64,
}

/// Loads this rank's shard and measures; every rank of the TP group must call it.
pub fn run_bench(options: &BenchOptions, ctx: &DistContext) -> Result<BenchReport> {
    let topo = ctx.topology;
    if topo.pp != 1 {
        return Err(EngineError::Request(
            "engine bench measures one pipeline stage: use --pp 1 (any --tp)".into(),
        ));
    }
    let (config, ck) = open_dir(&options.model)?;
    let plan = ShardPlan {
        tp: Shard::new(topo.tp_rank(), topo.tp),
        layers: 0..config.num_hidden_layers,
    };
    let model = Llama::load(&ck, config.clone(), plan, options.dtype, &options.device)?;
    drop(ck);
    let tp = ctx.tp_group.as_ref();

    // Per-rank shapes.
    let (h, hd, layers) = (
        config.hidden_size,
        config.head_dim(),
        config.num_hidden_layers,
    );
    let HeadShard {
        q_heads: heads,
        kv_heads,
        ..
    } = HeadShard::new(
        config.num_attention_heads,
        config.num_key_value_heads(),
        Shard::new(topo.tp_rank(), topo.tp),
    )?;
    let inter = config.intermediate_size / topo.tp;
    let per_layer = h * (heads * hd) * 2 + h * (kv_heads * hd) * 2 + 3 * h * inter;
    let layer_params = (per_layer * layers) as u64;
    let lm_head_params = (config.vocab_size.div_ceil(topo.tp) * h) as u64;
    let dtype_bytes = options.dtype.size_in_bytes() as f64;
    let vocab = config.vocab_size as u32;
    let ids = |n: usize, salt: usize| -> Vec<u32> {
        (0..n)
            .map(|i| ((i * 7919 + salt * 104_729 + 13) as u32) % vocab)
            .collect()
    };
    let sync = || -> Result<()> { Ok(options.device.synchronize()?) };
    let forward = |tokens: Vec<&[u32]>, caches: Vec<&mut SequenceKvCache>| -> Result<Tensor> {
        match model.forward_stage(SequenceBatch { tokens, caches }, None, tp)? {
            StageOutput::Logits(logits) => Ok(logits.local),
            StageOutput::Hidden(_) => Err(EngineError::Request(
                "bench: the stage gave hidden states, not logits".into(),
            )),
        }
    };

    // Warm-up: load kernels and library handles before anything is timed.
    {
        let warm = ids(64, 0);
        let mut cache = model.new_cache(80)?;
        forward(vec![&warm], vec![&mut cache])?;
        let next = ids(1, 1);
        forward(vec![&next], vec![&mut cache])?;
        sync()?;
    }

    let mut prefill = Vec::new();
    for &tokens in &options.prompt_tokens {
        let prompt = ids(tokens, 2);
        let mut cache = model.new_cache(tokens + 1)?;
        tp.barrier()?;
        let clock = Instant::now();
        forward(vec![&prompt], vec![&mut cache])?;
        sync()?;
        let seconds = clock.elapsed().as_secs_f64();
        let attention = 2.0 * 2.0 * (heads * hd) as f64 * (tokens as f64).powi(2) / 2.0;
        let flops = 2.0 * layer_params as f64 * tokens as f64
            + attention * layers as f64
            + 2.0 * lm_head_params as f64;
        prefill.push(PrefillFigure {
            tokens,
            ms: seconds * 1e3,
            flops,
            tflops_per_s: flops / seconds / 1e12,
            tokens_per_s: tokens as f64 / seconds,
        });
    }

    let mut decode = Vec::new();
    let context = options.decode_context.max(1);
    for &batch in &options.decode_batches {
        let steps = options.decode_steps.max(1);
        let mut caches = (0..batch)
            .map(|_| model.new_cache(context + steps + 1))
            .collect::<Result<Vec<_>>>()?;
        for (b, cache) in caches.iter_mut().enumerate() {
            let prompt = ids(context, 3 + b);
            forward(vec![&prompt], vec![cache])?;
        }
        sync()?;
        tp.barrier()?;
        let clock = Instant::now();
        for step in 0..steps {
            let next: Vec<Vec<u32>> = (0..batch).map(|b| ids(1, 10 + step * batch + b)).collect();
            let logits = forward(
                next.iter().map(|t| t.as_slice()).collect(),
                caches.iter_mut().collect(),
            )?;
            // As the engine does each step: the choice comes back to the host.
            logits.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?;
        }
        let seconds = clock.elapsed().as_secs_f64() / steps as f64;
        let kv = 2.0 * (layers * kv_heads * hd) as f64 * (context + steps / 2) as f64 * dtype_bytes;
        let bytes = (layer_params + lm_head_params) as f64 * dtype_bytes + kv * batch as f64;
        decode.push(DecodeFigure {
            batch,
            context,
            ms_per_step: seconds * 1e3,
            bytes_per_step: bytes,
            gb_per_s: bytes / seconds / 1e9,
            tokens_per_s: batch as f64 / seconds,
        });
    }

    Ok(BenchReport {
        device: format!("{:?}", options.device.location()),
        dtype: format!("{:?}", options.dtype).to_lowercase(),
        tp: topo.tp,
        layers,
        layer_params,
        lm_head_params,
        prefill,
        decode,
    })
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} {} tp={} layers={}: {:.2} G layer params + {:.2} G lm_head params per rank",
            self.device,
            self.dtype,
            self.tp,
            self.layers,
            self.layer_params as f64 / 1e9,
            self.lm_head_params as f64 / 1e9
        )?;
        for p in &self.prefill {
            writeln!(
                f,
                "prefill {:>6} tokens: {:>9.1} ms  {:>8.2} TFLOP/s  {:>9.0} tok/s",
                p.tokens, p.ms, p.tflops_per_s, p.tokens_per_s
            )?;
        }
        for d in &self.decode {
            writeln!(
                f,
                "decode batch {:>3} (context {}): {:>8.3} ms/step  {:>8.1} GB/s  {:>8.1} tok/s",
                d.batch, d.context, d.ms_per_step, d.gb_per_s, d.tokens_per_s
            )?;
        }
        Ok(())
    }
}
