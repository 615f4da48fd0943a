//! `engine dist-check` under a real `mpirun` (Open MPI): every communicator operation across
//! processes, and a launch of the wrong size that fails fast instead of hanging.
//! These tests never skip: without `mpirun` on PATH they fail and say how to install it.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A job that takes longer than this is hung: it is killed and the test fails.
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

struct JobOutput {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn mpirun() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("mpirun"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("mpirun not found on PATH: install Open MPI (make setup)"))
}

/// `mpirun -n <ranks> engine dist-check <args>`, killed after [`JOB_TIMEOUT`].
fn dist_check(ranks: usize, args: &[&str]) -> JobOutput {
    let mut child = Command::new(mpirun())
        // Root in containers; more ranks than cores; shared memory only, without the
        // cross-memory-attach copy that containers often forbid.
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "--mca",
            "btl",
            "self,vader",
        ])
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .args(["-n", &ranks.to_string()])
        .arg(env!("CARGO_BIN_EXE_engine"))
        .arg("dist-check")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting mpirun: {e} (install Open MPI: make setup)"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_or_kill(
        &mut child,
        &format!("mpirun -n {ranks} engine dist-check {args:?}"),
    );
    JobOutput {
        success: status.success(),
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Reads a pipe to the end on its own thread, so a chatty job cannot block on a full pipe.
fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

fn wait_or_kill(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + JOB_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                // SIGTERM first: mpirun forwards it to its ranks; SIGKILL would orphan them.
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                thread::sleep(Duration::from_secs(3));
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} hung for {JOB_TIMEOUT:?} and was killed");
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

fn assert_ok(out: &JobOutput, line: &str) {
    assert!(
        out.success,
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.code, out.stdout, out.stderr
    );
    // Only rank 0 prints the summary.
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("dist-check"))
        .collect();
    assert_eq!(
        lines,
        vec![line],
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn dist_check_passes_on_tp2_pp2() {
    let out = dist_check(4, &["--tp", "2", "--pp", "2"]);
    assert_ok(
        &out,
        "dist-check ok: world 4 (tp 2 x pp 2), all-reduce/all-gather/broadcast/send-recv/barrier verified",
    );
}

#[test]
fn dist_check_passes_on_tp4_pp1() {
    let out = dist_check(4, &["--tp", "4", "--pp", "1"]);
    assert_ok(
        &out,
        "dist-check ok: world 4 (tp 4 x pp 1), all-reduce/all-gather/broadcast/barrier verified",
    );
}

#[test]
fn world_of_the_wrong_size_fails_fast_naming_both_sizes() {
    let out = dist_check(3, &["--tp", "2", "--pp", "2"]);
    assert!(
        !out.success,
        "a world of 3 for tp 2 x pp 2 must fail\nstdout:\n{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("= 4 ranks") && out.stderr.contains("world has 3"),
        "the error should name both sizes:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}
