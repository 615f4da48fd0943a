//! `JobScript`: the files of one attempt (script, outputs, logs) as the launchers and the job
//! manager use them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The files of one attempt, as the launchers and the job manager use them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobScript {
    pub job_name: String,
    /// The rendered script.
    pub script: PathBuf,
    /// The attempt's folder (the job's working directory and everything it writes).
    pub dir: PathBuf,
    /// The engine's JSONL output.
    pub out: PathBuf,
    /// One line per rank: rank, node, visible GPUs.
    pub placement: PathBuf,
    /// `--output` and `--error` patterns (`%j`: the job id).
    pub stdout: String,
    pub stderr: String,
    pub walltime_secs: u64,
    pub world_size: usize,
}

impl JobScript {
    /// The attempt's outputs are all there: the engine's rows and the placement.
    pub fn outputs_present(&self) -> bool {
        self.out.is_file() && self.placement.is_file()
    }

    /// The stdout and stderr files of the job with this id.
    pub fn log_paths(&self, job_id: &str) -> [PathBuf; 2] {
        [&self.stdout, &self.stderr]
            .map(|pattern| PathBuf::from(expand_log_pattern(pattern, job_id, &self.job_name)))
    }
}

/// Expands `%j`, `%x` and `%%` in a Slurm output pattern.
fn expand_log_pattern(pattern: &str, job_id: &str, job_name: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('j') => out.push_str(job_id),
            Some('x') => out.push_str(job_name),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_patterns_expand_the_job_id_and_name() {
        let got = super::expand_log_pattern("/r/job-%j.%x.out%%", "42", "n");
        assert_eq!(got, "/r/job-42.n.out%");
    }
}
