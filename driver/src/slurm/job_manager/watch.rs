//! Watching: one poll over every submitted attempt, recording what changed (with the log tail of
//! a job that ended without its outputs), and stopping on Ctrl-C.

use std::path::{Path, PathBuf};

use super::{ManagerError, SlurmJobManager};
use crate::slurm::job_factory::JobScript;
use crate::slurm::launcher::{JobStatus, LaunchError, Launcher};
use crate::slurm::run_state::{now_unix, JobProgress, Phase};
use crate::slurm::state::JobState;

impl<L: Launcher> SlurmJobManager<L> {
    /// Polls every submitted attempt and records what changed; true when anything did.
    pub(super) fn poll(&mut self) -> Result<bool, LaunchError> {
        let watched: Vec<(usize, String)> = self
            .state
            .jobs
            .iter()
            .enumerate()
            .filter_map(|(i, j)| {
                let a = j.attempts.last()?;
                (a.phase == Phase::Submitted).then(|| Some((i, a.job_id.clone()?)))?
            })
            .collect();
        if watched.is_empty() {
            return Ok(false);
        }
        let pairs: Vec<(&str, &JobScript)> = watched
            .iter()
            .filter_map(|(i, id)| Some((id.as_str(), &self.state.jobs[*i].attempts.last()?.script)))
            .collect();
        let statuses = self.launcher.poll(&pairs)?;
        let mut changed = false;
        for (index, id) in watched {
            if let Some(status) = statuses.get(&id) {
                changed |= self.record(index, &id, status);
            }
        }
        if changed {
            if let Err(e) = self.save() {
                tracing::warn!(error = %e, "cannot save the run state");
            }
        }
        Ok(changed)
    }

    /// Records a polled status on the job's last attempt; true when it changed.
    pub(super) fn record(&mut self, index: usize, id: &str, status: &JobStatus) -> bool {
        let tail_lines = self.options.log_tail_lines;
        let job = &mut self.state.jobs[index];
        let key = job.key();
        let Some(attempt) = job.attempts.last_mut() else {
            return false;
        };
        let unchanged = attempt.state == Some(status.state)
            && attempt.nodes == status.nodes
            && attempt.reason == status.reason;
        if unchanged {
            return false;
        }
        attempt.state = Some(status.state);
        attempt.nodes = status.nodes.clone();
        attempt.reason = status.reason.clone();
        if !status.state.is_terminal() {
            tracing::info!(job = %key, id, state = %status.state, "job state");
            return true;
        }
        attempt.phase = Phase::Ended;
        attempt.ended_unix = Some(now_unix());
        attempt.exit_code = status.exit_code;
        attempt.signal = status.signal;
        attempt.outputs_present = attempt.script.outputs_present();
        if status.state != JobState::Completed || !attempt.outputs_present {
            attempt.log_tail = Some(log_tail(&attempt.script.log_paths(id), tail_lines));
            tracing::warn!(
                job = %key, id, state = %status.state, exit_code = ?status.exit_code,
                outputs = attempt.outputs_present, "job ended without its outputs"
            );
        } else {
            tracing::info!(job = %key, id, "job completed");
        }
        true
    }

    /// Cancels the run's jobs (or leaves them), records it, and says which.
    pub(super) fn stop_on_interrupt(&mut self) -> ManagerError {
        let mut in_flight = Vec::new();
        for (index, job) in self.state.jobs.iter().enumerate() {
            if let Some(a) = job.attempts.last() {
                match (a.phase, &a.job_id) {
                    (Phase::Submitted, Some(id)) => in_flight.push((index, id.clone())),
                    (Phase::Submitting, _) => {
                        if let Ok(Some(id)) = self.launcher.find(&a.script, a.started_unix) {
                            in_flight.push((index, id));
                        }
                    }
                    _ => {}
                }
            }
        }
        let ids: Vec<String> = in_flight.iter().map(|(_, id)| id.clone()).collect();
        if !self.options.cancel_on_interrupt {
            tracing::warn!(jobs = ?ids, "interrupted: leaving the run's jobs running");
            let _ = self.save();
            return ManagerError::Interrupted {
                cancelled: Vec::new(),
                left: ids,
            };
        }
        tracing::warn!(jobs = ?ids, "interrupted: cancelling the run's jobs");
        let pairs: Vec<(&str, &JobScript)> = in_flight
            .iter()
            .filter_map(|(i, id)| Some((id.as_str(), &self.state.jobs[*i].attempts.last()?.script)))
            .collect();
        if let Err(e) = self.launcher.cancel(&pairs) {
            tracing::warn!(error = %e, "cancelling failed");
        }
        for (index, id) in &in_flight {
            let job = &mut self.state.jobs[*index];
            if let Some(a) = job.attempts.last_mut() {
                a.job_id = Some(id.clone());
                a.phase = Phase::Ended;
                a.state = Some(JobState::Cancelled);
                a.reason = Some("cancelled by the driver (interrupted)".into());
                a.ended_unix = Some(now_unix());
            }
            job.status = JobProgress::Failed;
            job.why = Some("interrupted: cancelled by the driver".into());
        }
        if let Err(e) = self.save() {
            tracing::warn!(error = %e, "cannot save the run state");
        }
        ManagerError::Interrupted {
            cancelled: ids,
            left: Vec::new(),
        }
    }
}

/// The last `lines` lines of each log file, labelled.
fn log_tail(paths: &[PathBuf], lines: usize) -> String {
    let mut out = String::new();
    for path in paths {
        let text = read_end(path, 64 * 1024);
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        out.push_str(&format!("==> {} <==\n", path.display()));
        for line in tail.iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Up to `max` bytes from the end of a file (empty if it cannot be read).
fn read_end(path: &Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}
