//! `driver prompts check` and `driver prompts build`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use driver::config::DriverConfig;
use driver::data::generator::{self, DEFAULT_SEED};
use driver::data::prompts::{PromptFileSet, Variant};
use driver::data::tokens::TokenCounter;

#[derive(Subcommand, Debug)]
pub enum PromptsCommand {
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
pub struct PromptsArgs {
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

/// Runs a `prompts` subcommand.
pub fn run(command: &PromptsCommand) -> anyhow::Result<()> {
    match command {
        PromptsCommand::Check(args) => check(args),
        PromptsCommand::Build { args, seed } => build(args, *seed),
    }
}

fn prompts_paths(args: &PromptsArgs) -> anyhow::Result<(PathBuf, TokenCounter)> {
    let config = DriverConfig::load_with(args.config.as_deref(), &[])?;
    let dir = args.dir.clone().unwrap_or(config.prompts.dir);
    let tokenizer = args.tokenizer.clone().unwrap_or(config.prompts.tokenizer);
    Ok((dir, TokenCounter::from_file(&tokenizer)?))
}

fn check(args: &PromptsArgs) -> anyhow::Result<()> {
    let (dir, counter) = prompts_paths(args)?;
    let set = PromptFileSet::load(&dir, &counter)?;
    println!("prompt   2k tokens   4k tokens");
    if let (Some(k2), Some(k4)) = (set.file(Variant::K2), set.file(Variant::K4)) {
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

fn build(args: &PromptsArgs, seed: u64) -> anyhow::Result<()> {
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
