//! Submitting an attempt so that it exists exactly once: look it up by name first (a crash may
//! have cut the last submission short), retry only Slurm's transient errors, and look again
//! after an error (the submission may have gone through before the answer was lost).

use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};

use super::{ManagerError, SlurmJobManager};
use crate::slurm::launcher::{LaunchError, Launcher};
use crate::slurm::run_state::{now_unix, JobProgress, Phase};
use crate::slurm::state::JobState;

impl<L: Launcher> SlurmJobManager<L> {
    /// Submits the job's last attempt (recorded as submitting). `recovering`: the attempt was
    /// found in that state after a restart, so the launcher is asked first whether it already
    /// has it; when that cannot be told, nothing is submitted and the next round asks again.
    pub(super) fn submit(&mut self, index: usize, recovering: bool) -> Result<(), ManagerError> {
        let job = &self.state.jobs[index];
        let key = job.key();
        let Some(attempt) = job.attempts.last() else {
            return Ok(());
        };
        let script = attempt.script.clone();
        let since = attempt.started_unix;
        let launcher = &mut self.launcher;
        let found = if recovering {
            match launcher.find(&script, since) {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(job = %key, error = %e, "cannot tell whether the job was submitted; asking again later");
                    return Ok(());
                }
            }
        } else {
            None
        };
        let result = match found {
            Some(id) => {
                tracing::info!(job = %key, id = %id, "found the job already submitted");
                Ok(id)
            }
            None => {
                let try_submit = || match launcher.submit(&script) {
                    Ok(id) => Ok(id),
                    // The submission may have gone through before the error: look first.
                    Err(e) => match launcher.find(&script, since) {
                        Ok(Some(id)) => Ok(id),
                        _ => Err(e),
                    },
                };
                try_submit
                    .retry(
                        ExponentialBuilder::default()
                            .with_min_delay(Duration::from_secs(1))
                            .with_max_delay(Duration::from_secs(10))
                            .with_max_times(4),
                    )
                    .sleep(std::thread::sleep)
                    .when(is_transient)
                    .notify(|e, wait| tracing::warn!(job = %key, error = %e, ?wait, "submission failed; trying again"))
                    .call()
            }
        };
        let job = &mut self.state.jobs[index];
        let Some(attempt) = job.attempts.last_mut() else {
            return Ok(());
        };
        match result {
            Ok(id) => {
                tracing::info!(job = %key, attempt = attempt.number, id = %id, "submitted");
                attempt.job_id = Some(id);
                attempt.phase = Phase::Submitted;
                attempt.state = Some(JobState::Pending);
            }
            Err(e) => {
                tracing::warn!(job = %key, error = %e, "submission failed");
                attempt.phase = Phase::Ended;
                attempt.ended_unix = Some(now_unix());
                attempt.reason = Some(format!("submission failed: {e}"));
                job.status = JobProgress::Failed;
                job.why = Some(format!(
                    "attempt {}: submission failed: {e}",
                    attempt.number
                ));
            }
        }
        self.save()
    }
}

/// Slurm's answers that mean "try again" rather than "this job is wrong".
fn is_transient(error: &LaunchError) -> bool {
    const TRANSIENT: [&str; 6] = [
        "Socket timed out",
        "Unable to contact",
        "temporarily unavailable",
        "Zero Bytes",
        "Connection refused",
        "try again",
    ];
    match error {
        LaunchError::Failed { stderr, .. } => TRANSIENT.iter().any(|t| stderr.contains(t)),
        LaunchError::Io { .. } => true,
        _ => false,
    }
}
