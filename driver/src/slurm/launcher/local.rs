//! The local launcher: runs a job script on this machine with bash, its ranks started by
//! `mpirun` instead of `srun`, under `timeout` for the walltime. A small wrapper records the
//! script's exit status in the attempt's folder, so the states are Slurm's (COMPLETED, FAILED,
//! TIMEOUT, CANCELLED, NODE_FAIL for a job that vanished) and a restarted driver reattaches.
//!
//! Files per job, in the attempt's folder: `local-<id>.pid` (the wrapper), `local-<id>.pgid` (the
//! job's process group), `local-<id>.status` (the exit code, written when the script ends),
//! `local-<id>.cancelled`, and the logs `job-<id>.out|err`.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{JobStatus, LaunchError, Launcher};
use crate::fsutil::write_atomic;
use crate::slurm::job_factory::{JobScript, LaunchMode};
use crate::slurm::state::JobState;

/// Runs the script under `timeout` (which makes itself a process group leader: the group holds
/// the script, mpirun and the ranks) and records that group's pid, then the exit status, each
/// atomically. Arguments: script, stdout, stderr, status file, walltime in seconds, group file.
const WRAPPER: &str = r#"timeout --signal=TERM --kill-after=10 "$5" bash "$1" >"$2" 2>"$3" </dev/null &
echo $! >"$6.tmp" && mv "$6.tmp" "$6"
wait $!
code=$?
printf '%s\n' "$code" >"$4.tmp" && mv "$4.tmp" "$4""#;

/// `timeout`'s exit status when the walltime ran out.
const TIMEOUT_STATUS: i32 = 124;

/// How long a cancelled job gets after SIGTERM before SIGKILL.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Runs jobs on this machine; ranks come from `mpirun`.
#[derive(Debug, Default)]
pub struct LocalLauncher {
    /// Jobs this process started, reaped as they end (others were started by an earlier driver).
    children: HashMap<String, Child>,
    last_id: u64,
}

impl LocalLauncher {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new id: milliseconds since the epoch, unique within this process and across restarts.
    fn next_id(&mut self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        self.last_id = now.max(self.last_id + 1);
        self.last_id.to_string()
    }
}

