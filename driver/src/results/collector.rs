//! [`ResultCollector`]: turns each finished job's artifacts into master-table rows beside the
//! baseline's, and checkpoints the table after every job. Collecting is idempotent (a job seen
//! twice, after a restart, replaces its rows), and a malformed artifact row is reported by path
//! and row while every other row is still collected.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::artifact::{read_artifact, ArtifactProblem, EngineRow};
use super::master::{self, MasterError, MasterRow};
use crate::data::table::TableRow;
use crate::slurm::run_state::{Attempt, JobProgress, JobRecord, RunState};
use crate::slurm::state::JobState;

/// Collects a run's job outputs into the master table.
pub struct ResultCollector {
    baseline: Vec<TableRow>,
    strategies: Vec<String>,
    /// `(strategy, variant, prompt_id)` -> row.
    rows: BTreeMap<(String, String, String), MasterRow>,
    problems: Vec<ArtifactProblem>,
    table_path: PathBuf,
}

/// What one job contributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Collected {
    /// Rows with the strategy's completion.
    pub answered: usize,
    /// Rows the job owed and did not give (failed job, or a row missing or malformed).
    pub missing: usize,
}

impl ResultCollector {
    /// `baseline`: the run's prompt table (its order is the table's order within a strategy);
    /// `strategies`: in the order the table lists them; `table_path`: the checkpoint.
    pub fn new(baseline: Vec<TableRow>, strategies: Vec<String>, table_path: PathBuf) -> Self {
        Self {
            baseline,
            strategies,
            rows: BTreeMap::new(),
            problems: Vec::new(),
            table_path,
        }
    }

    pub fn table_path(&self) -> &Path {
        &self.table_path
    }

    /// Every artifact row that could not be read, so far.
    pub fn problems(&self) -> &[ArtifactProblem] {
        &self.problems
    }

    /// The rows so far: strategies in their order, then the baseline table's order.
    pub fn rows(&self) -> Vec<MasterRow> {
        let mut out = Vec::with_capacity(self.rows.len());
        for strategy in &self.strategies {
            for b in &self.baseline {
                let key = (strategy.clone(), b.variant.clone(), b.prompt_id.clone());
                if let Some(row) = self.rows.get(&key) {
                    out.push(row.clone());
                }
            }
        }
        out
    }

    /// Collects every job of a run that has ended: the outputs of the succeeded ones, an error
    /// row per prompt for the failed ones.
    pub fn collect_run(&mut self, state: &RunState) -> Collected {
        let mut total = Collected::default();
        for job in &state.jobs {
            let got = match job.status {
                JobProgress::Active => continue,
                JobProgress::Succeeded => match last_completed(job) {
                    Some(attempt) => self.collect_attempt(job, attempt),
                    None => self.record_failed(job),
                },
                JobProgress::Failed => self.record_failed(job),
            };
            total.answered += got.answered;
            total.missing += got.missing;
        }
        total
    }

    /// Reads one completed attempt's artifact and placement into rows.
    pub fn collect_attempt(&mut self, job: &JobRecord, attempt: &Attempt) -> Collected {
        let out = &attempt.script.out;
        let artifact = read_artifact(out);
        // A job seen again (a restart) is read again from scratch.
        self.problems.retain(|p| &p.path != out);
        self.problems.extend(artifact.problems.iter().cloned());
        let nodes = placement_nodes(&attempt.script.placement).or_else(|| attempt.nodes.clone());
        let mut by_id: BTreeMap<&str, &EngineRow> = BTreeMap::new();
        for (i, row) in artifact.rows.iter().enumerate() {
            let known = self
                .baseline
                .iter()
                .any(|b| b.prompt_id == row.prompt_id && b.variant == job.variant);
            let problem = if row.variant != job.variant {
                Some(format!(
                    "prompt {} is variant {}, the job ran {}",
                    row.prompt_id, row.variant, job.variant
                ))
            } else if !known {
                Some(format!("prompt {} is not in this run", row.prompt_id))
            } else if by_id.contains_key(row.prompt_id.as_str()) {
                Some(format!(
                    "prompt {} appears twice; the first is kept",
                    row.prompt_id
                ))
            } else if row.tp.is_some_and(|tp| tp != attempt.args.tp as i64)
                || row.pp.is_some_and(|pp| pp != attempt.args.pp as i64)
            {
                Some(format!(
                    "prompt {} ran at tp={:?} pp={:?}, the job asked for tp={} pp={}",
                    row.prompt_id, row.tp, row.pp, attempt.args.tp, attempt.args.pp
                ))
            } else {
                None
            };
            match problem {
                Some(message) => self.problems.push(ArtifactProblem {
                    path: out.clone(),
                    row: None,
                    message: format!("row {}: {message}", i + 1),
                }),
                None => {
                    by_id.insert(&row.prompt_id, row);
                }
            }
        }
        let mut got = Collected::default();
        let baseline: Vec<TableRow> = self
            .baseline
            .iter()
            .filter(|b| b.variant == job.variant)
            .cloned()
            .collect();
        for b in &baseline {
            let mut row = MasterRow::from_baseline(b, &job.strategy);
            row.job_id = attempt.job_id.clone();
            row.attempt = Some(i64::from(attempt.number));
            row.tp = Some(attempt.args.tp as i64);
            row.pp = Some(attempt.args.pp as i64);
            row.nodes = nodes.clone();
            row.source_artifact = Some(out.display().to_string());
            match by_id.get(b.prompt_id.as_str()) {
                Some(e) => {
                    got.answered += 1;
                    fill_from_engine(&mut row, e);
                }
                None => {
                    got.missing += 1;
                    row.error = Some(format!(
                        "no readable row for this prompt in {}",
                        out.display()
                    ));
                }
            }
            self.insert(row);
        }
        got
    }

