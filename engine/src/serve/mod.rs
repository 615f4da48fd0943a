//! `engine serve`: an OpenAI-compatible HTTP API (`/v1/models`, `/v1/completions`,
//! `/v1/chat/completions`, `/health`, `/metrics`) over the sharded engine, with continuous
//! batching. Modelled on vLLM's and TGI's OpenAI servers.
//!
//! Every rank of the `tp x pp` job loads its shard and runs the same step loop
//! ([`crate::runtime::batcher`]). Rank 0 also runs the HTTP server (axum on a tokio runtime, on
//! its own threads) and the scheduler (on the thread that owns MPI): at each step it admits
//! waiting requests up to `--max-batch`, drops those whose client went away or that hit a stop
//! string, broadcasts that plan to every rank, and hands each sampled token to its request.
//! Not for: batch jobs over a prompt file (`engine run`), or authentication beyond one API key.

mod api;
mod endpoints;
mod error;
mod generation;
mod http;
mod metrics;
mod request;
mod scheduler;
mod text;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use candle_core::{DType, Device};

use crate::chat_template::RenderOptions;
use crate::dist::DistContext;
use crate::error::EngineError;
use crate::model::llama::open_dir;
use crate::model::parallel::Shard;
use crate::model::{split_layers, Llama, ShardPlan};
use crate::runtime::batcher::Batcher;
use crate::runtime::loaded_model::end_of_generation_ids;
use crate::tokenizer::ModelTokenizer;

pub use error::ServeError;

/// What `engine serve` was asked to do (the parallel layout comes with the [`DistContext`]).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeOptions {
    /// Hugging Face model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the address is printed when listening).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// The model name clients send (default: the model folder's name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Name of an environment variable holding the API key clients must send as
    /// `Authorization: Bearer <key>` (default: no key).
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Most sequences decoded together; more requests wait in the queue.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch: u32,
    /// Most requests waiting for a batch slot; past it requests get 429 with Retry-After.
    #[arg(long, default_value_t = 256)]
    pub max_queue: u32,
    /// Layers per pipeline stage, e.g. `20,10` (default: even, the remainder to earlier stages).
    #[arg(long, value_delimiter = ',')]
    pub pp_layers: Option<Vec<usize>>,
    /// Pin the chat template's date (`date_string`).
    #[arg(long)]
    pub date: Option<String>,
    /// Compute dtype: f32, bf16 or f16.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: DType,
}

fn parse_dtype(s: &str) -> std::result::Result<DType, String> {
    match s {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        other => Err(format!("`{other}`: expected f32, bf16 or f16")),
    }
}

/// Runs the server on this rank until it is shut down (SIGINT or SIGTERM on rank 0). Every rank
/// of the job calls it; `comm_timeout` is the watchdog's (rank 0 keeps idle followers inside it).
pub fn serve(
    options: &ServeOptions,
    ctx: &DistContext,
    device: &Device,
    comm_timeout: Duration,
) -> Result<(), ServeError> {
    let topo = ctx.topology;
    // Rank 0 reads what only it needs before the weights: once the ranks have loaded their
    // shards, followers wait for rank 0 only as long as it takes to start listening.
    let front = if topo.rank == 0 {
        Some((api_key(options)?, ModelTokenizer::from_dir(&options.model)?))
    } else {
        None
    };
    let (model, end_of_generation) = load_shard(options, ctx, device)?;
    let mut batcher = Batcher::new(&model, end_of_generation.iter().copied());
    let Some((api_key, tokenizer)) = front else {
        return scheduler::follow(&mut batcher, ctx);
    };
    let tokenizer = Arc::new(tokenizer);
    let model_name = options.served_model_name.clone().unwrap_or_else(|| {
        options
            .model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| options.model.display().to_string())
    });
    let limits = scheduler::Limits::new(options.max_batch as usize, options.max_queue as usize);
    let metrics = metrics::Metrics::new()
        .map_err(|e| ServeError::ControlPlane(format!("registering metrics: {e}")))?;
    let (submit, submissions) = std::sync::mpsc::channel();
    let config = http::ServerConfig {
        host: options.host.clone(),
        port: options.port,
        model_name,
        api_key,
        tokenizer,
        context: model.config().max_position_embeddings,
        vocab_size: model.config().vocab_size,
        end_of_generation,
        render: RenderOptions {
            add_generation_prompt: true,
            date_string: options.date.clone(),
        },
        metrics: metrics.clone(),
    };
    let server = http::start(config, submit, Arc::clone(&limits))?;
    eprintln!(
        "engine serve: listening on http://{} (tp={} pp={}, max batch {}, max queue {})",
        server.address, topo.tp, topo.pp, options.max_batch, options.max_queue
    );
    // Followers block in the plan broadcast while rank 0 is idle: a heartbeat well inside the
    // watchdog's timeout keeps them from being taken for hung.
    let heartbeat = (topo.world_size > 1 && !comm_timeout.is_zero())
        .then(|| (comm_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(5)));
    scheduler::lead(&mut batcher, ctx, submissions, &limits, &metrics, heartbeat)?;
    // The scheduler stops only once the HTTP side is gone.
    server.join();
    Ok(())
}

/// The key clients must send, from the variable `--api-key-env` names.
fn api_key(options: &ServeOptions) -> Result<Option<String>, ServeError> {
    let Some(var) = &options.api_key_env else {
        return Ok(None);
    };
    match std::env::var(var) {
        Ok(key) if !key.is_empty() => Ok(Some(key)),
        _ => Err(ServeError::ApiKeyEnv { var: var.clone() }),
    }
}

/// Loads this rank's part of the model: its stage's layers, its tensor-parallel slices.
fn load_shard(
    options: &ServeOptions,
    ctx: &DistContext,
    device: &Device,
) -> Result<(Llama, Vec<u32>), EngineError> {
    let topo = ctx.topology;
    let _span = tracing::info_span!("load").entered();
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
    let model = Llama::load(&ck, config, plan, options.dtype, device)?;
    Ok((model, eog))
}
