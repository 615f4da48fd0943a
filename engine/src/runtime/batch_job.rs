//! `engine run`: a batch of prompts from a JSONL file through a `tp x pp` job, one JSON row per
//! prompt out. Rank 0 reads the input and broadcasts it (other ranks need no access to it), every
//! rank loads only its shard, and rank 0 writes the results atomically.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use super::generate::{FinishReason, GenerationRequest, Generator, TokenLogprob};
use super::loaded_model::end_of_generation_ids;
use super::memory::PeakMemorySampler;
use super::sampling::SamplingParams;
use crate::chat_template::{ChatMessage, RenderOptions};
use crate::dist::DistContext;
use crate::error::{EngineError, Result};
use crate::model::llama::open_dir;
use crate::model::parallel::Shard;
use crate::model::{split_layers, Llama, ShardPlan};
use crate::tokenizer::ModelTokenizer;

/// One input row: a raw `prompt` or chat `messages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromptRow {
    pub prompt_id: String,
    #[serde(default)]
    pub variant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
}

/// One output row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultRow {
    pub prompt_id: String,
    pub variant: String,
    pub strategy: String,
    pub tp: usize,
    pub pp: usize,
    pub world_size: usize,
    pub rank: usize,
    pub gpu_id: Option<usize>,
    pub hostname: String,
    pub completion: String,
    pub completion_token_ids: Vec<u32>,
    pub logprobs: Vec<f32>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub ttft_ms: f64,
    pub latency_ms: f64,
    /// The gaps between consecutive tokens, in milliseconds (one fewer than the tokens).
    #[serde(default)]
    pub inter_token_ms: Vec<f64>,
    pub finish_reason: FinishReason,
    pub trace_path: Option<String>,
}

/// What `engine run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub model: PathBuf,
    pub prompts: PathBuf,
    pub out: PathBuf,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    pub micro_batches: Option<usize>,
    pub pp_layers: Option<Vec<usize>>,
    pub strategy: String,
    pub dtype: DType,
    /// Where this rank computes (`dist::device::select_device`).
    pub device: Device,
    pub date_string: Option<String>,
    /// This rank's Chrome trace, recorded in the output rows.
    pub trace_path: Option<PathBuf>,
    /// Folder for each rank's `rank{r}.json` (peak memory, shard size, timings).
    pub stats_dir: Option<PathBuf>,
}

/// What one rank used: written to `--stats-dir` as `rank{r}.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankStats {
    pub rank: usize,
    pub stage: usize,
    pub tp_rank: usize,
    pub layers: (usize, usize),
    /// Bytes of this rank's weights, in the dtype it computes in.
    pub shard_bytes: usize,
    /// Peak `RssAnon` over the whole run (checkpoint pages mapped from disk not included).
    pub peak_rss_anon_bytes: u64,
    pub load_ms: f64,
    pub generate_ms: f64,
}

