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

/// Reads the run's `predicted_vs_measured.csv`, prints the report's section, and checks that
/// every strategy and variant was measured and that its decode time per token lies within
/// [`AGREEMENT`] of the prediction.
pub fn check_decode_agreement(run_dir: &Path, strategies: &[&str], variants: usize) {
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
    let outside: Vec<String> = (0..df.height())
        .filter(|&i| {
            !ratio[i].is_some_and(|r| (1.0 / AGREEMENT..=AGREEMENT).contains(&r))
                || rows[i].unwrap_or(0.0) < 1.0
        })
        .map(|i| {
            format!(
                "{}/{}: measured/predicted decode {:?}",
                strategy[i].as_deref().unwrap_or("?"),
                variant[i].as_deref().unwrap_or("?"),
                ratio[i]
            )
        })
        .collect();
    assert!(
        outside.is_empty(),
        "decode per token outside {AGREEMENT}x of the prediction: {outside:?} (table above)"
    );
}
