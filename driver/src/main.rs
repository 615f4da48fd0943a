//! `driver`: plans, runs and reports shardlab experiments.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use driver::config::LauncherKind;

use commands::baseline::BaselineArgs;
use commands::prompts::PromptsCommand;
use driver::parallelism::{enabled_strategies, strategy_by_name, ParallelismStrategy};
use driver::slurm::job_factory::PromptRow;
use driver::slurm::job_manager::{ManagerError, ManagerOptions, RunSummary, SlurmJobManager};
use driver::slurm::launcher::{Launcher, LocalLauncher, SlurmLauncher};
use driver::slurm::profile::ClusterProfile;
use driver::slurm::run_state::JobProgress;

mod commands;

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
    /// Print the jobs a run would submit, with their scripts, without submitting anything
    /// (`--predict`: the performance model's figures for the strategies instead).
    Plan(Box<commands::experiment::PlanArgs>),
    /// Start a run and submit its jobs without watching them (`status` and `run --resume` follow).
    Submit(Box<commands::experiment::ExperimentArgs>),
    /// Show where a run's jobs stand.
    Status(commands::experiment::RunRef),
    /// Collect a run's job outputs into its master table again (no scoring).
    Collect(commands::experiment::RunRef),
    /// Rebuild a run's report (summary.csv, summary.md, plots) from its Parquet table alone.
    Report(commands::experiment::RunRef),
    /// Run the whole experiment: prompts, baseline, every strategy, collection, scoring, report.
    Run(Box<commands::experiment::RunArgs>),
    /// Measure this machine with the engine (matmul, decode GEMV and attention rates, MPI
    /// latency and bandwidth) and write a CPU `[hardware]` preset for the performance model.
    Calibrate(commands::calibrate::CalibrateArgs),
    /// Internal: run the strategies' jobs over a JSONL of prompts until they end, reattaching to
    /// the run folder's jobs if it has any; prints the summary as JSON. Exit status 0 when every
    /// job succeeded, 2 when some failed, 130 when interrupted.
    #[command(hide = true)]
    Jobs(Box<JobsArgs>),
}

#[derive(clap::Args, Debug)]
struct JobsArgs {
    /// Cluster profile (TOML, see slurm/profiles/).
    #[arg(long)]
    profile: PathBuf,
    /// The run folder: state.json, prompt shards, scripts, outputs, logs.
    #[arg(long)]
    run_dir: PathBuf,
    /// JSONL prompts: `prompt_id`, `variant`, `prompt` (and `token_budget`).
    #[arg(long)]
    prompts: PathBuf,
    #[arg(long, value_enum, default_value = "slurm")]
    launcher: LauncherKind,
    /// Strategies to run (default: those the profile enables).
    #[arg(long = "strategy")]
    strategies: Vec<String>,
    /// The engine binary (overrides the profile's `engine.binary`).
    #[arg(long)]
    engine: Option<PathBuf>,
    /// The model folder (overrides `model.path`; its facts are then read from its config.json).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Slurm `--time` for every job (overrides `slurm.walltime`).
    #[arg(long)]
    walltime: Option<String>,
    /// On Ctrl-C, leave the run's jobs running instead of cancelling them.
    #[arg(long)]
    leave_jobs_on_interrupt: bool,
    /// Shortest and longest poll interval, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_min_ms: u64,
    #[arg(long, default_value_t = 30000)]
    poll_max_ms: u64,
    /// Templates folder to use instead of the built-in templates (slurm/templates/).
    #[arg(long)]
    templates: Option<PathBuf>,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<ManagerError>()
                .is_some_and(|m| matches!(m, ManagerError::Interrupted { .. }))
            {
                130
            } else {
                1
            }
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Prompts(command) => commands::prompts::run(&command).map(|()| 0),
        Command::Baseline(args) => commands::baseline::run(*args).map(|()| 0),
        Command::Jobs(args) => jobs(*args),
        Command::Plan(args) => commands::experiment::plan(*args),
        Command::Submit(args) => commands::experiment::submit(*args),
        Command::Status(args) => commands::experiment::status(args),
        Command::Collect(args) => commands::experiment::collect(args),
        Command::Report(args) => commands::experiment::report(args),
        Command::Run(args) => commands::experiment::run(*args),
        Command::Calibrate(args) => commands::calibrate::run(args),
    }
}

fn jobs(args: JobsArgs) -> anyhow::Result<i32> {
    let mut profile = ClusterProfile::load(&args.profile)?;
    if let Some(engine) = args.engine {
        profile.engine.binary = engine;
    }
    if let Some(model) = args.model {
        profile.model.use_config_json_at(model);
    }
    if let Some(walltime) = args.walltime {
        profile.slurm.walltime = walltime;
    }
    profile.check()?;
    let model = profile.model.facts()?;
    // Every strategy is built and checked before anything is submitted.
    let strategies: Vec<Box<dyn ParallelismStrategy>> = if args.strategies.is_empty() {
        enabled_strategies(&profile, &model)?
    } else {
        args.strategies
            .iter()
            .map(|name| strategy_by_name(name, &profile, &model))
            .collect::<Result<_, _>>()?
    };
    let prompts = read_prompts(&args.prompts)?;
    let options = ManagerOptions {
        poll_min: Duration::from_millis(args.poll_min_ms),
        poll_max: Duration::from_millis(args.poll_max_ms.max(args.poll_min_ms)),
        cancel_on_interrupt: !args.leave_jobs_on_interrupt,
        template_dir: args.templates,
        ..Default::default()
    };
    let summary = match args.launcher {
        LauncherKind::Slurm => watch(
            profile,
            &args.run_dir,
            SlurmLauncher::new(),
            strategies,
            options,
            &prompts,
        )?,
        LauncherKind::Local => watch(
            profile,
            &args.run_dir,
            LocalLauncher::new(),
            strategies,
            options,
            &prompts,
        )?,
    };
    println!("{}", serde_json::to_string_pretty(&summary)?);
    let all_ok = summary
        .jobs
        .iter()
        .all(|j| j.status == JobProgress::Succeeded);
    Ok(if all_ok { 0 } else { 2 })
}

fn watch<L: Launcher>(
    profile: ClusterProfile,
    run_dir: &std::path::Path,
    launcher: L,
    strategies: Vec<Box<dyn ParallelismStrategy>>,
    options: ManagerOptions,
    prompts: &[PromptRow],
) -> anyhow::Result<RunSummary> {
    let mut manager = SlurmJobManager::open(profile, run_dir, launcher, strategies, options)?;
    let added = manager.add_jobs(prompts)?;
    tracing::info!(added, total = manager.state().jobs.len(), run = %manager.state().run_id, "jobs");
    Ok(manager.run(|job, attempt| {
        tracing::info!(job = %job.key(), attempt = attempt.number, out = %attempt.script.out.display(), "outputs ready");
    })?)
}

fn read_prompts(path: &std::path::Path) -> anyhow::Result<Vec<PromptRow>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read prompts {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}: line {}", path.display(), i + 1))
        })
        .collect()
}
