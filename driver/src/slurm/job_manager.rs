//! `SlurmJobManager`: submits a run's jobs through a launcher, watches them with backoff, hands
//! each finished job with its outputs to a callback, and asks the job's strategy what to run
//! next (retry, requeue, sweep, give up). The run's state is saved after every change; an
//! attempt is recorded as `submitting` before it is submitted, so a driver killed at any moment
//! finds its jobs again (by id, or by job name) and never submits one twice.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::job_factory::{JobFactoryError, JobPrompt, JobRequest, SlurmJobFactory};
use super::launcher::{LaunchError, Launcher};
use super::profile::ClusterProfile;
use super::run_state::{
    now_unix, Attempt, JobProgress, JobRecord, Phase, RunLock, RunState, RunStateError,
};
use super::state::JobState;
use crate::parallelism::model::ModelFacts;
use crate::parallelism::rules::validate_layout;
use crate::parallelism::strategy::{
    AttemptKind, EngineArgs, JobOutcome, NextStep, ParallelismStrategy, StrategyError,
};

mod signals;
mod submit;
mod summary;
mod watch;

use signals::SignalGuard;
pub use summary::{summarize, JobSummary, RunSummary};

/// How the manager watches and what it does on Ctrl-C.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// Poll interval right after a change; it grows by half each quiet poll up to `poll_max`.
    pub poll_min: Duration,
    pub poll_max: Duration,
    /// On Ctrl-C (SIGINT) or SIGTERM: cancel the run's own jobs (true) or leave them running.
    pub cancel_on_interrupt: bool,
    /// Install the SIGINT/SIGTERM handlers while `run` watches (off: the caller sets the flag).
    pub handle_signals: bool,
    /// Lines of each log kept from a failed job.
    pub log_tail_lines: usize,
    /// Consecutive failed polls (the controller unreachable) before the run stops with an error.
    pub max_poll_errors: u32,
    /// Templates to use instead of the built-in ones (`slurm/templates/`).
    pub template_dir: Option<PathBuf>,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        Self {
            poll_min: Duration::from_secs(1),
            poll_max: Duration::from_secs(30),
            cancel_on_interrupt: true,
            handle_signals: true,
            log_tail_lines: 20,
            max_poll_errors: 30,
            template_dir: None,
        }
    }
}

