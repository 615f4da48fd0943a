//! The performance model against a synthetic model: `driver run` on this machine (the local
//! launcher, one job at a time) with a random-weight Llama of `engine synth --preset small`'s
//! widths cut to 4 layers (hidden 1024, 8 heads, the Llama 3 vocabulary: about 1.3 GB in f32, so
//! decode streams real weights rather than paying per-kernel overheads), on 2 fake nodes x 2:
//! tp=4 across nodes, pp=4 across nodes, tp=2 on one node, tp=2 x pp=2. The machine is
//! calibrated first with the same engine; every strategy's measured decode time per token must
//! lie within 2x of the prediction in the run's report (a strategy outside it is measured once
//! more, and fails when it is outside again).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::perf::{calibrate, check_decode_agreement, demo_profile};
use common::pipeline::{driver_run, only_run, run_table, write_run_config, RunConfig};

const STRATEGIES: [&str; 4] = [
    "tp-across-nodes",
    "pp-across-nodes",
    "tp-single-node",
    "hybrid-tp-pp",
];

/// `engine synth --preset small --layers 4` with the Llama 3 tokenizer, written once per engine
/// build (as the tiny model is).
fn small_model() -> PathBuf {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = common::scratch("small-synth-parent").join("small-synth");
            let status = Command::new(common::engine_bin())
                .args(["synth", "--preset", "small", "--layers", "4", "--tokenizer"])
                .arg(common::model_path("llama3-tokenizer"))
                .arg("--out")
                .arg(&dir)
                .status()
                .expect("run engine synth");
            assert!(status.success(), "engine synth failed");
            dir
        })
        .clone()
}

/// Calibrates this machine, then `driver run` of `strategies` on the synthetic model over 2 fake
/// nodes x 2 in `dir`; the run's folder.
fn run_strategies(dir: &Path, strategies: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let results = dir.join("results");
    let model = small_model();
    let engine = common::engine_bin();
    let hardware = calibrate(dir);
    let profile = demo_profile(dir, hardware, |p| {
        p.name = "local-synthetic".into();
        p.cluster.nodes = 2;
        p.cluster.gpus_per_node = 2;
        // The layouts the 2 x 2 cluster derives, not the demo's pinned tp=3 ones.
        p.strategies.clear();
        p.model.use_config_json_at(model.clone());
    });
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
    let out = driver_run(&config, &[], &log, Duration::from_secs(900));
    assert!(
        out.status.success(),
        "driver run failed ({}):\n{}",
        out.status,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    eprintln!("driver run took {:?}", start.elapsed());
    let run = only_run(&results);
    let df = run_table(&run);
    assert_eq!(df.height(), strategies.len() * 2, "{df}");
    run
}

#[test]
fn decode_on_a_synthetic_model_agrees_with_the_performance_model_within_2x() {
    let dir = common::scratch("pipeline-synthetic");
    let run = run_strategies(&dir, &STRATEGIES);
    check_decode_agreement(&run, &STRATEGIES, 2, |again| {
        run_strategies(&dir.join("again"), again)
    });
}
