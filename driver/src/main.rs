//! `driver`: plans, runs and reports shardlab experiments.

use clap::{Parser, Subcommand};

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
    Prompts,
    /// Run the baseline against an OpenAI-compatible endpoint.
    Baseline,
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

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    anyhow::bail!(
        "`driver {}` is not implemented yet",
        format!("{:?}", cli.command).to_lowercase()
    )
}
