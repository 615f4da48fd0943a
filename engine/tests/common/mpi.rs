//! A harness for the `engine` binary under a real `mpirun` (Open MPI), or alone (a world of one):
//! finds `mpirun` (and fails loudly, never skips, when it is missing), runs a job with a
//! kill-after-timeout, captures its stdout, stderr, exit status and elapsed time, and can start a
//! job in the background and find the PIDs (and MPI ranks) of its rank processes.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// `mpirun` flags for tests: root in containers; more ranks than cores; shared memory only.
pub const MPIRUN_FLAGS: [&str; 5] = [
    "--allow-run-as-root",
    "--oversubscribe",
    "--mca",
    "btl",
    "self,vader",
];

/// The process name of the ranks (`/proc/<pid>/comm`).
const ENGINE_COMM: &str = "engine";

/// How often a waiting job is polled.
const POLL: Duration = Duration::from_millis(50);

/// How long a killed `mpirun` gets after SIGTERM (it forwards it to its ranks) before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// The `engine` binary cargo built for these tests.
pub fn engine_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_engine"))
}

/// `mpirun` on `PATH`; panics (never skips) when it is missing.
pub fn mpirun() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("mpirun"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("mpirun not found on PATH: install Open MPI (make setup)"))
}

/// `mpirun <test flags> -n <ranks> engine <args>`, not started.
pub fn mpirun_command<S: AsRef<OsStr>>(ranks: usize, args: &[S]) -> Command {
    let mut command = Command::new(mpirun());
    command
        .args(MPIRUN_FLAGS)
        // Without the cross-memory-attach copy, which containers often forbid.
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .args(["-n", &ranks.to_string()])
        .arg(engine_bin())
        .args(args);
    command
}

/// `engine <args>` without `mpirun` (a world of one), not started.
pub fn engine_command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut command = Command::new(engine_bin());
    command.args(args);
    command
}

/// Runs `mpirun -n <ranks> engine <args>` to the end; a job still running after `timeout` is
/// killed (with all its ranks) and the test fails.
pub fn run_mpirun<S: AsRef<OsStr>>(ranks: usize, args: &[S], timeout: Duration) -> JobOutput {
    Job::start_mpirun(ranks, args).wait_or_kill(timeout)
}

/// Runs `engine <args>` alone (no `mpirun`) to the end, killed after `timeout` like
/// [`run_mpirun`].
pub fn run_single<S: AsRef<OsStr>>(args: &[S], timeout: Duration) -> JobOutput {
    Job::start_single(args).wait_or_kill(timeout)
}

/// A finished job.
#[derive(Debug)]
pub struct JobOutput {
    /// The command line, for messages.
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// From the start of the job to its exit.
    pub elapsed: Duration,
}

impl JobOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The command, its status, time and output, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "{}\nexit: {} after {:.1} s\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.status,
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }

    /// Panics, with the output, unless the job exited with status 0.
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "the job failed:\n{}", self.describe());
        self
    }
}

/// A rank process of a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankProcess {
    pub pid: u32,
    /// Its world rank, from the launcher's environment (`OMPI_COMM_WORLD_RANK`, `PMIX_RANK` or
    /// `PMI_RANK`); `None` when that cannot be read.
    pub rank: Option<usize>,
}

