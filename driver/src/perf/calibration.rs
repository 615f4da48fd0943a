//! `driver calibrate`: measures this machine with the engine (`engine calibrate`: its own GEMM,
//! decode GEMV and decode-attention kernels on one rank's threads, then on as many ranks as the
//! cores hold at once; MPI ping-pong and all-reduce between ranks started by `mpirun`) and turns
//! the figures into a `[hardware]` preset file for CPU profiles, such as
//! `slurm/profiles/hardware/cpu-local.toml`.
//!
//! Every MPI figure is measured on this machine, so it stands for both links: the local
//! launcher's fake nodes are all this host.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::hardware_spec::HardwareSpec;

/// `engine calibrate --part compute`'s answer (the fields the preset uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeRates {
    pub threads: usize,
    pub matmul_flops_per_s: f64,
    pub gemv_bytes_per_s: f64,
    pub decode_attention_flops_per_s: f64,
    pub prefill_attention_flops_per_s: f64,
    pub layer: LayerOverhead,
}

/// A decoder layer's cost in decode beyond streaming its weights (`engine calibrate`'s `layer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerOverhead {
    pub overhead_s: f64,
}

/// `engine calibrate --part comm`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommRates {
    pub ranks: usize,
    pub latency_s: f64,
    pub bytes_per_s: f64,
    pub all_reduce_s: f64,
}

/// What to measure with, and what the preset says of the host.
#[derive(Debug, Clone)]
pub struct CalibrationOptions {
    pub engine: PathBuf,
    /// The preset's name (`preset = ...` in the file).
    pub name: String,
    /// Cores ranks share on this host.
    pub cores: usize,
    pub threads_per_rank: usize,
    /// MiB of weights the decode GEMV streams.
    pub gemv_mib: usize,
    /// Run `mpirun` as root (`--allow-run-as-root`).
    pub as_root: bool,
}

/// Everything measured, and the preset made of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// One rank alone.
    pub compute: ComputeRates,
    /// Each of the ranks the cores hold, all measuring at once.
    pub concurrent: Vec<ComputeRates>,
    pub comm: CommRates,
    /// Host memory, bytes (`/proc/meminfo`'s MemTotal).
    pub memory_bytes: f64,
    pub preset: HardwareSpec,
}

/// Why a calibration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` printed no figures it should ({error}): {stdout}")]
    Output {
        command: String,
        error: String,
        stdout: String,
    },
    #[error("{path}: cannot read the host's memory: {message}")]
    Memory { path: PathBuf, message: String },
}

/// Runs the engine's measurements on this machine: compute on one rank's threads, then MPI
/// between two ranks.
pub fn calibrate(options: &CalibrationOptions) -> Result<Calibration, CalibrationError> {
    let compute_command = || {
        let mut c = Command::new(&options.engine);
        c.args(["calibrate", "--part", "compute", "--gemv-mib"])
            .arg(options.gemv_mib.to_string())
            .env("RAYON_NUM_THREADS", options.threads_per_rank.to_string());
        c
    };
    // One rank alone, three times: each figure the median, so that a moment's disturbance (a
    // shared machine) does not set it.
    let runs = (0..3)
        .map(|_| run_json(compute_command()))
        .collect::<Result<Vec<ComputeRates>, _>>()?;
    let compute = median_rates(&runs);
    // As many ranks as the cores hold, started together: what the host gives them at once. The
    // best of three such runs, so that a moment's other work on a shared machine does not pass
    // for what the host can do.
    let ranks = (options.cores / options.threads_per_rank.max(1)).max(1);
    let total = |rates: &[ComputeRates]| rates.iter().map(|r| r.gemv_bytes_per_s).sum::<f64>();
    let mut concurrent: Vec<ComputeRates> = Vec::new();
    for _ in 0..3 {
        let run = concurrent_rates(&compute_command, ranks)?;
        if concurrent.is_empty() || total(&run) > total(&concurrent) {
            concurrent = run;
        }
    }
    let mut comm = Command::new("mpirun");
    comm.args(["-n", "2", "--oversubscribe"]);
    if options.as_root {
        comm.arg("--allow-run-as-root");
    }
    // As the local demo's jobs run: waiting ranks yield their core.
    comm.args(["-x", "OMPI_MCA_mpi_yield_when_idle=1"])
        .arg(&options.engine)
        .args(["calibrate", "--part", "comm"]);
    let comm: CommRates = run_json(comm)?;
    let memory_bytes = host_memory_bytes(Path::new("/proc/meminfo"))?;
    let preset = preset(options, &compute, &concurrent, &comm, memory_bytes);
    Ok(Calibration {
        compute,
        concurrent,
        comm,
        memory_bytes,
        preset,
    })
}

