//! Running an experiment end to end: the run folder ([`run_folder`]) and the steps in order
//! ([`pipeline::DistributedExperimentPipeline`]).

pub mod pipeline;
pub mod run_folder;
