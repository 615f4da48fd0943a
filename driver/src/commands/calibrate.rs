//! `driver calibrate`: measure this machine with the engine and write a CPU `[hardware]` preset.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use driver::fsutil::write_atomic;
use driver::inference::embedded::locate_engine;
use driver::perf::calibration::{calibrate, render, CalibrationOptions};

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// The engine binary [default: $ENGINE_BIN, else `engine` next to the driver].
    #[arg(long)]
    engine: Option<PathBuf>,
    /// The preset file to write (atomically).
    #[arg(long, default_value = "slurm/profiles/hardware/cpu-local.toml")]
    out: PathBuf,
    /// Print the preset instead of writing it.
    #[arg(long)]
    print: bool,
    /// The preset's name.
    #[arg(long, default_value = "cpu-local")]
    name: String,
    /// Cores the ranks share [default: the cores this process may use].
    #[arg(long)]
    cores: Option<usize>,
    /// Cores (threads) per rank: RAYON_NUM_THREADS of the measurement, as of the jobs.
    #[arg(long, default_value_t = 1)]
    threads_per_rank: usize,
    /// MiB of weights the decode GEMV streams (well above the last-level cache).
    #[arg(long, default_value_t = 1024)]
    gemv_mib: usize,
}

pub fn run(args: CalibrateArgs) -> anyhow::Result<i32> {
    let configured = args
        .engine
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let engine = locate_engine(&configured)?;
    let cores = args.cores.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
    });
    let options = CalibrationOptions {
        engine,
        name: args.name.clone(),
        cores,
        threads_per_rank: args.threads_per_rank.max(1),
        gemv_mib: args.gemv_mib,
        // SAFETY: geteuid has no preconditions and cannot fail.
        as_root: unsafe { libc::geteuid() } == 0,
    };
    eprintln!("measuring with {} (about 20 s)", options.engine.display());
    let calibration = calibrate(&options)?;
    let machine = format!(
        "{} ({}, {cores} cores)",
        hostname(),
        cpu_model().unwrap_or_else(|| "unknown CPU".into())
    );
    let text = render(
        &calibration,
        &machine,
        &chrono::Utc::now().format("%Y-%m-%d").to_string(),
    );
    if args.print {
        print!("{text}");
        return Ok(0);
    }
    write_atomic(&args.out, text.as_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprint!("{text}");
    println!("preset: {}", args.out.display());
    Ok(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this machine".into())
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, name)| name.trim().to_string())
}
