//! The driver against the project's real local Slurm (slurm/local/: 2 fake nodes x 2 fake GPUs,
//! slurmdbd): all four strategies end to end through sbatch/srun, and faults (a failing job
//! retried then recorded, a walltime overrun, a job cancelled from outside, Ctrl-C, the driver
//! killed with -9 and started again). Each test runs the real `driver` binary.
//!
//! Needs the cluster up (`make slurm-up`); without it every test fails saying so, none skips.
//! The tests submit concurrently: the fault jobs ask for no GPUs, so they share the nodes with
//! the end-to-end jobs, and the whole file takes about as long as the walltime test (60-95 s).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use driver::slurm::run_state::{JobProgress, RunState};
use driver::slurm::state::JobState;
use serde::Deserialize;

/// How long a whole driver run may take before the test fails (the cluster is shared by the
/// tests running at once, and two cores by everything).
const RUN_LIMIT: Duration = Duration::from_secs(420);

/// One output row of `engine run`, the columns checked here.
#[derive(Debug, Deserialize)]
struct Row {
    prompt_id: String,
    variant: String,
    strategy: String,
    tp: usize,
    pp: usize,
    world_size: usize,
    rank: usize,
    completion_tokens: usize,
}

fn driver_args<'a>(
    profile: &'a Path,
    run: &'a Path,
    prompts: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "--profile",
        profile.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--poll-min-ms",
        "300",
        "--poll-max-ms",
        "2000",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn all_four_strategies_run_end_to_end_through_sbatch_and_srun() {
    let env = slurm_env();
    let dir = scratch("slurm-e2e");
    let profile = write_profile(&dir, |_| {});
    let prompts = write_prompts(&dir, 2, &["2k", "4k"]);
    let run = dir.join("run");
    let log = dir.join("driver.log");
    let start = Instant::now();
    let out = wait_output(
        spawn_driver(&driver_args(&profile, &run, &prompts, &[]), &env, &log),
        RUN_LIMIT,
        &log,
    );
    let summary = summary(&out, &log);
    eprintln!("end to end: {:?}", start.elapsed());
    assert_eq!(
        out.status.code(),
        Some(0),
        "log:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );

    let want: BTreeMap<&str, (usize, usize, usize)> = [
        ("tp-across-nodes", (4, 1, 2)),
        ("pp-across-nodes", (1, 4, 2)),
        ("tp-single-node", (2, 1, 1)),
        ("hybrid-tp-pp", (2, 2, 2)),
    ]
    .into();
    assert_eq!(summary.jobs.len(), 8, "4 strategies x 2 variants");
    let state = RunState::load(&run).unwrap().unwrap();
    let accounted: BTreeMap<String, SacctJob> = sacct_jobs_settled(&summary.run_id, 8)
        .into_iter()
        .map(|j| (j.id.clone(), j))
        .collect();
    assert_eq!(
        accounted.len(),
        8,
        "each job submitted exactly once: {accounted:?}"
    );
    for job in &state.jobs {
        let (tp, pp, nodes) = want[job.strategy.as_str()];
        assert_eq!(job.status, JobProgress::Succeeded, "{}", job.key());
        assert_eq!(job.attempts.len(), 1, "{}", job.key());
        let attempt = &job.attempts[0];
        let id = attempt.job_id.clone().unwrap();
        let recorded = &accounted[&id];
        assert_eq!(
            (recorded.state.as_str(), recorded.exit_code.as_str()),
            ("COMPLETED", "0:0"),
            "{}",
            job.key()
        );

        let rows: Vec<Row> = std::fs::read_to_string(&attempt.script.out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ids: Vec<&str> = rows.iter().map(|r| r.prompt_id.as_str()).collect();
        assert_eq!(ids, ["p01", "p02"], "{}", job.key());
        for r in &rows {
            assert_eq!(
                (
                    r.strategy.as_str(),
                    r.variant.as_str(),
                    r.tp,
                    r.pp,
                    r.world_size,
                    r.rank
                ),
                (
                    job.strategy.as_str(),
                    job.variant.as_str(),
                    tp,
                    pp,
                    tp * pp,
                    0
                ),
                "{}",
                job.key()
            );
            assert!(
                r.completion_tokens >= 1 && r.completion_tokens <= 4,
                "{}: {r:?}",
                job.key()
            );
        }

        // Where every rank ran, as srun placed it: ranks in blocks of 2 per node, TP innermost.
        let placement = std::fs::read_to_string(&attempt.script.placement).unwrap();
        let mut ranks: Vec<(usize, String, String)> = placement
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].parse().unwrap(), f[1].to_string(), f[2].to_string())
            })
            .collect();
        ranks.sort();
        assert_eq!(
            ranks.iter().map(|r| r.0).collect::<Vec<_>>(),
            (0..tp * pp).collect::<Vec<_>>(),
            "{}",
            job.key()
        );
        let used: BTreeSet<&str> = ranks.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(used.len(), nodes, "{}: {placement}", job.key());
        for (rank, node, gpus) in &ranks {
            assert_eq!(
                node,
                &ranks[rank / 2 * 2].1,
                "{}: rank {rank} off its node block",
                job.key()
            );
            assert_eq!(gpus, "0,1", "{}: rank {rank} GPUs", job.key());
        }
        let sacct_nodes = if nodes == 2 {
            "node[1-2]".to_string()
        } else {
            ranks[0].1.clone()
        };
        assert_eq!(recorded.nodes, sacct_nodes, "{}", job.key());
        assert_eq!(
            attempt.nodes.as_deref(),
            Some(sacct_nodes.as_str()),
            "{}",
            job.key()
        );
    }
}

