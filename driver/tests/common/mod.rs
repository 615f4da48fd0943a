//! Shared helpers for the driver's integration tests: the engine binary and the tiny synthetic
//! model, the `driver` binary as a child process, the local Slurm's environment, run folders.
//! Nothing here skips: a missing engine, tokenizer or Slurm fails the test with what to do.
#![allow(dead_code)]

pub mod fault_server;
pub mod perf;
pub mod pipeline;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use driver::data::prompts::PromptRepository;
use driver::data::tokens::TokenCounter;
use driver::slurm::profile::ClusterProfile;
use driver::slurm::run_state::{JobProgress, Phase, RunState};
use driver::slurm::state::JobState;
use serde::Deserialize;

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cargo target folder these tests were built into (`<target>/debug/deps/<test>`).
fn target_debug_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("tests run from <target>/debug/deps")
}

/// The engine binary from the same cargo target folder (or `SHARDLAB_ENGINE_BIN`).
pub fn engine_bin() -> PathBuf {
    let path = std::env::var_os("SHARDLAB_ENGINE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_debug_dir().join("engine"));
    assert!(
        path.is_file(),
        "no engine binary at {}: build it first with `cargo build -p shardlab-engine --bin engine` \
         (same CARGO_TARGET_DIR), or set SHARDLAB_ENGINE_BIN",
        path.display()
    );
    path
}

/// The `driver` binary under test.
pub fn driver_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_driver"))
}

/// A folder that outlives one test but not the test process's purpose: `<target>/shardlab-tests`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = target_debug_dir().join("shardlab-driver-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tiny synthetic Llama (8 heads, 4 KV heads, 4 layers) with the Llama 3 tokenizer, written
/// by `engine synth` (deterministic) once and reused by later test processes until the engine
/// is rebuilt.
pub fn tiny_model() -> PathBuf {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let root = target_debug_dir().join("shardlab-driver-tests");
            let dir = root.join("tiny-synth");
            let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            // Reused only if written by this engine build or a later one.
            if modified(&dir.join("config.json")) >= modified(&engine_bin()) {
                return dir;
            }
            let _ = std::fs::remove_dir_all(&dir);
            let tokenizer = repo().join("models/llama3-tokenizer");
            assert!(
                tokenizer.join("tokenizer.json").is_file(),
                "{} is missing: run `make model` first",
                tokenizer.display()
            );
            // Written beside, then renamed: a test process killed halfway leaves no half model.
            let tmp = scratch(&format!("tiny-synth.tmp-{}", std::process::id()));
            let status = Command::new(engine_bin())
                .args(["synth", "--preset", "tiny", "--tokenizer"])
                .arg(&tokenizer)
                .arg("--out")
                .arg(&tmp)
                .status()
                .expect("run engine synth");
            assert!(status.success(), "engine synth failed");
            if std::fs::rename(&tmp, &dir).is_err() {
                // Another test process got there first.
                let _ = std::fs::remove_dir_all(&tmp);
            }
            assert!(
                dir.join("config.json").is_file(),
                "no model at {}",
                dir.display()
            );
            dir
        })
        .clone()
}

/// The local-ci profile with its model and engine replaced, written where the driver reads it.
pub fn write_profile(dir: &Path, edit: impl FnOnce(&mut ClusterProfile)) -> PathBuf {
    let mut profile = ClusterProfile::load(&repo().join("slurm/profiles/local-ci.toml")).unwrap();
    profile.engine.binary = engine_bin();
    profile.model.path = tiny_model();
    // Read from the model's config.json rather than stated.
    profile.model.heads = None;
    profile.model.kv_heads = None;
    profile.model.layers = None;
    edit(&mut profile);
    let path = dir.join("profile.toml");
    std::fs::write(&path, toml::to_string(&profile).unwrap()).unwrap();
    path
}

