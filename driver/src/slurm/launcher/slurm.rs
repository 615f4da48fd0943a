//! The Slurm launcher: `sbatch --parsable` to submit, `squeue` for live jobs, `sacct --parsable2`
//! for ended ones (and for jobs `squeue` has forgotten after `MinJobAge`), `scancel` to cancel.
//! Read-only commands are retried with backoff when the controller does not answer.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use backon::{BlockingRetryable, ExponentialBuilder};

use super::{run_command, JobStatus, LaunchError, Launcher};
use crate::slurm::job_factory::{JobScript, LaunchMode};
use crate::slurm::state::{parse_exit_code, JobState};

/// Submits and watches jobs through the Slurm commands on PATH (`SLURM_CONF` as the caller set it).
#[derive(Debug)]
pub struct SlurmLauncher {
    /// How long a job `squeue` calls ended may lack its final `sacct` record (slurmdbd lags)
    /// before squeue's word is taken without an exit code.
    accounting_grace: Duration,
    /// Tries of an idempotent command (squeue, sacct, scancel) before its error is returned.
    command_tries: usize,
    /// Jobs squeue says ended whose sacct record is not final yet: since when.
    awaiting_accounting: HashMap<String, Instant>,
}

impl Default for SlurmLauncher {
    fn default() -> Self {
        Self {
            accounting_grace: Duration::from_secs(30),
            command_tries: 4,
            awaiting_accounting: HashMap::new(),
        }
    }
}

impl SlurmLauncher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs an idempotent query, retrying with backoff while it fails.
    fn query(&self, make: impl Fn() -> Command) -> Result<String, LaunchError> {
        let run = || run_command(&mut make());
        let output = run
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(8))
                    .with_max_times(self.command_tries.saturating_sub(1)),
            )
            .sleep(std::thread::sleep)
            .when(|e| matches!(e, LaunchError::Failed { .. }))
            .notify(
                |e, wait| tracing::warn!(error = %e, ?wait, "Slurm command failed; trying again"),
            )
            .call()?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `squeue` over these ids: `id -> (state, reason, nodes)`. squeue fails when it knows none
    /// of the ids ("Invalid job id specified"); that is an empty answer, not an error.
    fn squeue(&self, ids: &[&str]) -> Result<HashMap<String, JobStatus>, LaunchError> {
        let joined = ids.join(",");
        let result = self.query(|| {
            let mut c = Command::new("squeue");
            c.args(["-h", "-t", "all", "-o", "%i|%T|%r|%N", "-j", &joined]);
            c
        });
        let text = match result {
            Ok(text) => text,
            Err(LaunchError::Failed { stderr, .. }) if stderr.contains("Invalid job id") => {
                String::new()
            }
            Err(e) => return Err(e),
        };
        let mut out = HashMap::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split('|').collect();
            if let [id, state, reason, nodes] = fields[..] {
                let mut status = JobStatus::new(JobState::parse(state));
                status.reason = non_empty(reason).filter(|r| *r != "None").map(String::from);
                status.nodes = non_empty(nodes).map(String::from);
                out.insert(id.trim().to_string(), status);
            }
        }
        Ok(out)
    }

    /// `sacct --parsable2` over these ids (allocations only, the last record of each id).
    fn sacct(&self, ids: &[&str]) -> Result<HashMap<String, JobStatus>, LaunchError> {
        let joined = ids.join(",");
        let text = self.query(|| {
            let mut c = Command::new("sacct");
            c.args([
                "-X",
                "-n",
                "--parsable2",
                "-o",
                "JobID,State,ExitCode,NodeList,Reason",
                "-j",
                &joined,
            ]);
            c
        })?;
        let mut out = HashMap::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split('|').collect();
            if let [id, state, exit, nodes, reason] = fields[..] {
                let (exit_code, signal) = parse_exit_code(exit);
                out.insert(
                    id.trim().to_string(),
                    JobStatus {
                        state: JobState::parse(state),
                        exit_code,
                        signal,
                        nodes: non_empty(nodes)
                            .filter(|n| *n != "None assigned")
                            .map(String::from),
                        reason: non_empty(reason).filter(|r| *r != "None").map(String::from),
                    },
                );
            }
        }
        Ok(out)
    }
}

