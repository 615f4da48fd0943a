//! `driver jobs` refuses impossible strategy configurations before anything is submitted: the
//! reason on stderr, exit status 1, and no job script or run state written.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use driver::slurm::profile::StrategyOverrides;

fn refused(dir: &Path, profile: &Path, extra: &[&str]) -> String {
    let prompts = write_prompts(dir, 1, &["2k"]);
    let run = dir.join("run");
    let out = Command::new(driver_bin())
        .arg("jobs")
        .args([
            "--profile",
            profile.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ])
        .args(["--prompts", prompts.to_str().unwrap()])
        .args(extra)
        // A Slurm that cannot be reached: the refusal must come before any Slurm command.
        .env("SLURM_CONF", "/nonexistent/slurm.conf")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        !run.join("state.json").exists(),
        "nothing may be written before the refusal"
    );
    assert!(!run.join("jobs").exists());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn more_stages_than_layers_is_refused_before_submission() {
    let dir = scratch("cli-pp");
    let profile = write_profile(&dir, |p| {
        p.strategies.insert(
            "pp-across-nodes".into(),
            StrategyOverrides {
                pp: Some(8),
                ..Default::default()
            },
        );
    });
    let err = refused(&dir, &profile, &[]);
    assert!(
        err.contains("pp=8 stages but the model has only 4 layers"),
        "{err}"
    );
}

#[test]
fn tp_not_dividing_the_heads_is_refused_before_submission() {
    let dir = scratch("cli-tp");
    let profile = write_profile(&dir, |_| {});
    let smollm2 = repo().join("models/smollm2-135m-instruct");
    assert!(
        smollm2.join("config.json").is_file(),
        "{} is missing: run `make model`",
        smollm2.display()
    );
    let err = refused(
        &dir,
        &profile,
        &[
            "--model",
            smollm2.to_str().unwrap(),
            "--strategy",
            "tp-across-nodes",
        ],
    );
    assert!(
        err.contains("tp=4 does not divide the model's 9 attention heads"),
        "{err}"
    );
}

#[test]
fn more_nodes_than_the_profile_has_is_refused_before_submission() {
    let dir = scratch("cli-nodes");
    let profile = write_profile(&dir, |p| {
        p.strategies.insert(
            "hybrid-tp-pp".into(),
            StrategyOverrides {
                nodes: Some(3),
                pp: Some(3),
                tp: Some(2),
                ..Default::default()
            },
        );
    });
    let err = refused(&dir, &profile, &["--strategy", "hybrid-tp-pp"]);
    assert!(
        err.contains("needs 3 nodes but the cluster profile has 2"),
        "{err}"
    );
}