/// A JSONL prompt file: `per_variant` short prompts for each of `variants` (2k, 4k).
pub fn write_prompts(dir: &Path, per_variant: usize, variants: &[&str]) -> PathBuf {
    let mut text = String::new();
    for &variant in variants {
        for i in 0..per_variant {
            let row = serde_json::json!({
                "prompt_id": format!("p{:02}", i + 1),
                "variant": variant,
                "prompt": format!("Question {i} of the {variant} set: what is {i} plus {i}?"),
                "token_budget": if variant == "2k" { 2048 } else { 4096 },
            });
            text.push_str(&row.to_string());
            text.push('\n');
        }
    }
    let path = dir.join("prompts.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

/// A script standing in for the engine: `body` runs with the engine's arguments in "$@".
pub fn fake_engine(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The environment of the local Slurm (`SLURM_CONF`, Open MPI settings), from its `env.sh`;
/// fails loudly when the cluster is not up.
pub fn slurm_env() -> Vec<(String, String)> {
    static ENV: OnceLock<Vec<(String, String)>> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir =
            std::env::var("SHARDLAB_SLURM_DIR").unwrap_or_else(|_| "/tmp/shardlab-slurm".into());
        let env_sh = Path::new(&dir).join("env.sh");
        let text = std::fs::read_to_string(&env_sh).unwrap_or_else(|e| {
            panic!(
                "the local Slurm is not up ({}: {e}): start it with `make slurm-up` \
                 (bash slurm/local/cluster.sh up, as root)",
                env_sh.display()
            )
        });
        let mut env = Vec::new();
        for line in text.lines().filter(|l| l.starts_with("export ")) {
            for word in shlex::split(line.trim_start_matches("export ")).unwrap_or_default() {
                if let Some((k, v)) = word.split_once('=') {
                    env.push((k.to_string(), v.to_string()));
                }
            }
        }
        let out = Command::new("sinfo")
            .args(["-h", "-o", "%D %t"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run sinfo ({e}): is Slurm installed? run `make slurm-up`")
            });
        let answer = String::from_utf8_lossy(&out.stdout);
        let usable = ["idle", "mix", "alloc"].iter().any(|s| answer.contains(s));
        assert!(
            out.status.success() && usable,
            "the local Slurm does not answer (sinfo: {answer} {}): start it with `make slurm-up`",
            String::from_utf8_lossy(&out.stderr)
        );
        env
    })
    .clone()
}

/// A Slurm command with the local cluster's environment.
pub fn slurm_command(program: &str) -> Command {
    let mut c = Command::new(program);
    c.envs(slurm_env());
    c
}

/// `driver jobs ...` as a child process (stdout captured: the summary; stderr to a log file).
pub fn spawn_driver(args: &[&str], env: &[(String, String)], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(driver_bin())
        .arg("jobs")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start the driver")
}

/// Waits for a child with a deadline; kills it and fails the test past the deadline.
pub fn wait_output(child: Child, limit: Duration, log: &Path) -> Output {
    let pid = child.id();
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for the driver"),
        Err(_) => {
            // SAFETY: SIGKILL to the driver we started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!(
                "the driver ran past {limit:?} (started {:?} ago); its log:\n{}",
                start.elapsed(),
                std::fs::read_to_string(log).unwrap_or_default()
            )
        }
    }
}

/// The driver's JSON summary.
#[derive(Debug, Deserialize)]
pub struct Summary {
    pub run_id: String,
    pub jobs: Vec<JobSummary>,
}

#[derive(Debug, Deserialize)]
pub struct JobSummary {
    pub strategy: String,
    pub variant: String,
    pub status: JobProgress,
    pub attempts: usize,
    pub job_ids: Vec<String>,
    pub last_state: Option<JobState>,
    pub exit_code: Option<i32>,
    pub why: Option<String>,
}

pub fn summary(out: &Output, log: &Path) -> Summary {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no summary from the driver ({e}), exit {:?}; its log:\n{}",
            out.status,
            std::fs::read_to_string(log).unwrap_or_default()
        )
    })
}

