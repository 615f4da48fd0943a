//! Slurm jobs: cluster profiles, job scripts (`job_factory`), job states, the launchers that run
//! them (Slurm or this machine) and the `job_manager` that submits, watches and retries them.

pub mod job_factory;
pub mod job_manager;
pub mod launcher;
pub mod profile;
pub mod run_state;
pub mod state;