/// A profile for jobs that stand in for the engine: no GPUs asked for, so they run beside the
/// end-to-end jobs.
fn fault_profile(dir: &Path, engine: &Path) -> std::path::PathBuf {
    let engine = engine.to_path_buf();
    write_profile(dir, move |p| {
        p.slurm.request_gpus = false;
        p.engine.binary = engine;
    })
}

fn failing_job_is_retried_then_recorded_with_exit_code_and_log_tail() {
    let env = slurm_env();
    let dir = scratch("slurm-failed");
    let engine = fake_engine(
        &dir,
        "failing-engine",
        r#"echo "boom: injected failure on $SLURMD_NODENAME" >&2; exit 3"#,
    );
    let profile = fault_profile(&dir, &engine);
    let prompts = write_prompts(&dir, 1, &["2k", "4k"]);
    let run = dir.join("run");
    let log = dir.join("driver.log");
    let args = driver_args(&profile, &run, &prompts, &["--strategy", "tp-single-node"]);
    let out = wait_output(spawn_driver(&args, &env, &log), RUN_LIMIT, &log);
    let summary = summary(&out, &log);
    assert_eq!(out.status.code(), Some(2), "some jobs failed");
    for job in &summary.jobs {
        assert_eq!(job.status, JobProgress::Failed);
        assert_eq!(
            (job.attempts, job.last_state, job.exit_code),
            (2, Some(JobState::Failed), Some(3)),
            "{job:?}"
        );
        let why = job.why.as_deref().unwrap();
        assert!(
            why.contains("exit code 3") && why.contains("2 failed attempts"),
            "{why}"
        );
    }
    let state = RunState::load(&run).unwrap().unwrap();
    for job in &state.jobs {
        for a in &job.attempts {
            let tail = a.log_tail.as_deref().unwrap_or_default();
            assert!(
                tail.contains("boom: injected failure on node"),
                "{}: {tail}",
                job.key()
            );
        }
    }
    let accounted = sacct_jobs_settled(&summary.run_id, 4);
    assert_eq!(accounted.len(), 4, "2 variants x 2 attempts: {accounted:?}");
    assert!(
        accounted
            .iter()
            .all(|j| j.state == "FAILED" && j.exit_code == "3:0"),
        "{accounted:?}"
    );
}

fn job_past_its_walltime_is_seen_as_timeout() {
    let env = slurm_env();
    let dir = scratch("slurm-timeout");
    let engine = fake_engine(&dir, "sleeping-engine", "exec sleep 300");
    let profile = fault_profile(&dir, &engine);
    let prompts = write_prompts(&dir, 1, &["2k"]);
    let run = dir.join("run");
    let log = dir.join("driver.log");
    let start = Instant::now();
    let args = driver_args(
        &profile,
        &run,
        &prompts,
        &["--strategy", "tp-single-node", "--walltime", "1"],
    );
    let out = wait_output(spawn_driver(&args, &env, &log), RUN_LIMIT, &log);
    let summary = summary(&out, &log);
    eprintln!("timeout seen after {:?}", start.elapsed());
    assert_eq!(out.status.code(), Some(2));
    let job = &summary.jobs[0];
    assert_eq!(
        (job.attempts, job.last_state, job.status),
        (1, Some(JobState::Timeout), JobProgress::Failed),
        "{job:?}"
    );
    assert!(
        job.why.as_deref().unwrap_or_default().contains("TIMEOUT"),
        "{job:?}"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(60),
        "a 1-minute walltime ended early"
    );
}

fn job_cancelled_from_outside_is_seen_as_cancelled() {
    let env = slurm_env();
    let dir = scratch("slurm-cancelled");
    let engine = fake_engine(&dir, "sleeping-engine", "exec sleep 300");
    let profile = fault_profile(&dir, &engine);
    let prompts = write_prompts(&dir, 1, &["2k"]);
    let run = dir.join("run");
    let log = dir.join("driver.log");
    let args = driver_args(&profile, &run, &prompts, &["--strategy", "tp-single-node"]);
    let child = spawn_driver(&args, &env, &log);
    let state = wait_for_state(&run, Duration::from_secs(240), "the job running", |s| {
        all_running(s, 1)
    });
    let id = state.jobs[0].attempts[0].job_id.clone().unwrap();
    let status = slurm_command("scancel").arg(&id).status().unwrap();
    assert!(status.success(), "scancel {id}");
    let out = wait_output(child, RUN_LIMIT, &log);
    let summary = summary(&out, &log);
    assert_eq!(out.status.code(), Some(2));
    let job = &summary.jobs[0];
    assert_eq!(
        (job.attempts, job.last_state),
        (1, Some(JobState::Cancelled)),
        "{job:?}"
    );
}

