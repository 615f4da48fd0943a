//! `driver run` end to end on the embedded default: the real `engine serve` on SmolLM2 as the
//! baseline, the four strategies on this machine through the local launcher (`mpirun`), scoring
//! and the report. One prompt ID (its 2k and 4k prompts) and short completions keep it to
//! minutes; greedy decoding in f32 on the same model means every strategy must agree with the
//! baseline token for token. The machine is calibrated first (`driver calibrate`, with the
//! engine the jobs run), and every strategy's measured decode time per token must lie within 2x
//! of the performance model's prediction (the acceptance; the median gap between tokens,
//! the machine measured in the same environment as the run; a strategy outside 2x is measured
//! once more, and fails when it is outside again).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::perf::{calibrate, check_decode_agreement, demo_profile};
use common::pipeline::{
    check_report, driver_run, floats, only_run, run_table, strings, write_run_config, RunConfig,
};

const STRATEGIES: [&str; 4] = [
    "tp-across-nodes",
    "pp-across-nodes",
    "tp-single-node",
    "hybrid-tp-pp",
];

/// Calibrates this machine, then `driver run` of `strategies` on the embedded default in
/// `dir`; the run's folder.
fn run_strategies(dir: &Path, strategies: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let results = dir.join("results");
    let model = common::model_path("smollm2-135m-instruct");
    let engine = common::engine_bin();
    let profile = demo_profile(dir, calibrate(dir), |_| {});
    let config = write_run_config(
        dir,
        &RunConfig {
            results: &results,
            model: &model,
            engine: &engine,
            profile: &profile,
            launcher: "local",
            prompt_ids: &["p01"],
            max_tokens: 16,
            strategies,
        },
    );
    let log = dir.join("driver.log");
    let start = Instant::now();
    let out = driver_run(&config, &[], &log, Duration::from_secs(1800));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        out.status.success(),
        "driver run failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("driver run took {:?}", start.elapsed());
    assert!(stdout.contains("summary.md"), "{stdout}");
    only_run(&results)
}

#[test]
fn driver_run_on_the_embedded_default_agrees_with_the_baseline_and_reports() {
    let dir = common::scratch("pipeline-embedded");
    let run = run_strategies(&dir, &STRATEGIES);

    let df = run_table(&run);
    assert_eq!(df.height(), STRATEGIES.len() * 2, "{df}");
    let strategy = strings(&df, "strategy");
    for s in STRATEGIES {
        assert_eq!(
            strategy.iter().filter(|v| v.as_deref() == Some(s)).count(),
            2,
            "{s}: {strategy:?}"
        );
    }
    // Every strategy answered every prompt, with the layout it was asked for.
    let completions = strings(&df, "cluster_completion");
    let errors = strings(&df, "error");
    for (i, c) in completions.iter().enumerate() {
        assert!(
            c.as_deref().is_some_and(|c| !c.is_empty()),
            "row {i}: {:?}",
            errors[i]
        );
    }
    let (tp, pp) = (floats(&df, "tp"), floats(&df, "pp"));
    for (i, s) in strategy.iter().enumerate() {
        let want = match s.as_deref().unwrap() {
            "tp-across-nodes" | "tp-single-node" => (3.0, 1.0),
            "pp-across-nodes" => (1.0, 3.0),
            "hybrid-tp-pp" => (3.0, 2.0),
            other => panic!("unexpected strategy {other}"),
        };
        assert_eq!(
            (tp[i], pp[i]),
            (Some(want.0), Some(want.1)),
            "row {i}: {s:?}"
        );
    }
    // Greedy, f32, the same weights: token for token the baseline's answer.
    let agreement = floats(&df, "token_agreement");
    let local = strings(&df, "local_completion");
    for i in 0..df.height() {
        assert_eq!(
            agreement[i],
            Some(1.0),
            "row {i} ({:?}): baseline {:?} vs strategy {:?}",
            strategy[i],
            local[i],
            completions[i]
        );
    }
    // Both sides returned logprobs, and they agree closely.
    let gap = floats(&df, "logprob_mad");
    for (i, g) in gap.iter().enumerate() {
        let g = g.unwrap_or_else(|| panic!("row {i}: no logprob comparison"));
        assert!(g < 1e-3, "row {i}: mean logprob gap {g}");
    }
    check_report(&run, STRATEGIES.len(), 2);
    check_decode_agreement(&run, &STRATEGIES, 2, |again| {
        run_strategies(&dir.join("again"), again)
    });
}
