//! Launchers: how a job script becomes a running job. `slurm` submits it with `sbatch` and
//! watches `squeue`/`sacct`; `local` runs it on this machine with `mpirun` in place of `srun`.
//! Both report the same states, so the job manager and the pipeline do not know which one runs.

mod local;
mod slurm;

pub use local::LocalLauncher;
pub use slurm::SlurmLauncher;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use super::job_factory::{JobScript, LaunchMode};
use super::state::JobState;

/// Where a job stands, as a launcher last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub state: JobState,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// The nodes the job ran on (`node[1-2]`), when known.
    pub nodes: Option<String>,
    /// Slurm's reason (why pending, why it failed), when it gave one.
    pub reason: Option<String>,
}

impl JobStatus {
    pub fn new(state: JobState) -> Self {
        Self {
            state,
            exit_code: None,
            signal: None,
            nodes: None,
            reason: None,
        }
    }
}

/// Submits, watches and cancels job scripts.
pub trait Launcher {
    /// `slurm` or `local`: recorded in the run state, which refuses to be reattached by another.
    fn name(&self) -> &'static str;
    /// How job scripts for this launcher start their ranks.
    fn launch_mode(&self) -> LaunchMode;
    /// Starts the job; returns its id.
    fn submit(&mut self, job: &JobScript) -> Result<String, LaunchError>;
    /// The id of a job already started from this script (a driver that died between submitting
    /// and recording the id looks here before submitting again); `since_unix` bounds the search.
    fn find(&mut self, job: &JobScript, since_unix: u64) -> Result<Option<String>, LaunchError>;
    /// The states of these jobs; an id missing from the answer is not known (yet).
    fn poll(
        &mut self,
        jobs: &[(&str, &JobScript)],
    ) -> Result<HashMap<String, JobStatus>, LaunchError>;
    /// Cancels these jobs.
    fn cancel(&mut self, jobs: &[(&str, &JobScript)]) -> Result<(), LaunchError>;
}

/// A launcher command that failed; names the command and what it said.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot run `{command}`: {source} (is it installed and on PATH?)")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` printed something unexpected: {output:?}")]
    Unexpected { command: String, output: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs a command to completion; a non-zero exit is an error carrying its stderr.
pub(crate) fn run_command(command: &mut Command) -> Result<Output, LaunchError> {
    let shown = show(command);
    tracing::debug!(command = %shown, "running");
    let output = command.output().map_err(|source| LaunchError::Spawn {
        command: shown.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(LaunchError::Failed {
            command: shown,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output)
}

/// A command as one would type it (for messages).
fn show(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "))
}
