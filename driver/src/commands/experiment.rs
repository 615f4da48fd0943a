//! `driver run`, `plan`, `submit`, `status`, `collect` and `report`: the experiment of one run
//! folder, whole or step by step.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use driver::config::{DriverConfig, LauncherKind};
use driver::data::answers::AnswerSet;
use driver::data::table::{read_parquet_frame, PromptTable};
use driver::metrics::correctness::CorrectnessEvaluator;
use driver::metrics::report::RunSummary;
use driver::orchestration::pipeline::DistributedExperimentPipeline;
use driver::orchestration::run_folder::{RunFolder, RunManifest};
use driver::perf::table::render;
use driver::perf::{predict_strategies, HardwareSpec, PerfInputs, StrategyLayout};
use driver::results::master;
use driver::slurm::job_manager::summarize;
use driver::slurm::run_state::RunState;

/// The config and the prompts, shared by `run`, `plan` and `submit`.
#[derive(Args, Debug, Clone)]
pub struct ExperimentArgs {
    /// Config file (TOML), e.g. configs/demo.toml; without it, the embedded default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Any config key, as `section.key=value` (a TOML value); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// The prompt IDs to run, comma-separated [config: run.prompt_ids].
    #[arg(long, value_delimiter = ',', conflicts_with = "all")]
    prompt_ids: Vec<String>,
    /// Run all 20 prompt IDs, whatever the config says.
    #[arg(long)]
    all: bool,
    /// The launcher [config: cluster.launcher].
    #[arg(long, value_enum)]
    launcher: Option<LauncherKind>,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
}

impl ExperimentArgs {
    fn sets(&self) -> Vec<String> {
        let mut sets = self.sets.clone();
        if let Some(l) = self.launcher {
            sets.push(format!("cluster.launcher=\"{}\"", l.as_str()));
        }
        sets
    }

    fn load(&self) -> anyhow::Result<(DriverConfig, Vec<String>)> {
        let config = DriverConfig::load_with(self.config.as_deref(), &self.sets())?;
        let ids = if self.all {
            Vec::new()
        } else if !self.prompt_ids.is_empty() {
            self.prompt_ids.clone()
        } else {
            config.run.prompt_ids.clone()
        };
        Ok((config, ids))
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    experiment: ExperimentArgs,
    /// Pick up a run where it stopped: its folder, or its name in the results folder. The run's
    /// own config file, overrides and prompt IDs are used (from its run.json).
    #[arg(long, value_name = "RUN")]
    resume: Option<String>,
}

/// `driver run`: every step, resumable.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let (pipeline, resumed) = match &args.resume {
        Some(run) => {
            let (config, _) = args.experiment.load()?;
            let folder = RunFolder::open(&config.results.dir, run)?;
            let manifest = folder.load_manifest()?;
            let config = DriverConfig::load_with(manifest.config.as_deref(), &manifest.sets)
                .with_context(|| format!("the config run {} was started with", manifest.name))?;
            let progress = !args.experiment.no_progress;
            (
                DistributedExperimentPipeline::new(config, folder, manifest.prompt_ids, progress),
                true,
            )
        }
        None => {
            let (config, ids) = args.experiment.load()?;
            let folder = RunFolder::create(&config.results.dir)?;
            folder.save_manifest(&RunManifest {
                name: folder.name.clone(),
                created: chrono::Utc::now().to_rfc3339(),
                config: args.experiment.config.clone(),
                sets: args.experiment.sets(),
                prompt_ids: ids.clone(),
            })?;
            let progress = !args.experiment.no_progress;
            (
                DistributedExperimentPipeline::new(config, folder, ids, progress),
                false,
            )
        }
    };
    let run = pipeline.run_folder().clone();
    eprintln!(
        "{} run {} in {}",
        if resumed { "resuming" } else { "starting" },
        run.name,
        run.dir.display()
    );
    // Every check (prompts, profile, strategies) before the first request or job.
    let (records, table) = pipeline.prompts()?;
    pipeline.strategies(&pipeline.profile()?)?;
    save_perf_inputs(&pipeline, &run)?;
    eprintln!(
        "[1/4] baseline: {} prompts ({} prompt IDs, 2k and 4k)",
        table.rows.len(),
        records.len() / 2
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let baseline = runtime.block_on(pipeline.baseline(table))?;
    drop(runtime);
    for (row, error) in &baseline.failed {
        eprintln!("  baseline {row} failed: {error}");
    }
    let baseline_rows = PromptTable::read_parquet(&baseline.table_path)?.rows;
    eprintln!("[2/4] strategies");
    let mut collector = pipeline.collector(baseline_rows)?;
    let jobs = pipeline.run_jobs(&records, &mut collector)?;
    for failed in &jobs.failed {
        eprintln!("  job {failed}");
    }
    eprintln!("[3/4] scoring");
    let report = score_and_report(&pipeline, &run)?;
    eprintln!("[4/4] report");
    for problem in collector.problems() {
        eprintln!("  artifact problem: {problem}");
    }
    println!("table:  {}", run.table.display());
    println!("report: {}", report.join("summary.md").display());
    let clean =
        baseline.failed.is_empty() && jobs.failed.is_empty() && collector.problems().is_empty();
    Ok(if clean { 0 } else { 2 })
}

