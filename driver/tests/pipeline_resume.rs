//! `driver run` killed with `kill -9` in the middle of its strategies, then `driver run --resume`:
//! it reattaches to the run's jobs, submits none twice, and ends with the same table as a run
//! that was never interrupted (timings, job ids and paths aside). The tiny synthetic model keeps
//! both runs to a minute or two; the launcher is the local one.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::pipeline::{
    check_report, driver_run, only_run, run_table, write_run_config, RunConfig,
};
use driver::slurm::run_state::{JobProgress, RunState};
use polars::prelude::*;

/// Columns that legitimately differ between two runs of the same experiment.
const RUN_SPECIFIC: [&str; 11] = [
    "local_latency_ms",
    "local_ttft_ms",
    "cluster_latency_ms",
    "ttft_ms",
    "tokens_per_s",
    "decode_ms_per_token",
    "job_id",
    "trace_path",
    "source_artifact",
    "nodes",
    "error",
];

fn config(dir: &Path, results: &Path) -> std::path::PathBuf {
    let profile = common::write_profile(dir, |_| {});
    write_run_config(
        dir,
        &RunConfig {
            results,
            model: &common::tiny_model(),
            engine: &common::engine_bin(),
            profile: &profile,
            launcher: "local",
            prompt_ids: &["p01", "p02"],
            max_tokens: 6,
            strategies: &[],
        },
    )
}

fn comparable(df: &DataFrame) -> DataFrame {
    let keep: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .filter(|n| !RUN_SPECIFIC.contains(&n.as_str()))
        .collect();
    df.select(keep).unwrap()
}

#[test]
fn a_killed_run_resumes_to_the_same_table_without_submitting_twice() {
    let dir = common::scratch("pipeline-resume");

    // The uninterrupted run.
    let whole = dir.join("whole");
    std::fs::create_dir_all(&whole).unwrap();
    let whole_results = whole.join("results");
    let log = whole.join("driver.log");
    let out = driver_run(
        &config(&whole, &whole_results),
        &[],
        &log,
        Duration::from_secs(900),
    );
    assert!(
        out.status.success(),
        "uninterrupted run failed:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let expected = run_table(&only_run(&whole_results));

    // The same run, killed once its first strategy's jobs have been collected.
    let cut = dir.join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    let results = cut.join("results");
    let cut_config = config(&cut, &results);
    let log = cut.join("driver-1.log");
    let mut child = common::driver()
        .args(["run", "--no-progress", "--config"])
        .arg(&cut_config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let run_dir = loop {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the first strategy never finished:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the driver ended ({status}) before it could be killed:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        let Ok(run_dir) = std::panic::catch_unwind(|| only_run(&results)) else {
            continue;
        };
        let Ok(Some(state)) = RunState::load(&run_dir) else {
            continue;
        };
        let done = state
            .jobs
            .iter()
            .filter(|j| j.status == JobProgress::Succeeded)
            .count();
        // The first strategy done and the second one's jobs started: kill in the middle.
        if done >= 2 && state.jobs.len() > done {
            break run_dir;
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();

    let log = cut.join("driver-2.log");
    let child = common::driver()
        .args(["run", "--no-progress", "--resume"])
        .arg(&run_dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let out = common::wait_output(child, Duration::from_secs(900), &log);
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(out.status.success(), "resumed run failed:\n{stderr}");
    assert!(stderr.contains("resuming run"), "{stderr}");

    // Every job ran exactly once: one attempt each, and one status file per job folder.
    let state = RunState::load(&run_dir).unwrap().unwrap();
    assert_eq!(state.jobs.len(), 8);
    for job in &state.jobs {
        assert_eq!(job.status, JobProgress::Succeeded, "{}", job.key());
        assert_eq!(job.attempts.len(), 1, "{} ran twice", job.key());
        let started: Vec<_> = std::fs::read_dir(&job.attempts[0].script.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".status"))
            .collect();
        assert_eq!(started.len(), 1, "{}: {started:?}", job.key());
    }

    let got = run_table(&run_dir);
    assert_eq!(comparable(&got), comparable(&expected));
    check_report(&run_dir, 4, 2);
}
