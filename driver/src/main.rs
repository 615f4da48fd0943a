//! `driver`: plans, runs and reports shardlab experiments.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use driver::config::DriverConfig;
use driver::data::generator::{self, DEFAULT_SEED};
use driver::data::prompts::PromptFileSet;
use driver::data::tokens::TokenCounter;
use driver::inference::baseline::run_baseline;
use driver::inference::openai_client::ApiMode;

/// Compare parallelism strategies for Llama inference on a Slurm cluster (or a laptop).
#[derive(Parser, Debug)]
#[command(name = "driver", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate or rebuild the prompt sets under data/.
    #[command(subcommand)]
    Prompts(PromptsCommand),
    /// Run the baseline against an OpenAI-compatible endpoint.
    Baseline(Box<BaselineArgs>),
    /// Print the jobs a run would submit, without submitting.
    Plan,
    /// Submit the jobs of a run.
    Submit,
    /// Show the state of a run's jobs.
    Status,
    /// Collect the outputs of a run's jobs.
    Collect,
    /// Rebuild a run's report from its table.
    Report,
    /// Run the whole experiment: prompts, baseline, strategies, scoring, report.
    Run,
}

#[derive(Subcommand, Debug)]
enum PromptsCommand {
    /// Check both prompt files: 20 prompts each, the same unique IDs, none empty, each within its
    /// token budget (2048 or 4096 Llama 3 tokens, +-10%).
    Check(PromptsArgs),
    /// Rebuild the prompt files and answers.json from the seeded generator.
    Build {
        #[command(flatten)]
        args: PromptsArgs,
        /// The generator's seed (the committed files use the default).
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
    },
}

