//! `engine`: the shardlab inference engine's command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use candle_core::{DType, Device};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use engine::chat_template::{ChatMessage, RenderOptions};
use engine::checkpoint::synth::{synthesize, Preset, SynthOptions};
use engine::dist::check::run_dist_check;
use engine::dist::device::{select_device, DataPlane, DeviceChoice};
use engine::dist::mpi_backend::MpiWorld;
use engine::runtime::batch_job::{run_batch_job, RunOptions};
use engine::runtime::bench::{run_bench, BenchOptions};
use engine::runtime::{FinishReason, GenerationRequest, LoadedModel, SamplingParams, TokenLogprob};
use engine::serve::{serve, ServeOptions};

/// Llama inference on candle, sharded across ranks (tensor and pipeline parallel).
#[derive(Parser, Debug)]
#[command(name = "engine", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Complete prompts with a model and print the completions.
    Generate(GenerateArgs),
    /// Convert a GGUF Llama into a Hugging Face model folder (f32 safetensors).
    ImportGguf(ImportArgs),
    /// Write a random-weight model folder with a preset's exact shapes.
    Synth(SynthArgs),
    /// Run a batch of prompts across MPI ranks (`mpirun -n X*Y engine run --tp X --pp Y ...` or
    /// `srun --mpi=pmix engine run ...`); a lone `engine run` is a world of one.
    Run(RunArgs),
    /// Check the MPI wiring: every collective and point-to-point operation on the world and the
    /// TP groups, with known values.
    DistCheck(DistArgs),
    /// Measure this machine for the driver's performance model: `--part compute` (one rank's GEMM,
    /// decode GEMV and decode-attention rates, on its threads) or `--part comm` under mpirun
    /// (ping-pong latency and bandwidth, small all-reduce); prints one JSON object.
    Calibrate(CalibrateArgs),
    /// Serve the OpenAI API (`/v1/chat/completions`, `/v1/completions`, `/v1/models`) over HTTP
    /// with continuous batching; rank 0 listens, the other ranks follow
    /// (`mpirun -n X*Y engine serve --tp X --pp Y ...`).
    Serve(ServeArgs),
    /// Prefill and decode speed of the model's shard on this rank's device, as TFLOP/s and GB/s
    /// (one pipeline stage, any --tp: `mpirun -n X engine bench --tp X ...`).
    Bench(BenchArgs),
    /// Each fused kernel on a device against its CPU version (exits non-zero on a mismatch).
    CheckKernels(CheckKernelsArgs),
}

#[derive(Args, Debug)]
struct BenchArgs {
    #[command(flatten)]
    dist: DistArgs,
    /// Hugging Face model folder (e.g. from `engine synth --preset llama-3.3-70b --layers 4`).
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    dtype: DTypeArg,
    /// Prompt lengths to prefill, one sequence each.
    #[arg(long, value_delimiter = ',', default_value = "512")]
    prompt_tokens: Vec<usize>,
    /// Sequences decoded together.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    decode_batch: Vec<usize>,
    /// Tokens in each sequence's cache when decode is timed.
    #[arg(long, default_value_t = 512)]
    decode_context: usize,
    /// Decode steps timed per batch size.
    #[arg(long, default_value_t = 32)]
    decode_steps: usize,
    /// Also write the figures as JSON here (rank 0, atomically).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct CheckKernelsArgs {
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Element types to run the device kernels in.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "f32,bf16")]
    dtype: Vec<DTypeArg>,
}

