//! [`DistributedExperimentPipeline`]: the whole experiment of one run folder. The prompts, the
//! baseline over them, then each enabled strategy in turn over both variants (its jobs through
//! the run's launcher, each finished job's outputs handed to the result collector and the master
//! table checkpointed), then scoring and the report. Every step resumes: the baseline keeps its
//! `ok` rows, the job manager reattaches to its jobs, collection is idempotent.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::run_folder::{RunFolder, RunFolderError};
use crate::config::{DriverConfig, LauncherKind, EMBEDDED};
use crate::data::prompts::{PromptRecord, PromptRepository, PromptSetError};
use crate::data::table::{PromptDataFrameBuilder, PromptTable, TableError, TableRow};
use crate::data::tokens::{TokenCounter, TokenizerError};
use crate::inference::baseline::{run_baseline_table, BaselineError, BaselineReport};
use crate::inference::embedded::{locate_engine, EmbeddedError};
use crate::parallelism::strategy::StrategyError;
use crate::parallelism::{enabled_strategies, strategy_by_name, ParallelismStrategy};
use crate::results::collector::ResultCollector;
use crate::results::master::MasterError;
use crate::slurm::job_factory::{JobFactoryError, JobRequest, SlurmJobFactory};
use crate::slurm::job_manager::{ManagerError, ManagerOptions, SlurmJobManager};
use crate::slurm::launcher::{Launcher, LocalLauncher, SlurmLauncher};
use crate::slurm::profile::{ClusterProfile, ProfileError, PromptFormat};
use crate::slurm::run_state::JobProgress;