/// Keeps the performance model's inputs in the run folder (`perf_inputs.json`), so the report
/// can set predicted beside measured figures; a profile the model cannot use is noted, and the
/// run goes on without predictions.
fn save_perf_inputs(
    pipeline: &DistributedExperimentPipeline,
    run: &RunFolder,
) -> anyhow::Result<()> {
    let profile = pipeline.profile()?;
    let strategies = pipeline.strategies(&profile)?;
    match predict_strategies(&profile, &strategies) {
        Ok(predictions) => {
            let layouts = strategies
                .iter()
                .map(|s| StrategyLayout {
                    strategy: s.name().to_string(),
                    args: s.engine_args(),
                })
                .collect();
            PerfInputs::from_predictions(&predictions, layouts).save(&run.dir)?;
        }
        Err(e) => eprintln!("  no predictions in the report: {e}"),
    }
    Ok(())
}

/// Scores the master table against the baseline and the answers, writes it back, and renders
/// the report into the run folder; returns the report's folder.
fn score_and_report(
    pipeline: &DistributedExperimentPipeline,
    run: &RunFolder,
) -> anyhow::Result<PathBuf> {
    let config = pipeline.config();
    let answers_path = config.prompts.dir.join("answers.json");
    let answers = AnswerSet::load(&answers_path)?;
    let tokenizer_path = pipeline.scoring_tokenizer();
    let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", tokenizer_path.display()))?;
    let df = read_parquet_frame(&run.table)?;
    let mut scored = CorrectnessEvaluator::new(Some(answers), tokenizer)
        .evaluate(&df)
        .with_context(|| format!("scoring {}", run.table.display()))?;
    master::write_parquet(&mut scored, &run.table)?;
    write_report(&scored, &run.dir)?;
    Ok(run.dir.clone())
}

fn write_report(scored: &polars::prelude::DataFrame, dir: &Path) -> anyhow::Result<()> {
    let inputs = PerfInputs::load(dir)?;
    let summary =
        RunSummary::from_table_predicted(scored, inputs.as_ref()).context("summarising the run")?;
    summary
        .write(scored, dir)
        .with_context(|| format!("writing the report into {}", dir.display()))?;
    Ok(())
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    experiment: ExperimentArgs,
    /// Print only the job table, not the scripts.
    #[arg(long)]
    brief: bool,
    /// Print the performance model's predictions for the strategies instead of the jobs.
    #[arg(long)]
    predict: bool,
    /// Predict for this hardware instead of the profile's `[hardware]`: a built-in preset
    /// (h100-sxm, h200) or a preset file (e.g. slurm/profiles/hardware/cpu-local.toml).
    #[arg(long, value_name = "PRESET", requires = "predict")]
    hardware: Option<String>,
}

/// `driver plan`: the jobs and their scripts, nothing submitted or written.
pub fn plan(args: PlanArgs) -> anyhow::Result<i32> {
    let (config, ids) = args.experiment.load()?;
    let folder = RunFolder {
        name: "run_<timestamp>".into(),
        dir: config.results.dir.join("run_<timestamp>"),
        table: config.results.dir.join("run_<timestamp>.parquet"),
    };
    let pipeline = DistributedExperimentPipeline::new(config, folder, ids, false);
    if args.predict {
        return predict(&pipeline, args.hardware.as_deref());
    }
    let jobs = pipeline.plan()?;
    println!(
        "{:<26} {:<7} {:>7} {:>4} {:>4} {:>6} {:>10}  layers",
        "strategy", "variant", "prompts", "tp", "pp", "nodes", "ranks/node"
    );
    for j in &jobs {
        println!(
            "{:<26} {:<7} {:>7} {:>4} {:>4} {:>6} {:>10}  {:?}",
            j.strategy, j.variant, j.prompts, j.tp, j.pp, j.nodes, j.ranks_per_node, j.layer_split
        );
    }
    if !args.brief {
        for j in &jobs {
            println!(
                "\n# ===== {} / {} =====\n{}",
                j.strategy, j.variant, j.script
            );
        }
    }
    Ok(0)
}

