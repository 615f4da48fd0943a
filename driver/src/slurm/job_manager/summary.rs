//! A run's summary, job by job: for `driver status`, the internal CLI and the pipeline.

use serde::Serialize;

use crate::slurm::run_state::{JobProgress, RunState};
use crate::slurm::state::JobState;

/// How a run ended, job by job.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub jobs: Vec<JobSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    pub strategy: String,
    pub variant: String,
    pub status: JobProgress,
    pub attempts: usize,
    pub job_ids: Vec<String>,
    pub last_state: Option<JobState>,
    pub exit_code: Option<i32>,
    pub why: Option<String>,
}

/// Where every job of a saved run stands.
pub fn summarize(state: &RunState) -> RunSummary {
    RunSummary {
        run_id: state.run_id.clone(),
        jobs: state
            .jobs
            .iter()
            .map(|j| {
                let last = j.attempts.last();
                JobSummary {
                    strategy: j.strategy.clone(),
                    variant: j.variant.clone(),
                    status: j.status,
                    attempts: j.attempts.len(),
                    job_ids: j.attempts.iter().filter_map(|a| a.job_id.clone()).collect(),
                    last_state: last.and_then(|a| a.state),
                    exit_code: last.and_then(|a| a.exit_code),
                    why: j.why.clone(),
                }
            })
            .collect(),
    }
}
