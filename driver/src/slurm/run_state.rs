//! A run's job state (`state.json` in the run folder): every job, every attempt, its Slurm id
//! and last state. Saved atomically after every change, so a driver killed at any point and
//! started again knows exactly what it had submitted. A lock file keeps two drivers apart.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::job_factory::JobScript;
use super::state::JobState;
use crate::fsutil::write_atomic;
use crate::parallelism::strategy::{AttemptKind, EngineArgs};

/// The state file's format version.
const VERSION: u32 = 1;

/// Everything the driver knows about a run's jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub version: u32,
    pub run_id: String,
    pub profile: String,
    /// The launcher that owns the jobs (`slurm`, `local`).
    pub launcher: String,
    pub created_unix: u64,
    pub jobs: Vec<JobRecord>,
}

/// One strategy on one prompt variant, over all its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub strategy: String,
    pub variant: String,
    pub status: JobProgress,
    /// Why the job failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    pub attempts: Vec<Attempt>,
}

impl JobRecord {
    /// `strategy/variant`, as jobs are named in messages.
    pub fn key(&self) -> String {
        format!("{}/{}", self.strategy, self.variant)
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobProgress {
    /// An attempt is being submitted or runs, or the next one is about to be decided.
    Active,
    Succeeded,
    Failed,
}

/// Whether an attempt has reached the launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Script written, state saved, submission started: the job may exist without its id here.
    Submitting,
    Submitted,
    Ended,
}

/// One submission of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub kind: AttemptKind,
    /// Why this attempt was started.
    pub why: String,
    pub args: EngineArgs,
    pub script: JobScript,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The end of the job's stderr and stdout, kept when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
    #[serde(default)]
    pub outputs_present: bool,
    /// The completion callback has run for this attempt.
    #[serde(default)]
    pub delivered: bool,
    pub started_unix: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_unix: Option<u64>,
}

/// The state file could not be read, written or locked.
#[derive(Debug, thiserror::Error)]
pub enum RunStateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a run state file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: state version {found}, this driver reads version {VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("run folder {path} is in use by another driver (lock {lock} held)")]
    Locked { path: PathBuf, lock: PathBuf },
}

/// Seconds since the epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl RunState {
    pub fn new(run_id: &str, profile: &str, launcher: &str) -> Self {
        Self {
            version: VERSION,
            run_id: run_id.into(),
            profile: profile.into(),
            launcher: launcher.into(),
            created_unix: now_unix(),
            jobs: Vec::new(),
        }
    }

    /// The state file of a run folder.
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join("state.json")
    }

    /// Reads a run's state; `None` when the run has none yet.
    pub fn load(run_dir: &Path) -> Result<Option<Self>, RunStateError> {
        let path = Self::path(run_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(RunStateError::Io { path, source }),
        };
        let state: Self = serde_json::from_str(&text).map_err(|source| RunStateError::Parse {
            path: path.clone(),
            source,
        })?;
        if state.version != VERSION {
            return Err(RunStateError::Version {
                path,
                found: state.version,
            });
        }
        Ok(Some(state))
    }

    /// Writes the state atomically (temp file, fsync, rename).
    pub fn save(&self, run_dir: &Path) -> Result<(), RunStateError> {
        let path = Self::path(run_dir);
        let text = serde_json::to_vec_pretty(self).map_err(|source| RunStateError::Parse {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &text).map_err(|source| RunStateError::Io { path, source })
    }

    /// The job of a strategy on a variant.
    pub fn job(&self, strategy: &str, variant: &str) -> Option<&JobRecord> {
        self.jobs
            .iter()
            .find(|j| j.strategy == strategy && j.variant == variant)
    }
}

/// An exclusive lock on a run folder, held while a driver watches its jobs; the kernel drops it
/// when the process dies, even by `kill -9`.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    pub fn acquire(run_dir: &Path) -> Result<Self, RunStateError> {
        std::fs::create_dir_all(run_dir).map_err(|source| RunStateError::Io {
            path: run_dir.to_path_buf(),
            source,
        })?;
        let lock = run_dir.join(".driver.lock");
        let file = File::create(&lock).map_err(|source| RunStateError::Io {
            path: lock.clone(),
            source,
        })?;
        // SAFETY: flock(2) on a file descriptor we own; it does not touch memory.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(RunStateError::Locked {
                path: run_dir.to_path_buf(),
                lock,
            });
        }
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_driver_cannot_lock_the_same_run() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use by another driver"), "{err}");
        drop(first);
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RunState::load(dir.path()).unwrap().is_none());
        let state = RunState::new("r1", "local-ci", "slurm");
        state.save(dir.path()).unwrap();
        assert_eq!(RunState::load(dir.path()).unwrap(), Some(state));
        std::fs::write(RunState::path(dir.path()), "{").unwrap();
        let err = RunState::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }
}
