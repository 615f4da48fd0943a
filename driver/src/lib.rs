//! The local side of shardlab: prompt sets, the prompt table, the baseline run, Slurm jobs,
//! result collection, correctness scoring and reports; a performance model of the strategies.
//!
//! Not for: running the model; that is the engine's job, launched by the driver (`engine serve`
//! for the embedded baseline, `engine run` under Slurm for the strategies).

pub mod config;
pub mod data;
pub mod fsutil;
pub mod inference;
pub mod metrics;
pub mod orchestration;
pub mod parallelism;
pub mod perf;
pub mod results;
pub mod slurm;

/// This machine's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
