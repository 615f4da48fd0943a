//! The local launcher: the same job scripts run on this machine with `mpirun` in place of
//! `srun`, with the same states and outputs as on Slurm: all four strategies end to end, a
//! failing job retried then recorded, a walltime overrun as TIMEOUT, and a driver killed with -9
//! that reattaches to its still-running jobs. Needs Open MPI's `mpirun` (`make setup`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use driver::slurm::run_state::{JobProgress, RunState};
use driver::slurm::state::JobState;
use serde::Deserialize;

const RUN_LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug, Deserialize)]
struct Row {
    prompt_id: String,
    strategy: String,
    tp: usize,
    pp: usize,
    world_size: usize,
}

fn args<'a>(
    profile: &'a Path,
    run: &'a Path,
    prompts: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "--launcher",
        "local",
        "--profile",
        profile.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--poll-min-ms",
        "200",
        "--poll-max-ms",
        "1000",
    ];
    args.extend_from_slice(extra);
    args
}

/// Local jobs get mpirun from PATH and nothing from Slurm.
fn env() -> Vec<(String, String)> {
    assert!(
        std::process::Command::new("mpirun")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "mpirun (Open MPI) is missing: install it with `make setup`"
    );
    Vec::new()
}

#[test]
fn all_four_strategies_run_locally_with_mpirun() {
    let env = env();
    let dir = scratch("local-e2e");
    let profile = write_profile(&dir, |_| {});
    let prompts = write_prompts(&dir, 2, &["2k"]);
    let run = dir.join("run");
    let log = dir.join("driver.log");
    let out = wait_output(
        spawn_driver(&args(&profile, &run, &prompts, &[]), &env, &log),
        RUN_LIMIT,
        &log,
    );
    let summary = summary(&out, &log);
    assert_eq!(
        out.status.code(),
        Some(0),
        "log:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert_eq!(summary.jobs.len(), 4);
    let state = RunState::load(&run).unwrap().unwrap();
    let host = driver::hostname();
    for job in &state.jobs {
        let (tp, pp) = match job.strategy.as_str() {
            "tp-across-nodes" => (4, 1),
            "pp-across-nodes" => (1, 4),
            "tp-single-node" => (2, 1),
            "hybrid-tp-pp" => (2, 2),
            other => panic!("unexpected strategy {other}"),
        };
        let a = &job.attempts[0];
        assert_eq!(
            (job.status, a.state),
            (JobProgress::Succeeded, Some(JobState::Completed)),
            "{}",
            job.key()
        );
        let rows: Vec<Row> = std::fs::read_to_string(&a.script.out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            rows.iter()
                .map(|r| r.prompt_id.as_str())
                .collect::<Vec<_>>(),
            ["p01", "p02"]
        );
        for r in &rows {
            assert_eq!(
                (r.strategy.as_str(), r.tp, r.pp, r.world_size),
                (job.strategy.as_str(), tp, pp, tp * pp)
            );
        }
        let placement = std::fs::read_to_string(&a.script.placement).unwrap();
        let mut ranks: Vec<usize> = placement
            .lines()
            .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
            .collect();
        ranks.sort();
        assert_eq!(ranks, (0..tp * pp).collect::<Vec<_>>(), "{}", job.key());
        assert!(
            placement
                .lines()
                .all(|l| l.split_whitespace().nth(1) == Some(host.as_str())),
            "{placement}"
        );
        let script = std::fs::read_to_string(&a.script.script).unwrap();
        assert!(
            script.contains(&format!("mpirun -n {} --oversubscribe", tp * pp)),
            "{script}"
        );
    }
}

#[test]
fn local_faults_failed_retried_then_recorded_and_walltime_as_timeout() {
    let env = env();
    let dir = scratch("local-faults");
    let failing = fake_engine(
        &dir,
        "failing-engine",
        r#"echo "boom: injected local failure" >&2; exit 3"#,
    );
    let sleeping = fake_engine(&dir, "sleeping-engine", "exec sleep 300");
    let prompts = write_prompts(&dir, 1, &["2k"]);

    let profile = write_profile(&dir, |p| p.engine.binary = failing);
    let run = dir.join("run-failed");
    let log = dir.join("failed.log");
    let failed = spawn_driver(
        &args(&profile, &run, &prompts, &["--strategy", "tp-single-node"]),
        &env,
        &log,
    );

    let timeout_dir = dir.join("timeout");
    std::fs::create_dir_all(&timeout_dir).unwrap();
    let profile2 = write_profile(&timeout_dir, |p| p.engine.binary = sleeping);
    let run2 = dir.join("run-timeout");
    let log2 = dir.join("timeout.log");
    let extra = ["--strategy", "tp-single-node", "--walltime", "0:03"];
    let timed_out = spawn_driver(&args(&profile2, &run2, &prompts, &extra), &env, &log2);

    let out = wait_output(failed, RUN_LIMIT, &log);
    let s = summary(&out, &log);
    assert_eq!(out.status.code(), Some(2));
    let job = &s.jobs[0];
    assert_eq!(
        (job.attempts, job.last_state, job.exit_code),
        (2, Some(JobState::Failed), Some(3)),
        "{job:?}"
    );
    let state = RunState::load(&run).unwrap().unwrap();
    let tail = state.jobs[0].attempts[1]
        .log_tail
        .clone()
        .unwrap_or_default();
    assert!(tail.contains("boom: injected local failure"), "{tail}");

    let out = wait_output(timed_out, RUN_LIMIT, &log2);
    let s = summary(&out, &log2);
    let job = &s.jobs[0];
    assert_eq!(
        (job.attempts, job.last_state),
        (1, Some(JobState::Timeout)),
        "{job:?}"
    );
}

#[test]
fn a_local_run_survives_kill_9_of_the_driver() {
    let env = env();
    let dir = scratch("local-kill-9");
    let engine = fake_engine(
        &dir,
        "slow-engine",
        &format!("sleep 4\nexec {} \"$@\"", engine_bin().display()),
    );
    let profile = write_profile(&dir, |p| p.engine.binary = engine);
    let prompts = write_prompts(&dir, 1, &["2k"]);
    let run = dir.join("run");
    let log = dir.join("driver.log");
    let a = args(&profile, &run, &prompts, &["--strategy", "tp-single-node"]);
    let mut first = spawn_driver(&a, &env, &log);
    let before = wait_for_state(&run, Duration::from_secs(60), "the job running", |s| {
        all_running(s, 1)
    });
    first.kill().unwrap();
    first.wait().unwrap();
    let log2 = dir.join("driver-again.log");
    let out = wait_output(spawn_driver(&a, &env, &log2), RUN_LIMIT, &log2);
    let s = summary(&out, &log2);
    assert_eq!(
        out.status.code(),
        Some(0),
        "log:\n{}",
        std::fs::read_to_string(&log2).unwrap()
    );
    assert_eq!(
        s.jobs[0].job_ids,
        vec![before.jobs[0].attempts[0].job_id.clone().unwrap()]
    );
    assert_eq!(s.jobs[0].attempts, 1);
}
