//! `driver baseline`: the config, overridden by flags, then the run.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use driver::config::DriverConfig;
use driver::inference::baseline::run_baseline;
use driver::inference::openai_client::ApiMode;

#[derive(Args, Debug)]
pub struct BaselineArgs {
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

/// Runs the baseline; an error when a row ends `failed`.
pub fn run(args: BaselineArgs) -> anyhow::Result<()> {
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