/// `ranks` compute measurements started together, each rank's figures.
fn concurrent_rates(
    compute_command: &dyn Fn() -> Command,
    ranks: usize,
) -> Result<Vec<ComputeRates>, CalibrationError> {
    let children = (0..ranks)
        .map(|_| {
            let mut c = compute_command();
            let shown = format!("{c:?}");
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map(|child| (shown.clone(), child))
                .map_err(|source| CalibrationError::Spawn {
                    command: shown,
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    children
        .into_iter()
        .map(|(shown, child)| {
            let out = child
                .wait_with_output()
                .map_err(|source| CalibrationError::Spawn {
                    command: shown.clone(),
                    source,
                })?;
            parse_json(&shown, out)
        })
        .collect()
}

/// Each figure's median over `runs` (the upper middle one for an even count).
fn median_rates(runs: &[ComputeRates]) -> ComputeRates {
    let median = |f: fn(&ComputeRates) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or_default()
    };
    ComputeRates {
        threads: runs.first().map_or(1, |r| r.threads),
        matmul_flops_per_s: median(|r| r.matmul_flops_per_s),
        gemv_bytes_per_s: median(|r| r.gemv_bytes_per_s),
        decode_attention_flops_per_s: median(|r| r.decode_attention_flops_per_s),
        prefill_attention_flops_per_s: median(|r| r.prefill_attention_flops_per_s),
        layer: LayerOverhead {
            overhead_s: median(|r| r.layer.overhead_s),
        },
    }
}

/// The preset of a calibration: measured rates as they are (achievable fraction 1), the host's
/// the sum of the concurrent ranks', the same MPI link inside and between nodes.
pub fn preset(
    options: &CalibrationOptions,
    compute: &ComputeRates,
    concurrent: &[ComputeRates],
    comm: &CommRates,
    memory_bytes: f64,
) -> HardwareSpec {
    let latency_us = comm.latency_s * 1e6;
    let total = |f: fn(&ComputeRates) -> f64| concurrent.iter().map(f).sum::<f64>();
    HardwareSpec {
        preset: Some(options.name.clone()),
        flops_per_s: Some(round3(compute.matmul_flops_per_s)),
        hbm_bytes_per_s: Some(round3(compute.gemv_bytes_per_s)),
        decode_attention_flops_per_s: Some(round3(compute.decode_attention_flops_per_s)),
        prefill_attention_flops_per_s: Some(round3(compute.prefill_attention_flops_per_s)),
        layer_overhead_us: Some(round3(compute.layer.overhead_s * 1e6)),
        memory_gb: Some(round3(memory_bytes / 1e9)),
        intra_node_bytes_per_s: Some(round3(comm.bytes_per_s)),
        intra_node_latency_us: Some(round3(latency_us)),
        inter_node_bytes_per_s: Some(round3(comm.bytes_per_s)),
        inter_node_latency_us: Some(round3(latency_us)),
        achievable_fraction: Some(1.0),
        host_cores: Some(options.cores),
        threads_per_rank: Some(options.threads_per_rank),
        host_flops_per_s: Some(round3(total(|c| c.matmul_flops_per_s))),
        host_memory_bytes_per_s: Some(round3(total(|c| c.gemv_bytes_per_s))),
        ..HardwareSpec::default()
    }
}

/// The preset file: a header saying where and when it was measured, then `[hardware]`.
pub fn render(calibration: &Calibration, machine: &str, date: &str) -> String {
    let c = &calibration.compute;
    let m = &calibration.comm;
    let mut text = format!(
        "# Written by `driver calibrate` on {machine}, {date}.\n\
         # The engine's own kernels on {threads} thread(s), as one rank computes \
         (`engine calibrate --part compute`),\n\
         # and MPI between 2 ranks of this host (`mpirun -n 2 engine calibrate --part comm`).\n\
         # Measured rates, so achievable_fraction = 1:\n\
         #   prefill matmul (512x1024 by 1024x2048): {:.1} GFLOP/s (flops_per_s)\n\
         #   decode GEMV streaming its weights: {:.2} GB/s (hbm_bytes_per_s)\n\
         #   decode attention over 2048 cached tokens: {:.2} GFLOP/s \
         (decode_attention_flops_per_s)\n\
         #   prefill attention of a 1024-token prompt: {:.2} GFLOP/s \
         (prefill_attention_flops_per_s)\n\
         #   a decoder layer in decode (SmolLM2's widths), beyond streaming its weights: {:.0} us \
         (layer_overhead_us)\n\
         #   {ranks} ranks at once, all together: {:.1} GFLOP/s matmul, {:.2} GB/s GEMV \
         (host_flops_per_s, host_memory_bytes_per_s)\n\
         #   MPI: {:.1} us half round trip, {:.2} GB/s; all-reduce of 4 KiB over 2 ranks {:.1} us\n\
         # Profiles use it with `[hardware] preset_file = \"hardware/<file>.toml\"`. On another \
         machine, run\n# `driver calibrate` again rather than editing the figures.\n",
        c.matmul_flops_per_s / 1e9,
        c.gemv_bytes_per_s / 1e9,
        c.decode_attention_flops_per_s / 1e9,
        c.prefill_attention_flops_per_s / 1e9,
        c.layer.overhead_s * 1e6,
        calibration.preset.host_flops_per_s.unwrap_or_default() / 1e9,
        calibration
            .preset
            .host_memory_bytes_per_s
            .unwrap_or_default()
            / 1e9,
        m.latency_s * 1e6,
        m.bytes_per_s / 1e9,
        m.all_reduce_s * 1e6,
        threads = c.threads,
        ranks = calibration.concurrent.len(),
    );
    text.push_str("[hardware]\n");
    // A flat table of numbers, strings and booleans: serialising it cannot fail.
    text.push_str(&toml::to_string(&calibration.preset).unwrap_or_default());
    text
}

/// Three significant digits: the figures are measurements, not constants.
fn round3(x: f64) -> f64 {
    // Through the decimal text, so that 1.25e11 prints as 125000000000.0, not ...99998.
    format!("{x:.2e}").parse().unwrap_or(x)
}

fn run_json<T: serde::de::DeserializeOwned>(mut command: Command) -> Result<T, CalibrationError> {
    let shown = format!("{command:?}");
    let out = command.output().map_err(|source| CalibrationError::Spawn {
        command: shown.clone(),
        source,
    })?;
    parse_json(&shown, out)
}

/// The JSON line a finished engine printed.
fn parse_json<T: serde::de::DeserializeOwned>(
    shown: &str,
    out: std::process::Output,
) -> Result<T, CalibrationError> {
    let shown = shown.to_string();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(CalibrationError::Failed {
            command: shown,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    // Rank 0 prints one JSON line; anything else (MPI's notices) is skipped.
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_default();
    serde_json::from_str(line).map_err(|e| CalibrationError::Output {
        command: shown,
        error: e.to_string(),
        stdout: stdout.clone(),
    })
}

/// `MemTotal` of a meminfo file, in bytes.
pub fn host_memory_bytes(path: &Path) -> Result<f64, CalibrationError> {
    let error = |message: String| CalibrationError::Memory {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let kib: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| error("no `MemTotal: N kB` line".into()))?;
    Ok(kib * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calibration() -> Calibration {
        let options = CalibrationOptions {
            engine: "engine".into(),
            name: "cpu-test".into(),
            cores: 2,
            threads_per_rank: 1,
            gemv_mib: 1024,
            as_root: false,
        };
        let compute = ComputeRates {
            threads: 1,
            matmul_flops_per_s: 79_684_869_562.9,
            gemv_bytes_per_s: 12_655_081_905.3,
            decode_attention_flops_per_s: 3_913_275_084.7,
            prefill_attention_flops_per_s: 14_012_345_678.9,
            layer: LayerOverhead {
                overhead_s: 3.3492e-4,
            },
        };
        let comm = CommRates {
            ranks: 2,
            latency_s: 3.164e-6,
            bytes_per_s: 2_137_384_523.2,
            all_reduce_s: 4.282e-6,
        };
        // Two ranks at once stream 8 GB/s each: 16 GB/s for the host, not 2 x 12.7.
        let concurrent = vec![
            ComputeRates {
                gemv_bytes_per_s: 8e9,
                ..compute.clone()
            };
            2
        ];
        let preset = preset(&options, &compute, &concurrent, &comm, 25_217_757_184.0);
        Calibration {
            compute,
            concurrent,
            comm,
            memory_bytes: 25_217_757_184.0,
            preset,
        }
    }

    #[test]
    fn each_single_rank_figure_is_the_median_of_the_runs() {
        let c = calibration().compute;
        let runs = [
            ComputeRates {
                gemv_bytes_per_s: 5e9,
                ..c.clone()
            },
            ComputeRates {
                matmul_flops_per_s: 1e9,
                ..c.clone()
            },
            c.clone(),
        ];
        assert_eq!(median_rates(&runs), c);
    }

    #[test]
    fn figures_keep_three_significant_digits() {
        assert_eq!(round3(79_684_869_562.9), 79_700_000_000.0);
        assert_eq!(round3(3.164), 3.16);
        assert_eq!(round3(0.0), 0.0);
    }

    #[test]
    fn the_preset_file_reads_back_as_the_measured_cpu_host() {
        let c = calibration();
        let text = render(&c, "vm (Intel Xeon, 2 cores)", "2026-11-28");
        assert!(
            text.starts_with("# Written by `driver calibrate` on vm"),
            "{text}"
        );
        assert!(text.contains("12.66 GB/s"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cpu.toml");
        std::fs::write(&path, &text).unwrap();
        let spec = HardwareSpec::read_preset_file(&path).unwrap();
        assert_eq!(spec, c.preset);
        let h = spec.resolve().unwrap();
        assert_eq!(h.name, "cpu-test");
        assert_eq!(h.hbm_bytes_per_s, 12.7e9);
        assert_eq!(h.decode_attention_flops_per_s, 3.91e9);
        assert!((h.layer_overhead_s - 335e-6).abs() < 1e-12);
        assert_eq!(h.intra_node.latency_s, h.inter_node.latency_s);
        assert!((h.intra_node.latency_s - 3.16e-6).abs() < 1e-12);
        assert_eq!(h.memory_bytes, 25.2e9);
        let host = h.host.unwrap();
        assert_eq!(host.slots(), 2);
        assert_eq!(host.memory_bytes_per_s, 16e9);
        // 2 x 79,684,869,562.9 to three digits.
        assert_eq!(host.flops_per_s, 159e9);
    }

    #[test]
    fn engine_output_is_found_among_mpi_notices() {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            r#"echo 'notice: something'; echo '{"ranks":2,"latency_s":3e-6,"bytes_per_s":2e9,"all_reduce_s":4e-6,"extra":1}'"#,
        ]);
        let rates: CommRates = run_json(c).unwrap();
        assert_eq!(rates.ranks, 2);
        let mut bad = Command::new("sh");
        bad.args(["-c", "echo nothing"]);
        let err = run_json::<CommRates>(bad).unwrap_err().to_string();
        assert!(err.contains("nothing"), "{err}");
    }

    #[test]
    fn meminfo_gives_the_total_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meminfo");
        std::fs::write(&path, "MemTotal:       24626716 kB\nMemFree: 1 kB\n").unwrap();
        assert_eq!(host_memory_bytes(&path).unwrap(), 24_626_716.0 * 1024.0);
        std::fs::write(&path, "nothing\n").unwrap();
        assert!(host_memory_bytes(&path).is_err());
    }
}