/// `driver plan --predict`: the performance model's table for the run's strategies.
fn predict(
    pipeline: &DistributedExperimentPipeline,
    hardware: Option<&str>,
) -> anyhow::Result<i32> {
    let mut profile = pipeline.profile()?;
    if let Some(preset) = hardware {
        profile.hardware = Some(if preset.ends_with(".toml") {
            HardwareSpec::read_preset_file(Path::new(preset))?
        } else {
            HardwareSpec::preset(preset)
        });
    }
    let strategies = pipeline.strategies(&profile)?;
    let predictions = predict_strategies(&profile, &strategies).with_context(|| {
        format!(
            "predicting for {}",
            pipeline.config().cluster.profile.display()
        )
    })?;
    print!("{}", render(&predictions));
    Ok(0)
}

/// `driver submit`: a new run's jobs submitted, not watched; `driver status RUN` follows them.
pub fn submit(args: ExperimentArgs) -> anyhow::Result<i32> {
    let (config, ids) = args.load()?;
    let folder = RunFolder::create(&config.results.dir)?;
    folder.save_manifest(&RunManifest {
        name: folder.name.clone(),
        created: chrono::Utc::now().to_rfc3339(),
        config: args.config.clone(),
        sets: args.sets(),
        prompt_ids: ids.clone(),
    })?;
    let pipeline = DistributedExperimentPipeline::new(config, folder.clone(), ids, false);
    save_perf_inputs(&pipeline, &folder)?;
    let submitted = pipeline.submit()?;
    println!("run {}: {submitted} jobs submitted", folder.name);
    println!("follow it with: driver status {}", folder.dir.display());
    println!(
        "finish it with: driver run --resume {}",
        folder.dir.display()
    );
    Ok(0)
}

#[derive(Args, Debug)]
pub struct RunRef {
    /// The run: its folder, or its name in the results folder.
    run: String,
    /// The results folder runs are looked up in.
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
}

/// `driver status RUN`: where the run's jobs stand, asked of the launcher (or as last saved
/// while another driver watches the run).
pub fn status(args: RunRef) -> anyhow::Result<i32> {
    let folder = RunFolder::open(&args.results_dir, &args.run)?;
    if let Ok(manifest) = folder.load_manifest() {
        let refreshed = DriverConfig::load_with(manifest.config.as_deref(), &manifest.sets)
            .map_err(anyhow::Error::from)
            .and_then(|config| {
                DistributedExperimentPipeline::new(
                    config,
                    folder.clone(),
                    manifest.prompt_ids,
                    false,
                )
                .refresh()
                .map_err(anyhow::Error::from)
            });
        if let Err(e) = refreshed {
            tracing::info!(error = %format!("{e:#}"), "showing the saved state");
        }
    }
    let state = RunState::load(&folder.dir)?
        .with_context(|| format!("{}: no jobs submitted yet", folder.dir.display()))?;
    let summary = summarize(&state);
    println!(
        "run {} ({} launcher, profile {})",
        folder.name, state.launcher, state.profile
    );
    println!(
        "{:<26} {:<7} {:<10} {:>8} {:<14} {:>5}  job ids / why",
        "strategy", "variant", "status", "attempts", "last state", "exit"
    );
    for j in &summary.jobs {
        println!(
            "{:<26} {:<7} {:<10} {:>8} {:<14} {:>5}  {}{}",
            j.strategy,
            j.variant,
            format!("{:?}", j.status).to_lowercase(),
            j.attempts,
            j.last_state.map_or("-", |s| s.as_str()),
            j.exit_code.map_or("-".into(), |c| c.to_string()),
            j.job_ids.join(","),
            j.why
                .as_deref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        );
    }
    Ok(0)
}

/// `driver report RUN`: the report rebuilt from the run's (scored) Parquet table alone.
pub fn report(args: RunRef) -> anyhow::Result<i32> {
    let folder = RunFolder::open(&args.results_dir, &args.run)?;
    let df = read_parquet_frame(&folder.table)?;
    write_report(&df, &folder.dir)?;
    println!("report: {}", folder.dir.join("summary.md").display());
    Ok(0)
}

/// `driver collect RUN`: the master table rebuilt from the run's job outputs (unscored).
pub fn collect(args: RunRef) -> anyhow::Result<i32> {
    let folder = RunFolder::open(&args.results_dir, &args.run)?;
    let manifest = folder.load_manifest()?;
    let config = DriverConfig::load_with(manifest.config.as_deref(), &manifest.sets)?;
    let pipeline =
        DistributedExperimentPipeline::new(config, folder.clone(), manifest.prompt_ids, false);
    let baseline = PromptTable::read_parquet(&folder.baseline_table())?.rows;
    let state = RunState::load(&folder.dir)?
        .with_context(|| format!("{}: no jobs submitted yet", folder.dir.display()))?;
    let mut collector = pipeline.collector(baseline)?;
    let got = collector.collect_run(&state);
    collector.checkpoint()?;
    for problem in collector.problems() {
        eprintln!("artifact problem: {problem}");
    }
    println!(
        "{}: {} rows answered, {} missing",
        folder.table.display(),
        got.answered,
        got.missing
    );
    Ok(if collector.problems().is_empty() {
        0
    } else {
        2
    })
}
