//! The local side of shardlab: prompt sets, the prompt table, the baseline run, Slurm jobs,
//! result collection, correctness scoring and reports.
//!
//! Not for: running the model; that is the engine's job, launched by the driver.