fn file(job: &JobScript, id: &str, ext: &str) -> PathBuf {
    job.dir.join(format!("local-{id}.{ext}"))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LaunchError + '_ {
    move |source| LaunchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The pid recorded for a job, if its process still runs this job (not a reused pid).
fn live_pid(job: &JobScript, id: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(file(job, id, "pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let status = file(job, id, "status");
    let needle = status.as_os_str().as_encoded_bytes();
    let alive = cmdline.windows(needle.len()).any(|w| w == needle);
    // A zombie (ended, not yet reaped) is not running.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let zombie = state
        .rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('Z'));
    (alive && !zombie).then_some(pid)
}

/// The job's process group (the `timeout` leading it), once the wrapper has recorded it.
fn job_group(job: &JobScript, id: &str) -> Option<i32> {
    let text = std::fs::read_to_string(file(job, id, "pgid")).ok()?;
    text.trim().parse().ok().filter(|&g: &i32| g > 1)
}

impl Launcher for LocalLauncher {
    fn name(&self) -> &'static str {
        "local"
    }

    fn launch_mode(&self) -> LaunchMode {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let as_root = unsafe { libc::geteuid() } == 0;
        LaunchMode::Mpirun { as_root }
    }

    fn submit(&mut self, job: &JobScript) -> Result<String, LaunchError> {
        let id = self.next_id();
        let [stdout, stderr] = job.log_paths(&id);
        let status = file(job, &id, "status");
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(WRAPPER)
            .arg("shardlab-local-job")
            .arg(&job.script)
            .arg(&stdout)
            .arg(&stderr)
            .arg(&status)
            .arg(job.walltime_secs.max(1).to_string())
            .arg(file(job, &id, "pgid"))
            .current_dir(&job.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: Ctrl-C at the driver's terminal does not reach the job.
            .process_group(0);
        let child = command.spawn().map_err(|source| LaunchError::Spawn {
            command: format!("bash {}", job.script.display()),
            source,
        })?;
        let pid_path = file(job, &id, "pid");
        write_atomic(&pid_path, format!("{}\n", child.id()).as_bytes())
            .map_err(io_error(&pid_path))?;
        self.children.insert(id.clone(), child);
        Ok(id)
    }

    fn find(&mut self, job: &JobScript, _since_unix: u64) -> Result<Option<String>, LaunchError> {
        let Ok(entries) = std::fs::read_dir(&job.dir) else {
            return Ok(None);
        };
        let mut ids: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("local-")?
                    .strip_suffix(".pid")?
                    .parse()
                    .ok()
            })
            .collect();
        ids.sort_unstable();
        Ok(ids.last().map(|id| id.to_string()))
    }

    fn poll(
        &mut self,
        jobs: &[(&str, &JobScript)],
    ) -> Result<HashMap<String, JobStatus>, LaunchError> {
        let mut out = HashMap::new();
        for &(id, job) in jobs {
            // Reap our own children, so an ended one is not mistaken for a live process.
            if let Some(child) = self.children.get_mut(id) {
                if let Ok(Some(_)) = child.try_wait() {
                    self.children.remove(id);
                }
            }
            let status_path = file(job, id, "status");
            let status = if file(job, id, "cancelled").exists() {
                let mut s = JobStatus::new(JobState::Cancelled);
                s.reason = Some("cancelled by the driver".into());
                s
            } else if let Ok(text) = std::fs::read_to_string(&status_path) {
                let code: Option<i32> = text.trim().parse().ok();
                let state = match code {
                    Some(0) => JobState::Completed,
                    Some(TIMEOUT_STATUS) => JobState::Timeout,
                    _ => JobState::Failed,
                };
                JobStatus {
                    exit_code: code,
                    ..JobStatus::new(state)
                }
            } else if live_pid(job, id).is_some() {
                JobStatus::new(JobState::Running)
            } else if file(job, id, "pid").exists() {
                // Gone without a status: killed with its wrapper, or the machine went down.
                let mut s = JobStatus::new(JobState::NodeFail);
                s.reason = Some("the job's process ended without recording an exit status".into());
                s
            } else {
                continue;
            };
            let host = crate::hostname();
            out.insert(
                id.to_string(),
                JobStatus {
                    nodes: Some(host),
                    ..status
                },
            );
        }
        Ok(out)
    }

    fn cancel(&mut self, jobs: &[(&str, &JobScript)]) -> Result<(), LaunchError> {
        let mut signalled = Vec::new();
        for &(id, job) in jobs {
            let marker = file(job, id, "cancelled");
            write_atomic(&marker, b"cancelled\n").map_err(io_error(&marker))?;
            if live_pid(job, id).is_some() {
                if let Some(group) = job_group(job, id) {
                    // SAFETY: kill(2) on the job's own process group; an error (gone) is fine.
                    // timeout passes SIGTERM on to the script, mpirun and the ranks.
                    unsafe { libc::kill(-group, libc::SIGTERM) };
                    signalled.push((id, job, group));
                }
            }
        }
        let deadline = Instant::now() + CANCEL_GRACE;
        while Instant::now() < deadline
            && signalled
                .iter()
                .any(|(id, job, _)| live_pid(job, id).is_some())
        {
            for (id, _, _) in &signalled {
                if let Some(child) = self.children.get_mut(*id) {
                    let _ = child.try_wait();
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for (id, job, group) in signalled {
            if live_pid(job, id).is_some() {
                // SAFETY: as above.
                unsafe { libc::kill(-group, libc::SIGKILL) };
            }
            if let Some(mut child) = self.children.remove(id) {
                let _ = child.wait();
            }
        }
        Ok(())
    }
}
