//! The run's report, rebuilt from the scored master table alone (and the run folder's
//! `perf_inputs.json`, when it has one): `summary.csv` and `summary.md` (one row per strategy and
//! variant, and which strategy to pick), plots as PNG and SVG, and `predicted_vs_measured.csv`
//! (the performance model's figures beside the measured ones, also a section of `summary.md`).
//!
//! Latency percentiles are nearest-rank ([`stats::percentile`]) over the rows that have a
//! latency; shares and means leave unknown values out, except that a failed strategy row counts
//! as a non-match for the exact-match share, as its `correctness` of 0.0 does for the mean.

mod markdown;
mod plots;
pub mod predicted;
mod rows;
pub mod stats;

use std::path::{Path, PathBuf};

use polars::prelude::*;

use self::predicted::Comparison;
use self::rows::ScoredRow;
use super::MetricsError;
use crate::fsutil;
use crate::perf::PerfInputs;

/// The columns of `summary.csv`, in order.
pub const SUMMARY_COLUMNS: [&str; 15] = [
    "strategy",
    "variant",
    "prompts",
    "correctness_mean",
    "correctness_min",
    "exact_match_share",
    "answer_accuracy",
    "baseline_answer_accuracy",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "ttft_p50_ms",
    "tokens_per_s_mean",
    "failures",
    "retries",
];

/// A strategy is recommended only if its mean correctness reaches this.
pub const RECOMMEND_MIN_CORRECTNESS: f64 = 0.99;

/// One strategy and variant (or `all` variants) of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub strategy: String,
    pub variant: String,
    /// Rows of the table: prompts asked of this strategy.
    pub prompts: usize,
    pub correctness_mean: Option<f64>,
    pub correctness_min: Option<f64>,
    /// Share of compared rows (baseline answered) where the completion is the baseline's.
    pub exact_match_share: Option<f64>,
    /// Share of rows with an expected answer that the strategy got right.
    pub answer_accuracy: Option<f64>,
    /// The same for the baseline, over the same prompts.
    pub baseline_answer_accuracy: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p90_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub tokens_per_s_mean: Option<f64>,
    /// Rows without a completion from the strategy.
    pub failures: usize,
    /// Resubmissions: the sum of `attempt - 1`.
    pub retries: i64,
}

impl SummaryRow {
    fn of(strategy: &str, variant: &str, rows: &[&ScoredRow]) -> Self {
        let known = |f: fn(&ScoredRow) -> Option<f64>| rows.iter().filter_map(|r| f(r)).collect();
        let correctness: Vec<f64> = known(|r| r.correctness);
        let latency: Vec<f64> = known(|r| r.latency_ms);
        let ttft: Vec<f64> = known(|r| r.ttft_ms);
        let tokens_per_s: Vec<f64> = known(|r| r.tokens_per_s);
        let compared = rows.iter().filter(|r| r.correctness.is_some());
        Self {
            strategy: strategy.to_string(),
            variant: variant.to_string(),
            prompts: rows.len(),
            correctness_mean: stats::mean(&correctness),
            correctness_min: stats::min(&correctness),
            exact_match_share: stats::share_true(
                compared.map(|r| Some(r.exact_match.unwrap_or(false))),
            ),
            answer_accuracy: stats::share_true(rows.iter().map(|r| r.answer_correct)),
            baseline_answer_accuracy: stats::share_true(
                rows.iter().map(|r| r.baseline_answer_correct),
            ),
            latency_p50_ms: stats::percentile(&latency, 50.0),
            latency_p90_ms: stats::percentile(&latency, 90.0),
            latency_p99_ms: stats::percentile(&latency, 99.0),
            ttft_p50_ms: stats::percentile(&ttft, 50.0),
            tokens_per_s_mean: stats::mean(&tokens_per_s),
            failures: rows.iter().filter(|r| r.failed).count(),
            retries: rows
                .iter()
                .filter_map(|r| r.attempt)
                .map(|a| (a - 1).max(0))
                .sum(),
        }
    }
}

/// The summary of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// One row per strategy and variant: strategies in order of first appearance in the table,
    /// then variants likewise.
    pub rows: Vec<SummaryRow>,
    /// One row per strategy over all its variants (variant `all`); the recommendation uses these.
    pub overall: Vec<SummaryRow>,
    /// Predicted beside measured figures; none when the run kept no performance model inputs.
    pub predicted: Option<Comparison>,
}

impl RunSummary {
    /// Summarises a master table scored by `CorrectnessEvaluator`.
    pub fn from_table(df: &DataFrame) -> Result<Self, MetricsError> {
        Self::from_table_predicted(df, None)
    }

    /// Summarises the table and, with the run's performance model inputs, compares each
    /// strategy and variant with its prediction.
    pub fn from_table_predicted(
        df: &DataFrame,
        inputs: Option<&PerfInputs>,
    ) -> Result<Self, MetricsError> {
        let rows = rows::read(df)?;
        let mut summary = Self::from_rows(&rows);
        summary.predicted = inputs.map(|inputs| Comparison::of(&rows, inputs));
        Ok(summary)
    }