#[derive(Args, Debug)]
struct PromptsArgs {
    /// Config file (TOML); its [prompts] section gives the defaults below.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The folder of prompts_2k.txt, prompts_4k.txt and answers.json [config: prompts.dir].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The Llama 3 tokenizer.json the budgets are measured with [config: prompts.tokenizer].
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct BaselineArgs {
    /// Config file (TOML), e.g. configs/demo.toml; without it, the embedded default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// `embedded`, or the endpoint's API base URL [baseline.url].
    #[arg(long)]
    url: Option<String>,
    /// Embedded: the model folder; remote: the model name [baseline.model].
    #[arg(long)]
    model: Option<String>,
    /// The environment variable that holds the API key [baseline.api_key_env].
    #[arg(long)]
    api_key_env: Option<String>,
    /// chat or completions [baseline.mode].
    #[arg(long, value_parser = parse_mode)]
    mode: Option<ApiMode>,
    /// [baseline.max_tokens]
    #[arg(long)]
    max_tokens: Option<u32>,
    /// [baseline.concurrency]
    #[arg(long)]
    concurrency: Option<usize>,
    /// 0 for no limit [baseline.requests_per_minute].
    #[arg(long)]
    requests_per_minute: Option<u32>,
    /// 0 for no limit [baseline.tokens_per_minute].
    #[arg(long)]
    tokens_per_minute: Option<u32>,
    /// [baseline.request_timeout_s]
    #[arg(long)]
    request_timeout_s: Option<f64>,
    /// [baseline.max_retries]
    #[arg(long)]
    max_retries: Option<usize>,
    /// Smoke runs only: send at most this many characters of each prompt [baseline.max_prompt_chars].
    #[arg(long)]
    max_prompt_chars: Option<usize>,
    /// [baseline.embedded.engine_bin]
    #[arg(long)]
    engine_bin: Option<String>,
    /// [prompts.dir]
    #[arg(long)]
    prompts_dir: Option<PathBuf>,
    /// [prompts.tokenizer]
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// [results.dir]
    #[arg(long)]
    results_dir: Option<PathBuf>,
    /// Any config key, as `section.key=value` (a TOML value), e.g. `--set baseline.top_logprobs=5`;
    /// repeatable, applied after the file and before the flags above.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Discard results/baseline_prompts.parquet and send every row again.
    #[arg(long)]
    restart: bool,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

fn parse_mode(s: &str) -> Result<ApiMode, String> {
    match s {
        "chat" => Ok(ApiMode::Chat),
        "completions" => Ok(ApiMode::Completions),
        _ => Err(format!("`{s}`: expected chat or completions")),
    }
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<DriverConfig> {
    Ok(DriverConfig::load_with(path.map(PathBuf::as_path), &[])?)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Prompts(PromptsCommand::Check(args)) => prompts_check(&args),
        Command::Prompts(PromptsCommand::Build { args, seed }) => prompts_build(&args, seed),
        Command::Baseline(args) => baseline(*args),
        other => anyhow::bail!(
            "`driver {}` is not implemented yet",
            format!("{other:?}").to_lowercase()
        ),
    }
}

fn prompts_paths(args: &PromptsArgs) -> anyhow::Result<(PathBuf, TokenCounter)> {
    let config = load_config(args.config.as_ref())?;
    let dir = args.dir.clone().unwrap_or(config.prompts.dir);
    let tokenizer = args.tokenizer.clone().unwrap_or(config.prompts.tokenizer);
    Ok((dir, TokenCounter::from_file(&tokenizer)?))
}

fn prompts_check(args: &PromptsArgs) -> anyhow::Result<()> {
    let (dir, counter) = prompts_paths(args)?;
    let set = PromptFileSet::load(&dir, &counter)?;
    println!("prompt   2k tokens   4k tokens");
    if let (Some(k2), Some(k4)) = (
        set.file(driver::data::prompts::Variant::K2),
        set.file(driver::data::prompts::Variant::K4),
    ) {
        for (prompt, tokens) in k2.prompts.iter().zip(&k2.token_counts) {
            let k4_tokens = k4
                .prompts
                .iter()
                .position(|p| p.id == prompt.id)
                .map(|i| k4.token_counts[i]);
            println!(
                "{:<8} {:>9}   {:>9}",
                prompt.id,
                tokens,
                k4_tokens.unwrap_or_default()
            );
        }
    }
    println!(
        "ok: {} and {} pass (20 prompts each, same IDs, budgets 2048 and 4096 +-10%)",
        dir.join("prompts_2k.txt").display(),
        dir.join("prompts_4k.txt").display()
    );
    Ok(())
}

fn prompts_build(args: &PromptsArgs, seed: u64) -> anyhow::Result<()> {
    let (dir, counter) = prompts_paths(args)?;
    let set = generator::build(seed, &counter)?;
    set.write(&dir)?;
    for (id, k2, k4) in &set.token_counts {
        println!("{id:<8} {k2:>9}   {k4:>9}");
    }
    println!(
        "wrote {}, {} and {} (seed {seed})",
        dir.join("prompts_2k.txt").display(),
        dir.join("prompts_4k.txt").display(),
        dir.join("answers.json").display()
    );
    Ok(())
}

fn baseline(args: BaselineArgs) -> anyhow::Result<()> {
    let mut config = DriverConfig::load_with(args.config.as_deref(), &args.sets)?;
    let b = &mut config.baseline;
    if let Some(v) = args.url {
        b.url = v;
    }
    if let Some(v) = args.model {
        b.model = v;
    }
    if let Some(v) = args.api_key_env {
        b.api_key_env = v;
    }
    if let Some(v) = args.mode {
        b.mode = v;
    }
    if let Some(v) = args.max_tokens {
        b.max_tokens = v;
    }
    if let Some(v) = args.concurrency {
        b.concurrency = v;
    }
    if let Some(v) = args.requests_per_minute {
        b.requests_per_minute = v;
    }
    if let Some(v) = args.tokens_per_minute {
        b.tokens_per_minute = v;
    }
    if let Some(v) = args.request_timeout_s {
        b.request_timeout_s = v;
    }
    if let Some(v) = args.max_retries {
        b.max_retries = v;
    }
    if let Some(v) = args.max_prompt_chars {
        b.max_prompt_chars = v;
    }
    if let Some(v) = args.engine_bin {
        b.embedded.engine_bin = v;
    }
    if let Some(v) = args.prompts_dir {
        config.prompts.dir = v;
    }
    if let Some(v) = args.tokenizer {
        config.prompts.tokenizer = v;
    }
    if let Some(v) = args.results_dir {
        config.results.dir = v;
    }
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid settings: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The future runs on this (main) thread, so the embedded server's parent-death signal is
    // tied to a thread that lives as long as the driver.
    let report = runtime.block_on(run_baseline(&config, args.restart, !args.no_progress))?;
    let s = report.summary;
    println!(
        "baseline: {} rows sent ({} ok, {} failed), {} already ok; table: {}",
        s.sent,
        s.ok,
        s.failed,
        s.already_ok,
        report.table_path.display()
    );
    if !report.failed.is_empty() {
        for (row, error) in &report.failed {
            eprintln!("  {row}: {error}");
        }
        anyhow::bail!(
            "{} rows failed; run the same command again to retry them (ok rows are kept)",
            report.failed.len()
        );
    }
    Ok(())
}