/// Polls the run's saved state until `done` holds for it.
pub fn wait_for_state(
    run_dir: &Path,
    limit: Duration,
    what: &str,
    done: impl Fn(&RunState) -> bool,
) -> RunState {
    let start = Instant::now();
    loop {
        if let Ok(Some(state)) = RunState::load(run_dir) {
            if done(&state) {
                return state;
            }
        }
        assert!(
            start.elapsed() < limit,
            "waited {limit:?} for {what} in {}",
            run_dir.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every job's last attempt is submitted and running.
pub fn all_running(state: &RunState, jobs: usize) -> bool {
    state.jobs.len() == jobs
        && state.jobs.iter().all(|j| {
            j.attempts
                .last()
                .is_some_and(|a| a.phase == Phase::Submitted && a.state == Some(JobState::Running))
        })
}

/// `sacct` rows of the run's jobs once slurmdbd has recorded `expected` of them (it lags the
/// controller by a moment), read again a little later so that a late extra job shows too.
pub fn sacct_jobs_settled(run_id: &str, expected: usize) -> Vec<SacctJob> {
    let start = Instant::now();
    while sacct_jobs(run_id).len() < expected && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(2));
    sacct_jobs(run_id)
}

/// One job as `sacct` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SacctJob {
    pub id: String,
    pub name: String,
    pub state: String,
    pub exit_code: String,
    pub nodes: String,
}

/// `sacct` rows of the jobs whose name has `run_id`.
pub fn sacct_jobs(run_id: &str) -> Vec<SacctJob> {
    let out = slurm_command("sacct")
        .args([
            "-X",
            "-n",
            "--parsable2",
            "-S",
            "now-1days",
            "-o",
            "JobID,JobName%80,State,ExitCode,NodeList",
        ])
        .output()
        .expect("run sacct");
    assert!(
        out.status.success(),
        "sacct failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f.len() == 5 && f[1].contains(run_id)).then(|| SacctJob {
                id: f[0].into(),
                name: f[1].into(),
                state: f[2].into(),
                exit_code: f[3].into(),
                nodes: f[4].into(),
            })
        })
        .collect()
}

// Prompt sets, configs and the baseline.

/// The committed prompt sets.
pub fn data_dir() -> PathBuf {
    repo().join("data")
}

/// A file or folder under `models/` (fetched by `make model`); fails loudly when it is missing.
pub fn model_path(relative: &str) -> PathBuf {
    let base = std::env::var_os("SHARDLAB_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models"));
    let path = base.join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `make model` first",
        path.display()
    );
    path
}

pub fn llama3_tokenizer() -> PathBuf {
    model_path("llama3-tokenizer/tokenizer.json")
}

pub fn counter() -> TokenCounter {
    TokenCounter::from_file(&llama3_tokenizer()).expect("load the Llama 3 tokenizer")
}

/// `driver` with logs at `info` unless the test says otherwise.
pub fn driver() -> Command {
    let mut command = Command::new(driver_bin());
    command.env("RUST_LOG", "info").env_remove("ENGINE_BIN");
    command
}

/// Maps each prompt's text to its row key (`p07/4k`), so a server can tell rows apart.
pub fn prompt_keys() -> HashMap<String, String> {
    let repository = PromptRepository::new(data_dir(), counter());
    repository
        .load_all()
        .expect("the committed prompt sets load")
        .into_iter()
        .map(|r| (r.prompt, format!("{}/{}", r.prompt_id, r.variant)))
        .collect()
}

/// A config for a run against `url`, with results under `results`; `extra` is appended to the
/// `[baseline]` section.
pub fn write_config(dir: &Path, url: &str, results: &Path, extra: &str) -> PathBuf {
    let text = format!(
        "[prompts]\ndir = {:?}\ntokenizer = {:?}\n\n[results]\ndir = {:?}\n\n[baseline]\nurl = {url:?}\n{extra}\n",
        data_dir().display().to_string(),
        llama3_tokenizer().display().to_string(),
        results.display().to_string(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
