//! Scoring and reporting a run from its master table (one row per prompt, variant and strategy):
//! [`correctness`] compares each strategy's completion with the baseline's and with the expected
//! answer; [`report`] turns the scored table into `summary.csv`, `summary.md` and plots.
//!
//! Not for: collecting the jobs' artifacts into the table; that is `results::collector`.

pub mod correctness;
pub mod report;
mod table;

#[cfg(test)]
pub(crate) mod test_table;

use std::path::PathBuf;

/// The master table could not be scored, or a report file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("master table: no column `{column}` (expected {expected})")]
    MissingColumn { column: String, expected: String },
    #[error("master table: column `{column}` has type {found}, expected {expected}")]
    ColumnType {
        column: String,
        found: String,
        expected: String,
    },
    #[error("master table, row {row}: `{column}` is null")]
    Null { row: usize, column: String },
    #[error("tokenizer: cannot encode the {side} completion of row {row} ({key}): {message}")]
    Tokenize {
        row: usize,
        key: String,
        side: &'static str,
        message: String,
    },
    #[error("{path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("plot {name}: {message}")]
    Plot { name: String, message: String },
    #[error("building a table: {0}")]
    Polars(#[from] polars::prelude::PolarsError),
}