/// Reads the prompt rows of a JSONL file; errors name the file and line.
pub fn read_prompt_rows(path: &Path) -> Result<Vec<PromptRow>> {
    let file =
        std::fs::File::open(path).map_err(|e| EngineError::io(path, "cannot open prompts", e))?;
    let mut rows = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line =
            line.map_err(|e| EngineError::io(path, format!("cannot read line {}", index + 1), e))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: PromptRow = serde_json::from_str(&line)
            .map_err(|e| EngineError::config(path, format!("line {}", index + 1), e.to_string()))?;
        if row.prompt.is_some() == row.messages.is_some() {
            return Err(EngineError::config(
                path,
                format!("line {}", index + 1),
                format!(
                    "prompt {}: give exactly one of `prompt` and `messages`",
                    row.prompt_id
                ),
            ));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Runs the job on this rank; rank 0 writes `options.out`. Returns the rows written (rank 0) or an
/// empty list.
pub fn run_batch_job(options: &RunOptions, ctx: &DistContext) -> Result<Vec<ResultRow>> {
    let topo = ctx.topology;
    // Control plane: rank 0's reading of the input (or its error) reaches every rank.
    let mut payload = if topo.rank == 0 {
        let rows = read_prompt_rows(&options.prompts).map_err(|e| e.to_string());
        serde_json::to_vec(&rows).map_err(|e| EngineError::Request(e.to_string()))?
    } else {
        Vec::new()
    };
    ctx.world.broadcast_bytes(0, &mut payload)?;
    let rows: std::result::Result<Vec<PromptRow>, String> = serde_json::from_slice(&payload)
        .map_err(|e| EngineError::Request(format!("control plane: bad work message: {e}")))?;
    let rows = rows.map_err(EngineError::Request)?;

    let memory = PeakMemorySampler::start(std::time::Duration::from_millis(10));
    let load_clock = Instant::now();
    let load_span = tracing::info_span!("load").entered();
    let (config, ck) = open_dir(&options.model)?;
    let stages = split_layers(
        config.num_hidden_layers,
        topo.pp,
        options.pp_layers.as_deref(),
    )?;
    let plan = ShardPlan {
        tp: Shard::new(topo.tp_rank(), topo.tp),
        layers: stages[topo.stage()].clone(),
    };
    let eog = end_of_generation_ids(&options.model, &config)?;
    let model = Llama::load(&ck, config, plan, options.dtype, &options.device)?;
    let tokenizer = ModelTokenizer::from_dir(&options.model)?;
    let shard_bytes = ck.loaded_bytes();
    drop(ck);
    drop(load_span);
    let load_ms = load_clock.elapsed().as_secs_f64() * 1e3;

    let render = RenderOptions {
        add_generation_prompt: true,
        date_string: options.date_string.clone(),
    };
    let params = SamplingParams {
        max_new_tokens: options.max_new_tokens,
        ..Default::default()
    };
    let requests = rows
        .iter()
        .map(|row| {
            let prompt_ids = match (&row.prompt, &row.messages) {
                (Some(prompt), _) => tokenizer.encode(prompt, true)?,
                (None, Some(messages)) => tokenizer.encode_chat(messages, &render)?,
                (None, None) => {
                    return Err(EngineError::Request(format!(
                        "prompt {}: neither `prompt` nor `messages`",
                        row.prompt_id
                    )))
                }
            };
            Ok(GenerationRequest {
                prompt_ids,
                params: params.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;

    let generator = Generator::new(&model, &tokenizer, eog);
    let micro_batches = options.micro_batches.unwrap_or(topo.pp);
    let mut results = Vec::with_capacity(rows.len());
    let generate_clock = Instant::now();
    for (batch_rows, batch) in rows
        .chunks(options.batch_size.max(1))
        .zip(requests.chunks(options.batch_size.max(1)))
    {
        let outputs = generator.generate_distributed(batch, ctx, micro_batches)?;
        if topo.rank != 0 {
            continue;
        }
        for (row, out) in batch_rows.iter().zip(outputs) {
            let (ttft_ms, latency_ms) = (out.ttft_ms(), out.latency_ms());
            let inter_token_ms = out.inter_token_ms();
            results.push(ResultRow {
                prompt_id: row.prompt_id.clone(),
                variant: row.variant.clone(),
                strategy: options.strategy.clone(),
                tp: topo.tp,
                pp: topo.pp,
                world_size: topo.world_size,
                rank: topo.rank,
                gpu_id: None,
                hostname: hostname(),
                completion: out.completion,
                completion_tokens: out.completion_token_ids.len(),
                prompt_tokens: out.prompt_token_ids.len(),
                completion_token_ids: out.completion_token_ids,
                logprobs: out
                    .logprobs
                    .iter()
                    .map(|l: &TokenLogprob| l.logprob)
                    .collect(),
                ttft_ms,
                latency_ms,
                inter_token_ms,
                finish_reason: out.finish_reason,
                trace_path: options.trace_path.as_ref().map(|p| p.display().to_string()),
            });
        }
    }
    let stats = RankStats {
        rank: topo.rank,
        stage: topo.stage(),
        tp_rank: topo.tp_rank(),
        layers: (model.plan().layers.start, model.plan().layers.end),
        shard_bytes,
        peak_rss_anon_bytes: memory.finish(),
        load_ms,
        generate_ms: generate_clock.elapsed().as_secs_f64() * 1e3,
    };
    tracing::info!(?stats, "rank finished");
    if let Some(dir) = &options.stats_dir {
        let path = dir.join(format!("rank{}.json", topo.rank));
        let text =
            serde_json::to_vec_pretty(&stats).map_err(|e| EngineError::Request(e.to_string()))?;
        crate::fsutil::write_atomic(&path, &text)?;
    }
    if topo.rank == 0 {
        crate::fsutil::write_atomic_with(&options.out, |w| {
            for row in &results {
                serde_json::to_writer(&mut *w, row)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })?;
    }
    Ok(results)
}

/// This machine's name, for the output rows.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