/// The parallel layout, shared by the distributed commands.
#[derive(Args, Debug, Clone)]
struct DistArgs {
    /// Tensor-parallel ranks per pipeline stage.
    #[arg(long, default_value_t = 1)]
    tp: usize,
    /// Pipeline stages.
    #[arg(long, default_value_t = 1)]
    pp: usize,
    /// Seconds a blocking collective may wait before the job is brought down.
    #[arg(long, default_value_t = 300)]
    comm_timeout: u64,
    /// Precision of the tensor-parallel all-reduces: f32 (exact sums of the partial products),
    /// or the model's dtype (half the bytes for bf16/f16 models, and the rounding of NCCL's usual
    /// bf16 all-reduce). The same for f32 models.
    #[arg(long, value_enum, default_value_t = AllReduceDType::F32)]
    allreduce_dtype: AllReduceDType,
    /// Where this rank computes: a GPU (one per local rank) when built with `cuda` and one is
    /// visible, else the CPU.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// What carries tensors between ranks: NCCL for GPU tensors and MPI for CPU ones (auto), or
    /// MPI everywhere (GPU tensors staged through host memory; for ranks sharing a GPU).
    #[arg(long, value_enum, default_value_t = DataPlane::Auto)]
    data_plane: DataPlane,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum AllReduceDType {
    F32,
    Model,
}

impl DistArgs {
    /// This rank's place in the `tp x pp` grid, its device, and its communicators over the
    /// chosen data plane.
    fn context(&self, world: &MpiWorld) -> engine::Result<(engine::dist::DistContext, Device)> {
        let ctx = world.context(self.tp, self.pp, Duration::from_secs(self.comm_timeout))?;
        let device = select_device(self.device, ctx.topology.local_rank)?;
        let ctx = ctx.with_data_plane(self.data_plane, &device)?;
        let ctx = match self.allreduce_dtype {
            AllReduceDType::F32 => ctx,
            AllReduceDType::Model => ctx.reduce_in_model_dtype(),
        };
        Ok((ctx, device))
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    dist: DistArgs,
    /// Hugging Face model folder.
    #[arg(long)]
    model: PathBuf,
    /// JSONL input: `prompt_id`, `variant`, and `prompt` (raw) or `messages` (chat).
    #[arg(long)]
    prompts: PathBuf,
    /// JSONL output, one row per prompt (written by rank 0, atomically).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Prompts generated together.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Micro-batches a step is split into across pipeline stages (default: --pp).
    #[arg(long)]
    micro_batches: Option<usize>,
    /// Layers per pipeline stage, e.g. `40,40` (default: even, the remainder to earlier stages).
    #[arg(long, value_delimiter = ',')]
    pp_layers: Option<Vec<usize>>,
    /// Label written into every output row (default: `tp{X}-pp{Y}`).
    #[arg(long)]
    strategy: Option<String>,
    /// Pin the chat template's date (`date_string`).
    #[arg(long)]
    date: Option<String>,
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    dtype: DTypeArg,
    /// Write each rank's Chrome trace (`rank{r}.trace.json`, opens in Perfetto) into this folder.
    #[arg(long)]
    trace_dir: Option<PathBuf>,
    /// Write each rank's memory and timing figures (`rank{r}.json`) into this folder.
    #[arg(long)]
    stats_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct CalibrateArgs {
    #[arg(long, value_enum)]
    part: CalibratePart,
    /// Compute: MiB of weights the decode GEMV streams (well above the last-level cache).
    #[arg(long, default_value_t = 1024)]
    gemv_mib: usize,
    /// Comm: f32 values of the small messages and the all-reduce (about one token's activation).
    #[arg(long, default_value_t = 1024)]
    small_values: usize,
    /// Timed repeats (compute: runs of each kernel; comm: round trips and all-reduces).
    #[arg(long)]
    repeats: Option<usize>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum CalibratePart {
    Compute,
    Comm,
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    dist: DistArgs,
    #[command(flatten)]
    serve: ServeOptions,
}

#[derive(Args, Debug)]
struct GenerateArgs {
    /// Hugging Face model folder (config.json, safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// Where to compute (auto: a GPU when built with `cuda` and one is visible).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Apply the model's chat template to each prompt as one user message.
    #[arg(long)]
    chat: bool,
    /// Pin the chat template's date (`date_string`) for byte-stable prompts.
    #[arg(long)]
    date: Option<String>,
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// 0 disables top-k.
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Alternatives reported per generated token (with --json).
    #[arg(long, default_value_t = 0)]
    top_logprobs: usize,
    /// Stop when the completion contains this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Print one JSON object per prompt, with token ids and logprobs.
    #[arg(long)]
    json: bool,
    /// Compute dtype.
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    dtype: DTypeArg,
    /// Prompts to complete, as one batch.
    #[arg(required = true)]
    prompts: Vec<String>,
}

#[derive(Args, Debug)]
struct ImportArgs {
    /// The GGUF file.
    gguf: PathBuf,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct SynthArgs {
    #[arg(long, value_enum)]
    preset: Preset,
    /// Number of decoder layers (default: the preset's).
    #[arg(long)]
    layers: Option<usize>,
    /// Number of KV heads (default: the preset's).
    #[arg(long)]
    kv_heads: Option<usize>,
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    dtype: DTypeArg,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Largest safetensors shard in MiB; bigger models get an index.
    #[arg(long, default_value_t = 4096)]
    max_shard_mb: usize,
    /// Folder holding tokenizer.json and tokenizer_config.json to copy in (e.g. the Llama 3
    /// tokenizer from `make model`).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DTypeArg {
    F32,
    Bf16,
    F16,
}

impl From<DTypeArg> for DType {
    fn from(d: DTypeArg) -> Self {
        match d {
            DTypeArg::F32 => DType::F32,
            DTypeArg::Bf16 => DType::BF16,
            DTypeArg::F16 => DType::F16,
        }
    }
}

/// One line of `engine generate --json`.
#[derive(Serialize)]
struct GenerateRecord<'a> {
    prompt: &'a str,
    prompt_token_ids: &'a [u32],
    completion: &'a str,
    completion_token_ids: &'a [u32],
    finish_reason: FinishReason,
    logprobs: &'a [TokenLogprob],
}

/// Logs to stderr (`RUST_LOG`, default warn) and, when `trace` is given, every span into a Chrome
/// trace file; the guard flushes the trace when dropped.
fn init_logging(trace: Option<&std::path::Path>) -> Option<tracing_chrome::FlushGuard> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let registry = tracing_subscriber::registry().with(stderr);
    match trace {
        Some(path) => {
            let (chrome, guard) = tracing_chrome::ChromeLayerBuilder::new()
                .file(path)
                .include_args(true)
                .build();
            registry
                .with(chrome.with_filter(tracing_subscriber::filter::LevelFilter::INFO))
                .init();
            Some(guard)
        }
        None => {
            registry.init();
            None
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` starts logging once it knows its rank (each rank writes its own trace).
    let _guard = (!matches!(cli.command, Command::Run(_))).then(|| init_logging(None));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(args) => generate(args),
        Command::ImportGguf(args) => {
            let summary = engine::checkpoint::gguf::import_gguf(&args.gguf, &args.out)?;
            eprintln!(
                "imported {} into {}: {summary}",
                args.gguf.display(),
                args.out.display()
            );
            Ok(())
        }
        Command::Run(args) => run_job(args),
        Command::Serve(args) => serve_job(args),
        Command::Bench(args) => bench_job(args),
        Command::CheckKernels(args) => check_kernels(args),
        Command::DistCheck(args) => {
            let world = MpiWorld::init()?;
            let (ctx, _device) = args.context(&world)?;
            match run_dist_check(&ctx) {
                Ok(summary) => {
                    if ctx.topology.rank == 0 {
                        println!("{summary}");
                    }
                    Ok(())
                }
                Err(err) => fail_rank(&world, err.into()),
            }
        }
        Command::Calibrate(args) => calibrate(args),
        Command::Synth(args) => {
            let options = SynthOptions {
                preset: args.preset,
                layers: args.layers,
                kv_heads: args.kv_heads,
                dtype: args.dtype.into(),
                seed: args.seed,
                max_shard_bytes: args.max_shard_mb.max(1) << 20,
                tokenizer_dir: args.tokenizer,
            };
            let params = synthesize(&options, &args.out)?;
            eprintln!("wrote {} ({params} parameters)", args.out.display());
            Ok(())
        }
    }
}

fn calibrate(args: CalibrateArgs) -> anyhow::Result<()> {
    use engine::calibrate::{comm, compute};
    let json = match args.part {
        CalibratePart::Compute => {
            let mut options = compute::ComputeOptions {
                gemv_bytes: args.gemv_mib.max(1) << 20,
                ..Default::default()
            };
            options.repeats = args.repeats.unwrap_or(options.repeats);
            serde_json::to_string(&compute::measure(options)?)?
        }
        CalibratePart::Comm => {
            let world = MpiWorld::init()?;
            // The CPU host's MPI links: what the local runs' all-reduces and hand-offs go over.
            let (ctx, _device) = DistArgs {
                tp: world.world_size(),
                pp: 1,
                comm_timeout: 60,
                allreduce_dtype: AllReduceDType::F32,
                device: DeviceChoice::Cpu,
                data_plane: DataPlane::Mpi,
            }
            .context(&world)?;
            let mut options = comm::CommOptions {
                small_values: args.small_values.max(1),
                ..Default::default()
            };
            options.repeats = args.repeats.unwrap_or(options.repeats);
            let rates = match comm::measure(ctx.world.as_ref(), options) {
                Ok(rates) => rates,
                Err(err) => fail_rank(&world, err.into()),
            };
            if world.rank() != 0 {
                return Ok(());
            }
            serde_json::to_string(&rates)?
        }
    };
    println!("{json}");
    Ok(())
}

/// Prints a rank's error and brings the whole job down (MPI abort), so no rank waits forever.
fn fail_rank(world: &MpiWorld, err: anyhow::Error) -> ! {
    eprintln!("error: rank {}: {err:#}", world.rank());
    if world.world_size() > 1 {
        world.abort(1);
    }
    std::process::exit(1)
}

fn run_job(args: RunArgs) -> anyhow::Result<()> {
    let world = MpiWorld::init()?;
    let RunArgs { dist, .. } = &args;
    let (ctx, device) = match dist.context(&world) {
        Ok(both) => both,
        // Every rank sees the same layout error: one message is enough.
        Err(err) if world.rank() == 0 => return Err(err.into()),
        Err(_) => std::process::exit(1),
    };
    let trace_path = args
        .trace_dir
        .as_ref()
        .map(|dir| dir.join(format!("rank{}.trace.json", world.rank())));
    if let Some(dir) = &args.trace_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _trace = init_logging(trace_path.as_deref());
    let options = RunOptions {
        model: args.model.clone(),
        prompts: args.prompts.clone(),
        out: args.out.clone(),
        max_new_tokens: args.max_new_tokens,
        batch_size: args.batch_size,
        micro_batches: args.micro_batches,
        pp_layers: args.pp_layers.clone(),
        strategy: args
            .strategy
            .clone()
            .unwrap_or_else(|| format!("tp{}-pp{}", dist.tp, dist.pp)),
        dtype: args.dtype.into(),
        device,
        date_string: args.date.clone(),
        trace_path,
        stats_dir: args.stats_dir.clone(),
    };
    match run_batch_job(&options, &ctx) {
        Ok(rows) => {
            if ctx.topology.rank == 0 {
                eprintln!("wrote {} rows to {}", rows.len(), options.out.display());
            }
            Ok(())
        }
        Err(err) => fail_rank(&world, err.into()),
    }
}

fn serve_job(args: ServeArgs) -> anyhow::Result<()> {
    let world = MpiWorld::init()?;
    let (ctx, device) = match args.dist.context(&world) {
        Ok(both) => both,
        // Every rank sees the same layout error: one message is enough.
        Err(err) if world.rank() == 0 => return Err(err.into()),
        Err(_) => std::process::exit(1),
    };
    let timeout = Duration::from_secs(args.dist.comm_timeout);
    match serve(&args.serve, &ctx, &device, timeout) {
        Ok(()) => Ok(()),
        Err(err) => fail_rank(&world, err.into()),
    }
}

fn bench_job(args: BenchArgs) -> anyhow::Result<()> {
    let world = MpiWorld::init()?;
    let (ctx, device) = match args.dist.context(&world) {
        Ok(both) => both,
        Err(err) if world.rank() == 0 => return Err(err.into()),
        Err(_) => std::process::exit(1),
    };
    let options = BenchOptions {
        model: args.model.clone(),
        dtype: args.dtype.into(),
        device,
        prompt_tokens: args.prompt_tokens.clone(),
        decode_batches: args.decode_batch.clone(),
        decode_context: args.decode_context,
        decode_steps: args.decode_steps,
    };
    let report = match run_bench(&options, &ctx) {
        Ok(report) => report,
        Err(err) => fail_rank(&world, err.into()),
    };
    if ctx.topology.rank == 0 {
        print!("{report}");
        if let Some(path) = &args.json {
            let json = serde_json::to_vec_pretty(&report)?;
            engine::fsutil::write_atomic(path, &json)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

fn check_kernels(args: CheckKernelsArgs) -> anyhow::Result<()> {
    let device = select_device(args.device, engine::dist::Topology::local_rank_from_env())?;
    let mut failed = 0;
    for dtype in &args.dtype {
        for check in kernels::selfcheck::check_against_cpu(&device, (*dtype).into())? {
            println!("{:?} {check}", device.location());
            failed += usize::from(!check.passed());
        }
    }
    anyhow::ensure!(failed == 0, "{failed} kernel checks failed");
    Ok(())
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let device = select_device(args.device, 0)?;
    let loaded = LoadedModel::load(&args.model, args.dtype.into(), &device)?;
    let params = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.seed,
        max_new_tokens: args.max_new_tokens,
        stop: args.stop.clone(),
        top_logprobs: args.top_logprobs,
    };
    let render = RenderOptions {
        add_generation_prompt: true,
        date_string: args.date.clone(),
    };
    let requests = args
        .prompts
        .iter()
        .map(|prompt| {
            let prompt_ids = if args.chat {
                let messages = [ChatMessage {
                    role: "user".into(),
                    content: prompt.clone(),
                }];
                loaded.tokenizer.encode_chat(&messages, &render)?
            } else {
                loaded.tokenizer.encode(prompt, true)?
            };
            Ok(GenerationRequest {
                prompt_ids,
                params: params.clone(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let outputs = loaded
        .generator()
        .generate(&requests)
        .context("generation failed")?;
    let mut stdout = std::io::stdout().lock();
    for (prompt, out) in args.prompts.iter().zip(&outputs) {
        if args.json {
            let record = GenerateRecord {
                prompt,
                prompt_token_ids: &out.prompt_token_ids,
                completion: &out.completion,
                completion_token_ids: &out.completion_token_ids,
                finish_reason: out.finish_reason,
                logprobs: &out.logprobs,
            };
            writeln!(stdout, "{}", serde_json::to_string(&record)?)?;
        } else {
            writeln!(stdout, "{}", out.completion)?;
        }
    }
    Ok(())
}