/// Why the manager stopped before every job ended.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    State(#[from] RunStateError),
    #[error(transparent)]
    Factory(#[from] JobFactoryError),
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    #[error("polling the jobs failed {count} times in a row: {source}")]
    Poll { count: u32, source: LaunchError },
    #[error("run {run_dir}: {reason}")]
    Run { run_dir: PathBuf, reason: String },
    #[error("interrupted: cancelled jobs [{}], left running [{}]", cancelled.join(", "), left.join(", "))]
    Interrupted {
        cancelled: Vec<String>,
        left: Vec<String>,
    },
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Submits and watches the jobs of one run folder.
pub struct SlurmJobManager<L: Launcher> {
    launcher: L,
    factory: SlurmJobFactory,
    model: ModelFacts,
    strategies: Vec<Box<dyn ParallelismStrategy>>,
    state: RunState,
    options: ManagerOptions,
    interrupt: Arc<AtomicBool>,
    _lock: RunLock,
}

impl<L: Launcher> SlurmJobManager<L> {
    /// Opens the run in `run_dir`: reattaches to its saved state, or starts a new run. Takes the
    /// run's lock, so a second driver on the same run is refused.
    pub fn open(
        profile: ClusterProfile,
        run_dir: &Path,
        launcher: L,
        strategies: Vec<Box<dyn ParallelismStrategy>>,
        options: ManagerOptions,
    ) -> Result<Self, ManagerError> {
        let lock = RunLock::acquire(run_dir)?;
        let model = profile.model.facts()?;
        let state = match RunState::load(run_dir)? {
            Some(state) => {
                if state.launcher != launcher.name() {
                    return Err(ManagerError::Run {
                        run_dir: run_dir.to_path_buf(),
                        reason: format!(
                            "its jobs belong to the {} launcher, not {}",
                            state.launcher,
                            launcher.name()
                        ),
                    });
                }
                tracing::info!(run = %state.run_id, jobs = state.jobs.len(), "reattaching to the run");
                state
            }
            None => {
                let run_id = new_run_id();
                let state = RunState::new(&run_id, &profile.name, launcher.name());
                state.save(run_dir)?;
                state
            }
        };
        let mut factory = SlurmJobFactory::new(profile, run_dir, &state.run_id)?;
        if let Some(dir) = &options.template_dir {
            factory = factory.with_template_dir(dir)?;
        }
        for job in &state.jobs {
            if !strategies.iter().any(|s| s.name() == job.strategy) {
                return Err(ManagerError::Run {
                    run_dir: run_dir.to_path_buf(),
                    reason: format!(
                        "job {} needs strategy {}, which was not given",
                        job.key(),
                        job.strategy
                    ),
                });
            }
        }
        Ok(Self {
            launcher,
            factory,
            model,
            strategies,
            state,
            options,
            interrupt: Arc::new(AtomicBool::new(false)),
            _lock: lock,
        })
    }

    /// The run's state as last saved.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    pub fn factory(&self) -> &SlurmJobFactory {
        &self.factory
    }

    /// Set it to stop `run` as Ctrl-C would.
    pub fn interrupt_flag(&self) -> Arc<AtomicBool> {
        self.interrupt.clone()
    }

    /// Adds one job per strategy and prompt variant, writing each job's prompt shard. Jobs the
    /// run already has are kept as they are (a restarted driver submits nothing again).
    pub fn add_jobs<P: JobPrompt>(&mut self, prompts: &[P]) -> Result<usize, ManagerError> {
        self.add_jobs_where(prompts, |_| true)
    }

    /// [`add_jobs`](Self::add_jobs) for one strategy only (the pipeline runs them one by one).
    pub fn add_strategy_jobs<P: JobPrompt>(
        &mut self,
        strategy: &str,
        prompts: &[P],
    ) -> Result<usize, ManagerError> {
        self.add_jobs_where(prompts, |name| name == strategy)
    }

    fn add_jobs_where<P: JobPrompt>(
        &mut self,
        prompts: &[P],
        wanted: impl Fn(&str) -> bool,
    ) -> Result<usize, ManagerError> {
        let variants = SlurmJobFactory::variants(prompts)?;
        let mut added = 0;
        for strategy in self.strategies.iter().filter(|s| wanted(s.name())) {
            for variant in &variants {
                if self.state.job(strategy.name(), variant).is_some() {
                    continue;
                }
                self.factory
                    .write_prompt_shard(strategy.name(), variant, prompts)?;
                self.state.jobs.push(JobRecord {
                    strategy: strategy.name().into(),
                    variant: variant.clone(),
                    status: JobProgress::Active,
                    why: None,
                    attempts: Vec::new(),
                });
                added += 1;
            }
        }
        self.save()?;
        Ok(added)
    }

    fn save(&self) -> Result<(), ManagerError> {
        Ok(self.state.save(self.factory.run_dir())?)
    }

    fn strategy(&self, name: &str) -> &dyn ParallelismStrategy {
        // `open` checked that every job's strategy is present.
        self.strategies
            .iter()
            .find(|s| s.name() == name)
            .map(|s| s.as_ref())
            .unwrap_or_else(|| unreachable!("strategy {name} checked in open"))
    }

    /// Watches until every job has succeeded or failed; `on_complete` runs once per attempt that
    /// ended COMPLETED with its outputs present (again after a restart if it had not returned).
    pub fn run(
        &mut self,
        on_complete: impl FnMut(&JobRecord, &Attempt),
    ) -> Result<RunSummary, ManagerError> {
        self.run_where(|_| true, on_complete)
    }

    /// Submits the run's jobs that have no attempt yet, without watching them (`driver submit`).
    /// Returns how many were submitted.
    pub fn submit_new(&mut self) -> Result<usize, ManagerError> {
        let mut submitted = 0;
        for index in 0..self.state.jobs.len() {
            let job = &self.state.jobs[index];
            if job.status == JobProgress::Active && job.attempts.is_empty() {
                let args = self.strategy(&job.strategy).engine_args();
                self.start_attempt(index, args, AttemptKind::First, "first attempt".into())?;
                submitted += 1;
            }
        }
        Ok(submitted)
    }

    /// Asks the launcher once where the run's jobs stand and saves what changed (`driver
    /// status`); submits nothing and decides nothing.
    pub fn refresh(&mut self) -> Result<RunSummary, ManagerError> {
        self.poll()
            .map_err(|source| ManagerError::Poll { count: 1, source })?;
        self.save()?;
        Ok(self.summary())
    }

    /// [`run`](Self::run) over the jobs `wanted` accepts (the pipeline watches one strategy's
    /// jobs at a time); the others are left as they are.
    pub fn run_where(
        &mut self,
        wanted: impl Fn(&JobRecord) -> bool,
        mut on_complete: impl FnMut(&JobRecord, &Attempt),
    ) -> Result<RunSummary, ManagerError> {
        let _signals = if self.options.handle_signals {
            Some(SignalGuard::install(&self.interrupt)?)
        } else {
            None
        };
        let (poll_min, poll_max) = (self.options.poll_min, self.options.poll_max);
        let backoff = move || {
            ExponentialBuilder::default()
                .with_min_delay(poll_min)
                .with_max_delay(poll_max)
                .with_factor(1.5)
                .without_max_times()
                .build()
        };
        let mut delays = backoff();
        let mut poll_errors = 0;
        loop {
            if self.interrupt.load(Ordering::SeqCst) {
                return Err(self.stop_on_interrupt());
            }
            let mut changed = false;
            for index in 0..self.state.jobs.len() {
                if wanted(&self.state.jobs[index]) {
                    changed |= self.advance(index, &mut on_complete)?;
                }
            }
            if self
                .state
                .jobs
                .iter()
                .filter(|j| wanted(j))
                .all(|j| j.status != JobProgress::Active)
            {
                break;
            }
            match self.poll() {
                Ok(polled) => {
                    poll_errors = 0;
                    changed |= polled;
                }
                Err(source) => {
                    poll_errors += 1;
                    tracing::warn!(error = %source, count = poll_errors, "polling failed");
                    if poll_errors >= self.options.max_poll_errors {
                        return Err(ManagerError::Poll {
                            count: poll_errors,
                            source,
                        });
                    }
                }
            }
            if changed {
                delays = backoff();
            }
            let wait = delays.next().unwrap_or(poll_max);
            self.sleep(wait);
        }
        Ok(self.summary())
    }

    /// Sleeps, waking early on an interrupt.
    fn sleep(&self, wait: Duration) {
        let step = Duration::from_millis(100);
        let mut left = wait;
        while !left.is_zero() && !self.interrupt.load(Ordering::SeqCst) {
            let nap = left.min(step);
            std::thread::sleep(nap);
            left -= nap;
        }
    }

    /// Moves one job forward: submits its next attempt, recovers one being submitted, delivers a
    /// finished one, or decides what follows it. True when anything changed.
    fn advance(
        &mut self,
        index: usize,
        on_complete: &mut impl FnMut(&JobRecord, &Attempt),
    ) -> Result<bool, ManagerError> {
        let job = &self.state.jobs[index];
        if job.status != JobProgress::Active {
            return Ok(false);
        }
        let Some(last) = job.attempts.last() else {
            let args = self.strategy(&job.strategy).engine_args();
            self.start_attempt(index, args, AttemptKind::First, "first attempt".into())?;
            return Ok(true);
        };
        match last.phase {
            Phase::Submitted => Ok(false),
            Phase::Submitting => {
                self.submit(index, true)?;
                Ok(true)
            }
            Phase::Ended => {
                if last.state == Some(JobState::Completed)
                    && last.outputs_present
                    && !last.delivered
                {
                    on_complete(job, last);
                    if let Some(a) = self.state.jobs[index].attempts.last_mut() {
                        a.delivered = true;
                    }
                    self.save()?;
                }
                self.decide(index)?;
                Ok(true)
            }
        }
    }

    /// Asks the job's strategy what follows its last attempt, and does it.
    fn decide(&mut self, index: usize) -> Result<(), ManagerError> {
        let job = &self.state.jobs[index];
        let Some(last) = job.attempts.last() else {
            return Ok(());
        };
        let Some(state) = last.state else {
            return Ok(());
        };
        // Count failures since the job's last fresh start (its first attempt or a sweep point).
        let since = job
            .attempts
            .iter()
            .rposition(|a| matches!(a.kind, AttemptKind::First | AttemptKind::Sweep))
            .unwrap_or(0);
        let recent = &job.attempts[since..];
        let failures = recent
            .iter()
            .filter(|a| {
                matches!(a.state, Some(JobState::Failed | JobState::OutOfMemory))
                    || (a.state == Some(JobState::Completed) && !a.outputs_present)
            })
            .count() as u32;
        let requeues = recent
            .iter()
            .filter(|a| a.kind == AttemptKind::Requeue)
            .count() as u32;
        let outcome = JobOutcome {
            state,
            exit_code: last.exit_code,
            args: last.args.clone(),
            failures,
            requeues,
            outputs_present: last.outputs_present,
            policy: self.factory.profile().retry,
        };
        let key = job.key();
        match self.strategy(&job.strategy).next_config(&outcome) {
            NextStep::Done => {
                tracing::info!(job = %key, "job done");
                let job = &mut self.state.jobs[index];
                job.status = JobProgress::Succeeded;
                self.save()
            }
            NextStep::GiveUp { why } => {
                tracing::warn!(job = %key, %why, "job failed");
                let job = &mut self.state.jobs[index];
                job.status = JobProgress::Failed;
                job.why = Some(why);
                self.save()
            }
            NextStep::Run { args, kind, why } => {
                tracing::info!(job = %key, ?kind, %why, "running the job again");
                self.start_attempt(index, args, kind, why)
            }
        }
    }

    /// Renders and records the next attempt, then submits it.
    fn start_attempt(
        &mut self,
        index: usize,
        args: EngineArgs,
        kind: AttemptKind,
        why: String,
    ) -> Result<(), ManagerError> {
        let job = &self.state.jobs[index];
        let strategy = self.strategy(&job.strategy);
        // A strategy's changed settings are checked like its first ones.
        if let Err(e) = validate_layout(
            strategy.name(),
            &args,
            &self.model,
            &self.factory.profile().cluster,
        ) {
            let job = &mut self.state.jobs[index];
            job.status = JobProgress::Failed;
            job.why = Some(format!("next attempt refused: {e}"));
            return self.save();
        }
        let walltime = strategy.slurm_constraints().walltime;
        let number = job.attempts.len() as u32 + 1;
        let rendered = self.factory.write(&JobRequest {
            strategy: &job.strategy,
            variant: &job.variant,
            attempt: number,
            args: &args,
            walltime: walltime.as_deref(),
            launch: self.launcher.launch_mode(),
        })?;
        self.state.jobs[index].attempts.push(Attempt {
            number,
            kind,
            why,
            args,
            script: rendered.script,
            phase: Phase::Submitting,
            job_id: None,
            state: None,
            exit_code: None,
            signal: None,
            nodes: None,
            reason: None,
            log_tail: None,
            outputs_present: false,
            delivered: false,
            started_unix: now_unix(),
            ended_unix: None,
        });
        // Saved before submitting: if the driver dies during sbatch, the restart looks the job up.
        self.save()?;
        self.submit(index, false)
    }

    /// Where every job stands.
    pub fn summary(&self) -> RunSummary {
        summarize(&self.state)
    }
}

/// A run id: the time and this process, unique enough for job names and folders.
fn new_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "r{:x}{:04x}",
        now.as_secs(),
        (now.subsec_micros() ^ std::process::id()) & 0xffff
    )
}

#[cfg(test)]
mod tests;