fn ctrl_c_cancels_the_runs_own_jobs() {
    let env = slurm_env();
    let dir = scratch("slurm-ctrl-c");
    let engine = fake_engine(&dir, "sleeping-engine", "exec sleep 300");
    let profile = fault_profile(&dir, &engine);
    let prompts = write_prompts(&dir, 1, &["4k"]);
    let run = dir.join("run");
    let log = dir.join("driver.log");
    let args = driver_args(&profile, &run, &prompts, &["--strategy", "tp-single-node"]);
    let child = spawn_driver(&args, &env, &log);
    let state = wait_for_state(&run, Duration::from_secs(240), "the job running", |s| {
        all_running(s, 1)
    });
    let id = state.jobs[0].attempts[0].job_id.clone().unwrap();
    // SAFETY: SIGINT to the driver this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = wait_output(child, Duration::from_secs(60), &log);
    assert_eq!(
        out.status.code(),
        Some(130),
        "log:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let start = Instant::now();
    loop {
        let accounted = sacct_jobs(&state.run_id);
        let job = accounted.iter().find(|j| j.id == id).cloned();
        if job
            .as_ref()
            .is_some_and(|j| j.state.starts_with("CANCELLED"))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "job {id} not cancelled: {job:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The faults run side by side (the walltime one takes 60-95 s); each reports its own failure.
#[test]
fn faults_on_the_local_slurm_failed_timeout_cancelled_and_ctrl_c() {
    slurm_env();
    let cases: [(&str, fn()); 4] = [
        ("timeout", job_past_its_walltime_is_seen_as_timeout),
        (
            "failed",
            failing_job_is_retried_then_recorded_with_exit_code_and_log_tail,
        ),
        ("cancelled", job_cancelled_from_outside_is_seen_as_cancelled),
        ("ctrl-c", ctrl_c_cancels_the_runs_own_jobs),
    ];
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(name, case)| (name, std::thread::spawn(case)))
        .collect();
    let failed: Vec<&str> = handles
        .into_iter()
        .filter_map(|(name, h)| h.join().is_err().then_some(name))
        .collect();
    assert!(
        failed.is_empty(),
        "fault cases failed: {failed:?} (their panics are printed above)"
    );
}

#[test]
fn a_driver_killed_with_kill_9_reattaches_and_submits_nothing_twice() {
    let env = slurm_env();
    let dir = scratch("slurm-kill-9");
    // The real engine, after a pause long enough to kill the driver while the jobs run.
    let engine = fake_engine(
        &dir,
        "slow-engine",
        &format!("sleep 10\nexec {} \"$@\"", engine_bin().display()),
    );
    let profile = fault_profile(&dir, &engine);
    let prompts = write_prompts(&dir, 1, &["2k", "4k"]);
    let run = dir.join("run");
    let log = dir.join("driver.log");
    let args = driver_args(&profile, &run, &prompts, &["--strategy", "tp-single-node"]);
    let mut first = spawn_driver(&args, &env, &log);
    let before = wait_for_state(&run, Duration::from_secs(240), "both jobs running", |s| {
        all_running(s, 2)
    });
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let ids_before: Vec<String> = before
        .jobs
        .iter()
        .map(|j| j.attempts[0].job_id.clone().unwrap())
        .collect();
    let live = slurm_command("squeue")
        .args(["-h", "-o", "%i %T", "-j", &ids_before.join(",")])
        .output()
        .unwrap();
    let live = String::from_utf8_lossy(&live.stdout);
    assert_eq!(
        live.matches("RUNNING").count(),
        2,
        "the jobs must outlive the driver: {live}"
    );

    let log2 = dir.join("driver-again.log");
    let out = wait_output(spawn_driver(&args, &env, &log2), RUN_LIMIT, &log2);
    let summary = summary(&out, &log2);
    assert_eq!(
        out.status.code(),
        Some(0),
        "log:\n{}",
        std::fs::read_to_string(&log2).unwrap()
    );
    assert!(std::fs::read_to_string(&log2)
        .unwrap()
        .contains("reattaching"));
    let ids_after: Vec<String> = summary
        .jobs
        .iter()
        .flat_map(|j| j.job_ids.clone())
        .collect();
    assert_eq!(
        ids_after, ids_before,
        "the restarted driver must watch the same jobs"
    );
    assert!(
        summary
            .jobs
            .iter()
            .all(|j| j.status == JobProgress::Succeeded && j.attempts == 1),
        "{summary:?}"
    );
    let accounted = sacct_jobs_settled(&summary.run_id, 2);
    assert_eq!(accounted.len(), 2, "nothing submitted twice: {accounted:?}");
    let state = RunState::load(&run).unwrap().unwrap();
    assert!(state
        .jobs
        .iter()
        .all(|j| j.attempts[0].delivered && j.attempts[0].outputs_present));
}