    /// One error row per prompt of a job that gave up: why, with the last attempt's state.
    pub fn record_failed(&mut self, job: &JobRecord) -> Collected {
        let last = job.attempts.last();
        let why = job
            .why
            .clone()
            .or_else(|| last.and_then(|a| a.reason.clone()))
            .unwrap_or_else(|| "the job gave no outputs".into());
        let baseline: Vec<TableRow> = self
            .baseline
            .iter()
            .filter(|b| b.variant == job.variant)
            .cloned()
            .collect();
        for b in &baseline {
            let mut row = MasterRow::from_baseline(b, &job.strategy);
            if let Some(a) = last {
                row.job_id = a.job_id.clone();
                row.attempt = Some(i64::from(a.number));
                row.tp = Some(a.args.tp as i64);
                row.pp = Some(a.args.pp as i64);
                row.nodes = a.nodes.clone();
            }
            row.error = Some(why.clone());
            self.insert(row);
        }
        Collected {
            answered: 0,
            missing: baseline.len(),
        }
    }

    fn insert(&mut self, row: MasterRow) {
        let key = (
            row.strategy.clone(),
            row.variant.clone(),
            row.prompt_id.clone(),
        );
        self.rows.insert(key, row);
    }

    /// Writes the rows so far to the checkpoint, atomically.
    pub fn checkpoint(&self) -> Result<(), MasterError> {
        let mut df = master::to_dataframe(&self.rows())?;
        master::write_parquet(&mut df, &self.table_path)
    }
}

/// The attempt whose outputs a succeeded job delivered: its last completed one with outputs.
fn last_completed(job: &JobRecord) -> Option<&Attempt> {
    job.attempts
        .iter()
        .rev()
        .find(|a| a.state == Some(JobState::Completed) && a.outputs_present)
}

fn fill_from_engine(row: &mut MasterRow, e: &EngineRow) {
    row.cluster_completion = Some(e.completion.clone());
    row.cluster_latency_ms = Some(e.latency_ms);
    row.ttft_ms = e.ttft_ms;
    row.decode_ms_per_token = e
        .inter_token_ms
        .as_deref()
        .and_then(|gaps| crate::metrics::report::stats::percentile(gaps, 50.0));
    row.completion_tokens = Some(e.completion_tokens);
    row.prompt_tokens = e.prompt_tokens;
    row.tokens_per_s =
        (e.latency_ms > 0.0).then(|| e.completion_tokens as f64 * 1000.0 / e.latency_ms);
    row.rank = e.rank;
    row.gpu_id = e.gpu_id;
    row.trace_path = e.trace_path.clone();
    row.cluster_logprobs = e.logprobs.clone();
    row.finish_reason = e.finish_reason.clone();
}

/// The distinct nodes of `placement.tsv` (`rank node gpus` per line), in rank order.
fn placement_nodes(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut ranks: Vec<(usize, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.parse().ok()?, f.next()?))
        })
        .collect();
    ranks.sort();
    let mut seen = BTreeSet::new();
    let nodes: Vec<&str> = ranks
        .iter()
        .filter(|(_, n)| seen.insert(*n))
        .map(|(_, n)| *n)
        .collect();
    (!nodes.is_empty()).then(|| nodes.join(","))
}

#[cfg(test)]
mod tests;