fn non_empty(s: &str) -> Option<&str> {
    Some(s.trim()).filter(|s| !s.is_empty())
}

impl Launcher for SlurmLauncher {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn launch_mode(&self) -> LaunchMode {
        LaunchMode::Srun
    }

    fn submit(&mut self, job: &JobScript) -> Result<String, LaunchError> {
        let mut command = Command::new("sbatch");
        command
            .arg("--parsable")
            .arg(&job.script)
            .current_dir(&job.dir);
        let output = run_command(&mut command)?;
        let text = String::from_utf8_lossy(&output.stdout);
        // `--parsable` prints `id` or `id;cluster`.
        let id = text.trim().split(';').next().unwrap_or("").trim();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
            return Err(LaunchError::Unexpected {
                command: format!("sbatch --parsable {}", job.script.display()),
                output: text.into_owned(),
            });
        }
        Ok(id.to_string())
    }

    fn find(&mut self, job: &JobScript, since_unix: u64) -> Result<Option<String>, LaunchError> {
        let name = job.job_name.clone();
        let live = self.query(|| {
            let mut c = Command::new("squeue");
            c.args(["-h", "-t", "all", "-o", "%i", "-n", &name]);
            c
        })?;
        let since = format_sacct_time(since_unix.saturating_sub(60));
        let accounted = self.query(|| {
            let mut c = Command::new("sacct");
            c.args([
                "-X",
                "-n",
                "--parsable2",
                "-o",
                "JobID",
                "--name",
                &name,
                "-S",
                &since,
            ]);
            c
        })?;
        let mut ids: Vec<u64> = live
            .lines()
            .chain(accounted.lines())
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() > 1 {
            tracing::warn!(job = %name, ?ids, "several Slurm jobs carry this name; adopting the latest");
        }
        Ok(ids.last().map(|id| id.to_string()))
    }

    fn poll(
        &mut self,
        jobs: &[(&str, &JobScript)],
    ) -> Result<HashMap<String, JobStatus>, LaunchError> {
        if jobs.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<&str> = jobs.iter().map(|(id, _)| *id).collect();
        let mut statuses = self.squeue(&ids)?;
        // Ended or forgotten jobs: sacct has the exit code and the final word.
        let ask: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| statuses.get(*id).is_none_or(|s| s.state.is_terminal()))
            .collect();
        if ask.is_empty() {
            return Ok(statuses);
        }
        let accounted = self.sacct(&ask)?;
        for id in ask {
            let queued = statuses.remove(id);
            match (queued, accounted.get(id)) {
                (_, Some(final_status)) if final_status.state.is_terminal() => {
                    self.awaiting_accounting.remove(id);
                    statuses.insert(id.to_string(), final_status.clone());
                }
                (Some(queued), _) => {
                    // squeue says it ended; give slurmdbd a moment to record the exit code.
                    let since = *self
                        .awaiting_accounting
                        .entry(id.to_string())
                        .or_insert_with(Instant::now);
                    if since.elapsed() >= self.accounting_grace {
                        tracing::warn!(job = id, "no final sacct record; taking squeue's state");
                        self.awaiting_accounting.remove(id);
                        statuses.insert(id.to_string(), queued);
                    } else {
                        let mut waiting = queued;
                        waiting.state = JobState::Running;
                        statuses.insert(id.to_string(), waiting);
                    }
                }
                (None, Some(status)) => {
                    statuses.insert(id.to_string(), status.clone());
                }
                (None, None) => {}
            }
        }
        Ok(statuses)
    }

    fn cancel(&mut self, jobs: &[(&str, &JobScript)]) -> Result<(), LaunchError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = jobs.iter().map(|(id, _)| id.to_string()).collect();
        self.query(|| {
            let mut c = Command::new("scancel");
            c.args(&ids);
            c
        })?;
        Ok(())
    }
}

/// A Unix time as sacct's `-S` wants it (local time, `YYYY-MM-DDTHH:MM:SS`).
fn format_sacct_time(unix: u64) -> String {
    chrono::DateTime::from_timestamp(unix as i64, 0)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| "2000-01-01T00:00:00".into())
}