    fn from_rows(rows: &[ScoredRow]) -> Self {
        let strategies = rows::distinct(rows, |r| &r.strategy);
        let variants = rows::distinct(rows, |r| &r.variant);
        let mut summary = Self {
            rows: Vec::new(),
            overall: Vec::new(),
            predicted: None,
        };
        for strategy in &strategies {
            let of_strategy: Vec<&ScoredRow> =
                rows.iter().filter(|r| r.strategy == *strategy).collect();
            for variant in &variants {
                let group: Vec<&ScoredRow> = of_strategy
                    .iter()
                    .copied()
                    .filter(|r| r.variant == *variant)
                    .collect();
                if !group.is_empty() {
                    summary.rows.push(SummaryRow::of(strategy, variant, &group));
                }
            }
            summary
                .overall
                .push(SummaryRow::of(strategy, "all", &of_strategy));
        }
        summary
    }

    /// The summary rows as a table with [`SUMMARY_COLUMNS`].
    pub fn to_dataframe(&self) -> Result<DataFrame, MetricsError> {
        let rows = &self.rows;
        let text = |f: fn(&SummaryRow) -> &str| rows.iter().map(f).collect::<Vec<_>>();
        let float = |f: fn(&SummaryRow) -> Option<f64>| rows.iter().map(f).collect::<Vec<_>>();
        let int = |f: fn(&SummaryRow) -> i64| rows.iter().map(f).collect::<Vec<_>>();
        let columns = vec![
            Column::new(SUMMARY_COLUMNS[0].into(), text(|r| &r.strategy)),
            Column::new(SUMMARY_COLUMNS[1].into(), text(|r| &r.variant)),
            Column::new(SUMMARY_COLUMNS[2].into(), int(|r| r.prompts as i64)),
            Column::new(SUMMARY_COLUMNS[3].into(), float(|r| r.correctness_mean)),
            Column::new(SUMMARY_COLUMNS[4].into(), float(|r| r.correctness_min)),
            Column::new(SUMMARY_COLUMNS[5].into(), float(|r| r.exact_match_share)),
            Column::new(SUMMARY_COLUMNS[6].into(), float(|r| r.answer_accuracy)),
            Column::new(
                SUMMARY_COLUMNS[7].into(),
                float(|r| r.baseline_answer_accuracy),
            ),
            Column::new(SUMMARY_COLUMNS[8].into(), float(|r| r.latency_p50_ms)),
            Column::new(SUMMARY_COLUMNS[9].into(), float(|r| r.latency_p90_ms)),
            Column::new(SUMMARY_COLUMNS[10].into(), float(|r| r.latency_p99_ms)),
            Column::new(SUMMARY_COLUMNS[11].into(), float(|r| r.ttft_p50_ms)),
            Column::new(SUMMARY_COLUMNS[12].into(), float(|r| r.tokens_per_s_mean)),
            Column::new(SUMMARY_COLUMNS[13].into(), int(|r| r.failures as i64)),
            Column::new(SUMMARY_COLUMNS[14].into(), int(|r| r.retries)),
        ];
        Ok(DataFrame::new(rows.len(), columns)?)
    }

    /// `summary.md`: the table and which strategy to pick.
    pub fn to_markdown(&self) -> String {
        markdown::render(self)
    }

    /// One paragraph on which strategy to run, computed from the numbers.
    pub fn recommendation(&self) -> String {
        markdown::recommendation(&self.overall)
    }

    /// Writes `summary.csv`, `summary.md`, `predicted_vs_measured.csv` (with predictions) and the
    /// plots of `df` (the scored table this summary came from) into `dir`, each atomically;
    /// returns the files written.
    pub fn write(&self, df: &DataFrame, dir: &Path) -> Result<Vec<PathBuf>, MetricsError> {
        let mut written = Vec::new();
        let csv = dir.join("summary.csv");
        write_csv(&csv, &mut self.to_dataframe()?)?;
        written.push(csv);
        if let Some(predicted) = &self.predicted {
            let csv = dir.join("predicted_vs_measured.csv");
            write_csv(&csv, &mut predicted.to_dataframe()?)?;
            written.push(csv);
        }
        let md = dir.join("summary.md");
        fsutil::write_atomic(&md, self.to_markdown().as_bytes())
            .map_err(|e| write_error(&md, e))?;
        written.push(md);
        written.extend(plots::write_all(&rows::read(df)?, dir)?);
        tracing::info!(dir = %dir.display(), files = written.len(), "wrote the report");
        Ok(written)
    }
}

fn write_csv(path: &Path, table: &mut DataFrame) -> Result<(), MetricsError> {
    fsutil::write_atomic_with(path, |file| {
        CsvWriter::new(file)
            .include_header(true)
            .finish(table)
            .map_err(std::io::Error::other)
    })
    .map_err(|e| write_error(path, e))
}

fn write_error(path: &Path, error: std::io::Error) -> MetricsError {
    MetricsError::Write {
        path: path.to_path_buf(),
        message: format!("cannot write: {error}"),
    }
}

#[cfg(test)]
mod tests;