/// Why a pipeline step could not go on.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Prompts(#[from] PromptSetError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    #[error(transparent)]
    Factory(#[from] JobFactoryError),
    #[error(transparent)]
    Manager(#[from] ManagerError),
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error(transparent)]
    Master(#[from] MasterError),
    #[error(transparent)]
    RunFolder(#[from] RunFolderError),
    #[error("scoring: {0}")]
    Scoring(String),
    #[error("{0}")]
    Invalid(String),
}

/// One job `driver plan` would submit.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    pub strategy: String,
    pub variant: String,
    pub prompts: usize,
    pub tp: usize,
    pub pp: usize,
    pub nodes: usize,
    pub ranks_per_node: usize,
    pub layer_split: Vec<usize>,
    pub script: String,
}

/// How the strategies' jobs ended.
#[derive(Debug, Clone, Default)]
pub struct JobsOutcome {
    pub succeeded: usize,
    pub failed: Vec<String>,
}

/// The experiment of one run folder, from a config.
pub struct DistributedExperimentPipeline {
    config: DriverConfig,
    run: RunFolder,
    prompt_ids: Vec<String>,
    progress: bool,
}

impl DistributedExperimentPipeline {
    /// `prompt_ids`: the prompts to run (both variants of each); empty: all.
    pub fn new(
        config: DriverConfig,
        run: RunFolder,
        prompt_ids: Vec<String>,
        progress: bool,
    ) -> Self {
        Self {
            config,
            run,
            prompt_ids,
            progress,
        }
    }

    pub fn run_folder(&self) -> &RunFolder {
        &self.run
    }

    pub fn config(&self) -> &DriverConfig {
        &self.config
    }

    /// The run's prompts (checked as `driver prompts check` checks them) and their table rows,
    /// in the prompt table's order.
    pub fn prompts(&self) -> Result<(Vec<PromptRecord>, PromptTable), PipelineError> {
        let counter = TokenCounter::from_file(&self.config.prompts.tokenizer)?;
        let repository = PromptRepository::new(&self.config.prompts.dir, counter);
        let mut table = PromptDataFrameBuilder::new(&repository).table()?;
        let mut records = repository.load_all()?;
        if !self.prompt_ids.is_empty() {
            for id in &self.prompt_ids {
                if !records.iter().any(|r| &r.prompt_id == id) {
                    return Err(PipelineError::Invalid(format!(
                        "prompt ID `{id}` is not in {}",
                        self.config.prompts.dir.display()
                    )));
                }
            }
            records.retain(|r| self.prompt_ids.contains(&r.prompt_id));
            table
                .rows
                .retain(|r| self.prompt_ids.contains(&r.prompt_id));
        }
        Ok((records, table))
    }

    /// The cluster profile as the run uses it: the config's overrides applied, the engine
    /// generating as many tokens as the baseline, from prompts shaped as the baseline's.
    pub fn profile(&self) -> Result<ClusterProfile, PipelineError> {
        let c = &self.config.cluster;
        let mut profile = ClusterProfile::load(&c.profile)?;
        if !c.engine_bin.is_empty() {
            profile.engine.binary = PathBuf::from(&c.engine_bin);
        } else if c.launcher == LauncherKind::Local {
            profile.engine.binary = locate_engine("")?;
        }
        let model = if !c.model.is_empty() {
            Some(c.model.clone())
        } else if self.config.baseline.is_embedded() && c.launcher == LauncherKind::Local {
            // On this machine the strategies run the very model the embedded baseline serves.
            Some(self.config.baseline.model.clone())
        } else {
            None
        };
        if let Some(model) = model {
            profile.model.use_config_json_at(PathBuf::from(model));
        }
        // Jobs run in their attempt's folder: a relative path is taken from where the driver
        // runs (the repository root), as the config's other paths are.
        for path in [&mut profile.model.path, &mut profile.engine.binary] {
            if path.is_relative() && path.components().count() > 1 {
                if let Ok(absolute) = std::path::absolute(&*path) {
                    *path = absolute;
                }
            }
        }
        profile.engine.max_new_tokens = self.config.baseline.max_tokens as usize;
        profile.engine.prompt_format = match self.config.baseline.mode {
            crate::inference::openai_client::ApiMode::Chat => PromptFormat::Chat,
            crate::inference::openai_client::ApiMode::Completions => PromptFormat::Raw,
        };
        profile.check()?;
        Ok(profile)
    }

    /// The strategies to run, each checked against the model and the cluster before anything
    /// is submitted.
    pub fn strategies(
        &self,
        profile: &ClusterProfile,
    ) -> Result<Vec<Box<dyn ParallelismStrategy>>, PipelineError> {
        let model = profile.model.facts()?;
        let names = &self.config.cluster.strategies;
        Ok(if names.is_empty() {
            enabled_strategies(profile, &model)?
        } else {
            names
                .iter()
                .map(|name| strategy_by_name(name, profile, &model))
                .collect::<Result<_, _>>()?
        })
    }

    /// The jobs the run would submit, scripts included; writes nothing.
    pub fn plan(&self) -> Result<Vec<PlannedJob>, PipelineError> {
        let (records, _) = self.prompts()?;
        let profile = self.profile()?;
        let strategies = self.strategies(&profile)?;
        let launch = match self.config.cluster.launcher {
            LauncherKind::Slurm => SlurmLauncher::new().launch_mode(),
            LauncherKind::Local => LocalLauncher::new().launch_mode(),
        };
        let factory = SlurmJobFactory::new(profile, &self.run.dir, "plan")?;
        let variants = SlurmJobFactory::variants(&records)?;
        let mut jobs = Vec::new();
        for strategy in &strategies {
            let args = strategy.engine_args();
            let walltime = strategy.slurm_constraints().walltime;
            for variant in &variants {
                let rendered = factory.render(&JobRequest {
                    strategy: strategy.name(),
                    variant,
                    attempt: 1,
                    args: &args,
                    walltime: walltime.as_deref(),
                    launch,
                })?;
                jobs.push(PlannedJob {
                    strategy: strategy.name().to_string(),
                    variant: variant.clone(),
                    prompts: records
                        .iter()
                        .filter(|r| r.variant.as_str() == variant)
                        .count(),
                    tp: args.tp,
                    pp: args.pp,
                    nodes: args.nodes,
                    ranks_per_node: args.ranks_per_node,
                    layer_split: args.layer_split.clone(),
                    script: rendered.text,
                });
            }
        }
        Ok(jobs)
    }

    /// The baseline over the run's prompts, kept in the run folder; rows already `ok` are not
    /// sent again.
    pub async fn baseline(&self, table: PromptTable) -> Result<BaselineReport, PipelineError> {
        Ok(run_baseline_table(
            &self.config,
            table,
            self.run.baseline_table(),
            false,
            self.progress,
        )
        .await?)
    }

    fn manager_options(&self) -> ManagerOptions {
        let c = &self.config.cluster;
        ManagerOptions {
            poll_min: Duration::from_millis(c.poll_min_ms),
            poll_max: Duration::from_millis(c.poll_max_ms.max(c.poll_min_ms)),
            cancel_on_interrupt: !c.leave_jobs_on_interrupt,
            ..Default::default()
        }
    }

    /// Submits the run's jobs (all strategies at once) without watching them: `driver submit`.
    pub fn submit(&self) -> Result<usize, PipelineError> {
        let (records, _) = self.prompts()?;
        let profile = self.profile()?;
        let strategies = self.strategies(&profile)?;
        match self.config.cluster.launcher {
            LauncherKind::Slurm => {
                self.submit_with(SlurmLauncher::new(), profile, strategies, &records)
            }
            LauncherKind::Local => {
                self.submit_with(LocalLauncher::new(), profile, strategies, &records)
            }
        }
    }

    fn submit_with<L: Launcher>(
        &self,
        launcher: L,
        profile: ClusterProfile,
        strategies: Vec<Box<dyn ParallelismStrategy>>,
        records: &[PromptRecord],
    ) -> Result<usize, PipelineError> {
        let mut manager = SlurmJobManager::open(
            profile,
            &self.run.dir,
            launcher,
            strategies,
            self.manager_options(),
        )?;
        manager.add_jobs(records)?;
        Ok(manager.submit_new()?)
    }

    /// Asks the launcher once where the run's jobs stand and saves it (`driver status`).
    pub fn refresh(&self) -> Result<(), PipelineError> {
        let profile = self.profile()?;
        let strategies = self.strategies(&profile)?;
        let options = self.manager_options();
        match self.config.cluster.launcher {
            LauncherKind::Slurm => {
                SlurmJobManager::open(
                    profile,
                    &self.run.dir,
                    SlurmLauncher::new(),
                    strategies,
                    options,
                )?
                .refresh()?;
            }
            LauncherKind::Local => {
                SlurmJobManager::open(
                    profile,
                    &self.run.dir,
                    LocalLauncher::new(),
                    strategies,
                    options,
                )?
                .refresh()?;
            }
        }
        Ok(())
    }

    /// Runs every strategy in turn over both variants, collecting each finished job into
    /// `collector` and checkpointing the master table.
    pub fn run_jobs(
        &self,
        records: &[PromptRecord],
        collector: &mut ResultCollector,
    ) -> Result<JobsOutcome, PipelineError> {
        let profile = self.profile()?;
        let strategies = self.strategies(&profile)?;
        match self.config.cluster.launcher {
            LauncherKind::Slurm => self.run_jobs_with(
                SlurmLauncher::new(),
                profile,
                strategies,
                records,
                collector,
            ),
            LauncherKind::Local => self.run_jobs_with(
                LocalLauncher::new(),
                profile,
                strategies,
                records,
                collector,
            ),
        }
    }

    fn run_jobs_with<L: Launcher>(
        &self,
        launcher: L,
        profile: ClusterProfile,
        strategies: Vec<Box<dyn ParallelismStrategy>>,
        records: &[PromptRecord],
        collector: &mut ResultCollector,
    ) -> Result<JobsOutcome, PipelineError> {
        let names: Vec<String> = strategies.iter().map(|s| s.name().to_string()).collect();
        let one_at_a_time = profile.cluster.one_host;
        let mut manager = SlurmJobManager::open(
            profile,
            &self.run.dir,
            launcher,
            strategies,
            self.manager_options(),
        )?;
        // Jobs that ended before a restart are collected first (collection is idempotent).
        collector.collect_run(manager.state());
        collector.checkpoint()?;
        let bar = self.job_bar(names.len());
        for name in &names {
            manager.add_strategy_jobs(name, records)?;
            bar.set_message(format!("{name}: running"));
            tracing::info!(strategy = %name, "running the strategy's jobs");
            // Its jobs all at once, or, when every node is this machine, one after another.
            let batches: Vec<Option<String>> = if one_at_a_time {
                let jobs = manager.state().jobs.iter();
                jobs.filter(|job| &job.strategy == name)
                    .map(|job| Some(job.variant.clone()))
                    .collect()
            } else {
                vec![None]
            };
            for variant in &batches {
                let mut checkpoint_error = None;
                manager.run_where(
                    |job| {
                        &job.strategy == name && variant.as_ref().is_none_or(|v| &job.variant == v)
                    },
                    |job, attempt| {
                        let got = collector.collect_attempt(job, attempt);
                        tracing::info!(
                            job = %job.key(),
                            attempt = attempt.number,
                            answered = got.answered,
                            missing = got.missing,
                            "collected"
                        );
                        if let Err(e) = collector.checkpoint() {
                            checkpoint_error = Some(e);
                        }
                    },
                )?;
                if let Some(e) = checkpoint_error {
                    return Err(e.into());
                }
            }
            collector.collect_run(manager.state());
            collector.checkpoint()?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        for problem in collector.problems() {
            tracing::warn!(%problem, "artifact problem");
        }
        let mut outcome = JobsOutcome::default();
        for job in &manager.state().jobs {
            match job.status {
                JobProgress::Succeeded => outcome.succeeded += 1,
                _ => outcome.failed.push(format!(
                    "{}: {}",
                    job.key(),
                    job.why.as_deref().unwrap_or("did not finish")
                )),
            }
        }
        Ok(outcome)
    }

    fn job_bar(&self, strategies: usize) -> ProgressBar {
        if !self.progress || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(strategies as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} strategies {pos}/{len} [{elapsed}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// The tokenizer token agreement splits completions with (see `[scoring]`).
    pub fn scoring_tokenizer(&self) -> PathBuf {
        let s = &self.config.scoring.tokenizer;
        if !s.is_empty() {
            PathBuf::from(s)
        } else if self.config.baseline.url == EMBEDDED {
            PathBuf::from(&self.config.baseline.model).join("tokenizer.json")
        } else {
            self.config.prompts.tokenizer.clone()
        }
    }

    /// A collector for this run's baseline rows and strategies.
    pub fn collector(&self, baseline: Vec<TableRow>) -> Result<ResultCollector, PipelineError> {
        let profile = self.profile()?;
        let strategies = self.strategies(&profile)?;
        Ok(ResultCollector::new(
            baseline,
            strategies.iter().map(|s| s.name().to_string()).collect(),
            self.run.table.clone(),
        ))
    }
}
