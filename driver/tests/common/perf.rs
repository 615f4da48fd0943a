//! Helpers for the performance model's acceptance checks: this machine calibrated with the
//! engine the jobs run, a profile using that calibration, and the report's predicted-vs-measured
//! table read back and checked.

use std::path::{Path, PathBuf};

use driver::perf::HardwareSpec;
use driver::slurm::profile::ClusterProfile;

use super::{driver, engine_bin, repo};

/// Measured decode per token must lie within this factor of the prediction, either way.
pub const AGREEMENT: f64 = 2.0;

/// `driver calibrate` with the test's engine, written into `dir`; the preset it wrote.
pub fn calibrate(dir: &Path) -> HardwareSpec {
    let out = dir.join("cpu-calibrated.toml");
    let result = driver()
        .args(["calibrate", "--engine"])
        .arg(engine_bin())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run driver calibrate");
    assert!(
        result.status.success(),
        "driver calibrate failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let spec = HardwareSpec::read_preset_file(&out).unwrap();
    eprintln!("{}", std::fs::read_to_string(&out).unwrap());
    spec
}

/// The local demo's profile (SmolLM2, 3 fake nodes x 3 on this machine) with `hardware` and
/// whatever `edit` changes, written into `dir`.
pub fn demo_profile(
    dir: &Path,
    hardware: HardwareSpec,
    edit: impl FnOnce(&mut ClusterProfile),
) -> PathBuf {
    let mut profile = ClusterProfile::load(&repo().join("slurm/profiles/local-demo.toml")).unwrap();
    profile.hardware = Some(hardware);
    edit(&mut profile);
    let path = dir.join("profile.toml");
    std::fs::write(&path, toml::to_string(&profile).unwrap()).unwrap();
    path
}

/// A strategy and variant whose measured decode time per token lies outside [`AGREEMENT`] of
/// the prediction (or was not measured).
#[derive(Debug, Clone, PartialEq)]
pub struct Disagreement {
    pub strategy: String,
    pub variant: String,
    pub ratio: Option<f64>,
}

/// Reads the run's `predicted_vs_measured.csv`, prints the report's section, checks that every
/// strategy and variant was measured, and returns those whose decode time per token lies
/// outside [`AGREEMENT`] of the prediction.
pub fn decode_disagreements(
    run_dir: &Path,
    strategies: &[&str],
    variants: usize,
) -> Vec<Disagreement> {
    let md = std::fs::read_to_string(run_dir.join("summary.md")).unwrap();
    let section = md
        .split("## Predicted vs measured")
        .nth(1)
        .unwrap_or_else(|| panic!("summary.md has no predicted-vs-measured section:\n{md}"));
    eprintln!("## Predicted vs measured{section}");
    let csv = run_dir.join("predicted_vs_measured.csv");
    let df = super::pipeline::read_csv(&csv);
    assert_eq!(df.height(), strategies.len() * variants, "{df}");
    let strategy = super::pipeline::strings(&df, "strategy");
    let variant = super::pipeline::strings(&df, "variant");
    let ratio = super::pipeline::floats(&df, "decode_ratio");
    let rows = super::pipeline::floats(&df, "decode_rows");
    for s in strategies {
        assert!(
            strategy.iter().any(|v| v.as_deref() == Some(*s)),
            "{s} missing from {}",
            csv.display()
        );
    }
    (0..df.height())
        .filter(|&i| {
            !ratio[i].is_some_and(|r| (1.0 / AGREEMENT..=AGREEMENT).contains(&r))
                || rows[i].unwrap_or(0.0) < 1.0
        })
        .map(|i| Disagreement {
            strategy: strategy[i].clone().unwrap_or_default(),
            variant: variant[i].clone().unwrap_or_default(),
            ratio: ratio[i],
        })
        .collect()
}

/// The acceptance check: every strategy's decode time per token in `run_dir` lies within
/// [`AGREEMENT`] of the prediction. A strategy outside it is measured once more, by
/// `measure_again` (a fresh calibration, then a run of those strategies alone, returning its run
/// folder), because this 2-core machine is shared and its rates move by up to 2x between
/// back-to-back measurements; the check fails for a strategy and variant outside in both runs.
/// A model that is wrong by more than 2x is wrong every time, so it still fails.
pub fn check_decode_agreement(
    run_dir: &Path,
    strategies: &[&str],
    variants: usize,
    measure_again: impl FnOnce(&[&str]) -> PathBuf,
) {
    let first = decode_disagreements(run_dir, strategies, variants);
    if first.is_empty() {
        return;
    }
    let mut again: Vec<&str> = Vec::new();
    for d in &first {
        if !again.contains(&d.strategy.as_str()) {
            again.push(&d.strategy);
        }
    }
    eprintln!(
        "decode per token outside {AGREEMENT}x of the prediction: {first:?}; measuring {again:?} \
         again"
    );
    let second_dir = measure_again(&again);
    let second = decode_disagreements(&second_dir, &again, variants);
    let both: Vec<String> = first
        .iter()
        .filter_map(|d| {
            let repeat = second
                .iter()
                .find(|r| r.strategy == d.strategy && r.variant == d.variant)?;
            Some(format!(
                "{}/{}: measured/predicted decode {:?}, then {:?}",
                d.strategy, d.variant, d.ratio, repeat.ratio
            ))
        })
        .collect();
    assert!(
        both.is_empty(),
        "decode per token outside {AGREEMENT}x of the prediction in both runs: {both:?} \
         (tables above)"
    );
}
