//! `driver run` on the project's local Slurm (slurm/local/: 2 fake nodes x 2 fake GPUs): the
//! embedded baseline on the tiny synthetic model, the four strategies as real sbatch jobs with
//! `srun --mpi=pmix`, collection, scoring and the report. Fails loudly when Slurm is not up.

mod common;

use std::time::Duration;

use common::pipeline::{
    check_report, driver_run, floats, only_run, run_table, strings, write_run_config, RunConfig,
};

#[test]
fn driver_run_on_the_local_slurm_runs_the_four_strategies_on_its_nodes() {
    let env = common::slurm_env();
    let dir = common::scratch("pipeline-slurm");
    let results = dir.join("results");
    let profile = common::write_profile(&dir, |_| {});
    let config = write_run_config(
        &dir,
        &RunConfig {
            results: &results,
            model: &common::tiny_model(),
            engine: &common::engine_bin(),
            profile: &profile,
            launcher: "slurm",
            prompt_ids: &["p03"],
            max_tokens: 4,
            strategies: &[],
        },
    );
    let log = dir.join("driver.log");
    let out = driver_run(&config, &env, &log, Duration::from_secs(1200));
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(out.status.success(), "driver run failed:\n{stderr}");

    let run = only_run(&results);
    let df = run_table(&run);
    assert_eq!(df.height(), 8, "{df}");
    let (strategy, nodes, completions) = (
        strings(&df, "strategy"),
        strings(&df, "nodes"),
        strings(&df, "cluster_completion"),
    );
    let (tp, pp) = (floats(&df, "tp"), floats(&df, "pp"));
    let job_ids = strings(&df, "job_id");
    for i in 0..df.height() {
        assert!(completions[i].is_some(), "row {i}: no completion");
        // Slurm's job ids are numbers; the local launcher's are timestamps in milliseconds.
        let id = job_ids[i].as_deref().unwrap();
        assert!(
            id.len() < 10 && id.parse::<u64>().is_ok(),
            "row {i}: job id {id}"
        );
        let (want_tp, want_pp, want_nodes) = match strategy[i].as_deref().unwrap() {
            "tp-across-nodes" => (4.0, 1.0, 2),
            "pp-across-nodes" => (1.0, 4.0, 2),
            "tp-single-node" => (2.0, 1.0, 1),
            "hybrid-tp-pp" => (2.0, 2.0, 2),
            other => panic!("unexpected strategy {other}"),
        };
        assert_eq!((tp[i], pp[i]), (Some(want_tp), Some(want_pp)), "row {i}");
        let used: Vec<&str> = nodes[i].as_deref().unwrap().split(',').collect();
        assert_eq!(used.len(), want_nodes, "row {i}: nodes {used:?}");
    }
    assert!(floats(&df, "correctness").iter().all(|c| c.is_some()));
    check_report(&run, 4, 2);
}