/// A pipe read to the end on its own thread (so a chatty job cannot block on a full pipe), into
/// a buffer that can be read at any time, also while the job still runs.
struct Captured {
    text: Arc<Mutex<Vec<u8>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Captured {
    fn new(pipe: Option<impl Read + Send + 'static>) -> Self {
        let text = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&text);
        let reader = pipe.map(|mut pipe| {
            thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => sink.lock().unwrap().extend_from_slice(&chunk[..n]),
                    }
                }
            })
        });
        Self { text, reader }
    }

    /// What has been read so far.
    fn snapshot(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    /// Waits (at most `limit`) for the pipe's end, then returns everything read: a straggler that
    /// still holds the pipe open cannot hang the test.
    fn finish(&mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        if let Some(reader) = self.reader.take() {
            while !reader.is_finished() && Instant::now() < deadline {
                thread::sleep(POLL);
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
        self.snapshot()
    }
}

/// A job started in the background: `mpirun ... engine ...`, or `engine ...` alone. Dropping a
/// job that still runs kills it and its ranks.
pub struct Job {
    what: String,
    child: Child,
    stdout: Captured,
    stderr: Captured,
    started: Instant,
    /// Every rank process seen so far, so that they can be killed even after `mpirun` is gone.
    seen: Vec<u32>,
    status: Option<ExitStatus>,
}

impl Job {
    /// Starts `mpirun -n <ranks> engine <args>`.
    pub fn start_mpirun<S: AsRef<OsStr>>(ranks: usize, args: &[S]) -> Job {
        let what = format!("mpirun -n {ranks} engine {}", join_args(args));
        Job::start(mpirun_command(ranks, args), what)
    }

    /// Starts `engine <args>` without `mpirun`.
    pub fn start_single<S: AsRef<OsStr>>(args: &[S]) -> Job {
        let what = format!("engine {}", join_args(args));
        Job::start(engine_command(args), what)
    }

    fn start(mut command: Command, what: String) -> Job {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting `{what}`: {e} (install Open MPI: make setup)"));
        Job {
            stdout: Captured::new(child.stdout.take()),
            stderr: Captured::new(child.stderr.take()),
            what,
            child,
            started: Instant::now(),
            seen: Vec::new(),
            status: None,
        }
    }

    /// The command line.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The PID of `mpirun` (or of the lone `engine`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time since the job started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the job (`mpirun` or the lone `engine`) is still running.
    pub fn is_running(&mut self) -> bool {
        self.poll().is_none()
    }

    fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.status = status,
                Err(e) => panic!("waiting for `{}`: {e}", self.what),
            }
        }
        self.status
    }

    /// The job's `engine` processes now: the job's own process when it is `engine`, and every
    /// descendant of it whose name or executable is `engine` (found through
    /// `/proc/<pid>/task/*/children`, recursively).
    pub fn rank_processes(&mut self) -> Vec<RankProcess> {
        let pids = engine_descendants(self.pid());
        for &pid in &pids {
            if !self.seen.contains(&pid) {
                self.seen.push(pid);
            }
        }
        pids.into_iter()
            .map(|pid| RankProcess {
                pid,
                rank: world_rank_of(pid),
            })
            .collect()
    }

    /// Waits until an `mpirun` job has `count` rank processes whose world ranks are known, and
    /// returns them sorted by rank; panics (after killing the job) when it exits first or
    /// `timeout` passes.
    pub fn wait_for_ranks(&mut self, count: usize, timeout: Duration) -> Vec<RankProcess> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut ranks = self.rank_processes();
            if ranks.len() >= count && ranks.iter().all(|r| r.rank.is_some()) {
                ranks.sort_by_key(|r| (r.rank, r.pid));
                return ranks;
            }
            if !self.is_running() {
                let out = self.collect();
                panic!(
                    "the job exited before {count} rank processes were seen:\n{}",
                    out.describe()
                );
            }
            if Instant::now() >= deadline {
                self.kill_all();
                panic!(
                    "`{}`: {count} rank processes did not appear within {timeout:?} (saw {ranks:?}); \
                     killed\nstderr so far:\n{}",
                    self.what,
                    self.stderr.snapshot()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Waits for the job to exit, at most `timeout`: `None` (the job left running) when it is
    /// still running then.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<JobOutput> {
        let deadline = Instant::now() + timeout;
        loop {
            // Learn the ranks while they live, so that stragglers can still be killed later.
            self.rank_processes();
            if self.poll().is_some() {
                return Some(self.collect());
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    /// Waits for the job to exit; after `timeout` it is killed with all its ranks and the test
    /// fails.
    pub fn wait_or_kill(mut self, timeout: Duration) -> JobOutput {
        if let Some(out) = self.wait_timeout(timeout) {
            return out;
        }
        self.kill_all();
        panic!(
            "`{}` still ran after {timeout:?} and was killed\nstdout so far:\n{}\nstderr so far:\n{}",
            self.what,
            self.stdout.snapshot(),
            self.stderr.snapshot()
        );
    }

    /// The output of an exited job.
    fn collect(&mut self) -> JobOutput {
        let status = self.poll().expect("the job has exited");
        let elapsed = self.started.elapsed();
        JobOutput {
            what: self.what.clone(),
            status,
            stdout: self.stdout.finish(Duration::from_secs(10)),
            stderr: self.stderr.finish(Duration::from_secs(10)),
            elapsed,
        }
    }

    /// Kills the job: SIGTERM to `mpirun` (it forwards it to its ranks), SIGKILL to whatever is
    /// left after a grace period, `mpirun` and every rank process seen included.
    pub fn kill_all(&mut self) {
        self.rank_processes();
        if self.poll().is_none() {
            signal(self.pid(), "TERM");
            let deadline = Instant::now() + TERM_GRACE;
            while self.poll().is_none() && Instant::now() < deadline {
                thread::sleep(POLL);
            }
            if self.poll().is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        for &pid in &self.seen {
            if engine_alive(pid) {
                signal(pid, "KILL");
            }
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let leftover = self.seen.iter().any(|&pid| engine_alive(pid));
        if self.status.is_none() || leftover {
            self.kill_all();
        }
    }
}

/// Sends `SIGNAL` to one process, by id.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether `pid` is a live (not zombie) `engine` process.
pub fn engine_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state ...`: the state follows the last `)`.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("");
    state != "Z" && state != "X" && is_engine(pid)
}

/// Whether `/proc/<pid>` names the `engine` binary (by `comm`, or by executable).
fn is_engine(pid: u32) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim_end() == ENGINE_COMM {
        return true;
    }
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
        // A rebuilt binary reads as `engine (deleted)`.
        .is_some_and(|name| name == ENGINE_COMM || name.starts_with("engine "))
}

/// The `engine` processes among `root` and its descendants, in discovery order.
pub fn engine_descendants(root: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = vec![root];
    let mut visited = Vec::new();
    while let Some(pid) = queue.pop() {
        if visited.contains(&pid) {
            continue;
        }
        visited.push(pid);
        if is_engine(pid) {
            found.push(pid);
        }
        queue.extend(children_of(pid));
    }
    found
}

/// The direct children of `pid`, from every thread's `/proc/<pid>/task/<tid>/children`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        children.extend(
            text.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    children.sort_unstable();
    children.dedup();
    children
}

/// The world rank the launcher gave `pid`, from its environment.
pub fn world_rank_of(pid: u32) -> Option<usize> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
    ["OMPI_COMM_WORLD_RANK=", "PMIX_RANK=", "PMI_RANK="]
        .iter()
        .find_map(|key| {
            vars.iter()
                .find_map(|var| var.strip_prefix(key.as_bytes()))
                .and_then(|value| std::str::from_utf8(value).ok()?.parse().ok())
        })
}

fn join_args<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
