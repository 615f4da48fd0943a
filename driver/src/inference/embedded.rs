//! The embedded baseline: `engine serve` started on a loopback port for the length of a run.
//!
//! The server picks a free port itself (`--port 0`) and prints its address; the driver reads it
//! from the server's stderr (no race with another process taking a port the driver chose), waits
//! for `GET /health`, and stops the server with SIGTERM (SIGKILL if it lingers) when done or
//! dropped. On Linux the server also gets SIGTERM if the driver dies, even by `kill -9`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How to start the server.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    pub engine_bin: PathBuf,
    pub model_dir: PathBuf,
    pub max_batch: u32,
    pub dtype: String,
    /// Passed on as `--api-key-env`, so the server checks the same key the client sends.
    pub api_key_env: Option<String>,
    pub startup_timeout: Duration,
}

/// The server could not be found, started or reached.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("engine binary not found: {0}")]
    EngineNotFound(String),
    #[error("{path}: not a model folder (no config.json); fetch the demo model with `make model`")]
    Model { path: PathBuf },
    #[error("{bin}: cannot start `engine serve`: {source}")]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error("`engine serve` exited ({status}) before it was ready; its last output:\n{tail}")]
    Exited { status: String, tail: String },
    #[error("`engine serve` was not ready within {timeout:?}; its last output:\n{tail}")]
    NotReady { timeout: Duration, tail: String },
}

/// Finds the engine binary: the configured path, else `$ENGINE_BIN`, else `engine` next to the
/// running executable (cargo puts both binaries in the same target folder).
pub fn locate_engine(configured: &str) -> Result<PathBuf, EmbeddedError> {
    let candidate = if !configured.trim().is_empty() {
        PathBuf::from(configured.trim())
    } else if let Some(env) = std::env::var_os("ENGINE_BIN").filter(|v| !v.is_empty()) {
        PathBuf::from(env)
    } else {
        let exe = std::env::current_exe().map_err(|e| {
            EmbeddedError::EngineNotFound(format!("cannot locate the driver executable: {e}"))
        })?;
        exe.with_file_name(format!("engine{}", std::env::consts::EXE_SUFFIX))
    };
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(EmbeddedError::EngineNotFound(format!(
            "{} does not exist; build it with `cargo build -p shardlab-engine --bin engine`, or set \
             baseline.embedded.engine_bin or ENGINE_BIN",
            candidate.display()
        )))
    }
}

/// A running `engine serve`; stopped on [`EmbeddedServer::stop`] or drop.
pub struct EmbeddedServer {
    child: Child,
    base_url: String,
    model_name: String,
    tail: Arc<Mutex<VecDeque<String>>>,
}

const TAIL_LINES: usize = 30;

impl EmbeddedServer {
    /// Starts the server and waits until `/health` answers. Call it from the thread that will
    /// outlive the server (the parent-death signal is tied to the spawning thread).
    pub async fn start(options: &EmbeddedOptions) -> Result<Self, EmbeddedError> {
        if !options.model_dir.join("config.json").is_file() {
            return Err(EmbeddedError::Model {
                path: options.model_dir.clone(),
            });
        }
        let model_name = options
            .model_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_string());
        let mut command = Command::new(&options.engine_bin);
        command
            .arg("serve")
            .arg("--model")
            .arg(&options.model_dir)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--served-model-name", &model_name])
            .args(["--max-batch", &options.max_batch.to_string()])
            .args(["--dtype", &options.dtype])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(var) = &options.api_key_env {
            command.args(["--api-key-env", var]);
        }
        die_with_parent(&mut command);
        tracing::info!(bin = %options.engine_bin.display(), model = %options.model_dir.display(), "starting engine serve");
        let mut child = command.spawn().map_err(|source| EmbeddedError::Spawn {
            bin: options.engine_bin.clone(),
            source,
        })?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let address = Arc::new(Mutex::new(None));
        if let Some(stderr) = child.stderr.take() {
            let (tail, address) = (Arc::clone(&tail), Arc::clone(&address));
            std::thread::spawn(move || forward_stderr(stderr, &tail, &address));
        }
        let mut server = Self {
            child,
            base_url: String::new(),
            model_name,
            tail,
        };
        let deadline = Instant::now() + options.startup_timeout;
        let http = reqwest::Client::new();
        loop {
            if let Some(status) = server.child.try_wait().ok().flatten() {
                return Err(EmbeddedError::Exited {
                    status: status.to_string(),
                    tail: server.tail_text(),
                });
            }
            let listening = address.lock().map(|a| a.clone()).unwrap_or_default();
            if let Some(address) = listening {
                let health = format!("{address}/health");
                let ok = http
                    .get(&health)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    server.base_url = format!("{address}/v1");
                    tracing::info!(url = %server.base_url, "engine serve is ready");
                    return Ok(server);
                }
            }
            if Instant::now() >= deadline {
                return Err(EmbeddedError::NotReady {
                    timeout: options.startup_timeout,
                    tail: server.tail_text(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The API base, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The name the server answers to (the model folder's name).
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// Stops the server: SIGTERM, then SIGKILL after 10 s.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        terminate(&self.child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!("engine serve ignored SIGTERM for 10 s; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn tail_text(&self) -> String {
        // Give the reader thread a moment to pick up the last lines of a dying server.
        std::thread::sleep(Duration::from_millis(100));
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Logs the server's stderr, keeps its last lines, and picks up the address it listens on.
fn forward_stderr(
    stderr: std::process::ChildStderr,
    tail: &Mutex<VecDeque<String>>,
    address: &Mutex<Option<String>>,
) {
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        tracing::debug!(target: "engine", "{line}");
        if let Some(found) = listening_address(&line) {
            if let Ok(mut a) = address.lock() {
                a.get_or_insert(found);
            }
        }
        if let Ok(mut t) = tail.lock() {
            if t.len() == TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line);
        }
    }
}

/// `engine serve: listening on http://127.0.0.1:41234 (...)` -> `http://127.0.0.1:41234`.
fn listening_address(line: &str) -> Option<String> {
    let rest = line.split("listening on ").nth(1)?;
    let url = rest.split_whitespace().next()?;
    url.starts_with("http://").then(|| url.to_string())
}

#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

#[cfg(unix)]
fn terminate(child: &Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

#[cfg(not(unix))]
fn terminate(_child: &Child) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_the_listening_line() {
        assert_eq!(
            listening_address(
                "engine serve: listening on http://127.0.0.1:41234 (tp=1 pp=1, max batch 4)"
            )
            .as_deref(),
            Some("http://127.0.0.1:41234")
        );
        assert_eq!(listening_address("loading model"), None);
    }

    #[test]
    fn a_missing_engine_binary_is_named_with_the_fix() {
        let err = locate_engine("/nonexistent/engine")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/engine"), "{err}");
        assert!(err.contains("cargo build -p shardlab-engine"), "{err}");
    }
}
