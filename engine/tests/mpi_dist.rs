//! `engine dist-check` under a real `mpirun` (Open MPI): every communicator operation across
//! processes, and a launch of the wrong size that fails fast instead of hanging.
//! These tests never skip: without `mpirun` on PATH they fail and say how to install it.

mod common;

use std::time::Duration;

use common::mpi::{run_mpirun, JobOutput};

/// A job that takes longer than this is hung: it is killed and the test fails.
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

/// `mpirun -n <ranks> engine dist-check <args>`, killed after [`JOB_TIMEOUT`].
fn dist_check(ranks: usize, args: &[&str]) -> JobOutput {
    let mut all = vec!["dist-check"];
    all.extend_from_slice(args);
    run_mpirun(ranks, &all, JOB_TIMEOUT)
}

fn assert_ok(out: &JobOutput, line: &str) {
    out.assert_success();
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
        "dist-check ok: world 4 (tp 2 x pp 2), all-reduce (f32, bf16, f16)/all-gather/broadcast/send-recv/barrier verified",
    );
}

#[test]
fn dist_check_passes_on_tp4_pp1() {
    let out = dist_check(4, &["--tp", "4", "--pp", "1"]);
    assert_ok(
        &out,
        "dist-check ok: world 4 (tp 4 x pp 1), all-reduce (f32, bf16, f16)/all-gather/broadcast/barrier verified",
    );
}

#[test]
fn world_of_the_wrong_size_fails_fast_naming_both_sizes() {
    let out = dist_check(3, &["--tp", "2", "--pp", "2"]);
    assert!(
        !out.success(),
        "a world of 3 for tp 2 x pp 2 must fail\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("= 4 ranks") && out.stderr.contains("world has 3"),
        "the error should name both sizes:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}
