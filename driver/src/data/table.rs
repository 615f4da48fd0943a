//! The prompt table: one row per (prompt, variant) with the baseline's results, as a polars
//! `DataFrame` stored in Parquet. Its columns and row order are fixed here, so every later step
//! (strategies, scoring, report) reloads the same rows in the same order.

use std::fmt;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::prompts::{PromptRecord, PromptRepository, PromptSetError};

/// The columns, in order.
pub const COLUMNS: [&str; 13] = [
    "prompt_id",
    "variant",
    "prompt",
    "token_budget",
    "source_file",
    "local_completion",
    "local_latency_ms",
    "status",
    "prompt_tokens",
    "local_ttft_ms",
    "local_completion_tokens",
    "local_error",
    "local_logprobs",
];

/// Tables written before `local_logprobs` existed end after `local_error`; they are read as
/// tables without logprobs.
const COLUMNS_WITHOUT_LOGPROBS: usize = 12;

/// Each column's type, in the order of [`COLUMNS`].
pub fn column_types() -> [DataType; 13] {
    use DataType::{Float64, Int64, String as Str};
    [
        Str,
        Str,
        Str,
        Int64,
        Str,
        Str,
        Float64,
        Str,
        Int64,
        Float64,
        Int64,
        Str,
        DataType::List(Box::new(Float64)),
    ]
}

/// Where a row stands: `pending` until the baseline ran it, then `ok` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowStatus {
    Pending,
    Ok,
    Failed,
}

impl RowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Pending => "pending",
            RowStatus::Ok => "ok",
            RowStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [RowStatus::Pending, RowStatus::Ok, RowStatus::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

impl fmt::Display for RowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    pub prompt_id: String,
    pub variant: String,
    pub prompt: String,
    pub token_budget: i64,
    pub source_file: String,
    pub local_completion: Option<String>,
    pub local_latency_ms: Option<f64>,
    pub status: RowStatus,
    pub prompt_tokens: i64,
    pub local_ttft_ms: Option<f64>,
    pub local_completion_tokens: Option<i64>,
    pub local_error: Option<String>,
    /// The chosen tokens' logprobs, when the baseline asked for them (`top_logprobs` > 0).
    pub local_logprobs: Option<Vec<f64>>,
}

impl TableRow {
    /// `p07/4k`, how logs and errors name a row.
    pub fn key(&self) -> String {
        format!("{}/{}", self.prompt_id, self.variant)
    }
}

/// The table could not be built, read or written.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error(transparent)]
    Prompts(#[from] PromptSetError),
    #[error("prompt {prompt_id} ({variant}): no metadata; load the repository first")]
    Metadata { prompt_id: String, variant: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("building the table: {0}")]
    Polars(#[from] PolarsError),
}

impl TableError {
    fn file(path: &Path, message: impl fmt::Display) -> Self {
        Self::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// The rows of the table, in their fixed order.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptTable {
    pub rows: Vec<TableRow>,
}

/// Builds the table of a prompt repository, before any inference: every row `pending`.
pub struct PromptDataFrameBuilder<'a> {
    repository: &'a PromptRepository,
}

impl<'a> PromptDataFrameBuilder<'a> {
    pub fn new(repository: &'a PromptRepository) -> Self {
        Self { repository }
    }

    /// The rows, in the repository's order (2k then 4k, each in the 2k file's order).
    pub fn table(&self) -> Result<PromptTable, TableError> {
        let records = self.repository.load_all()?;
        let rows = records
            .iter()
            .map(|record| self.row(record))
            .collect::<Result<_, _>>()?;
        Ok(PromptTable { rows })
    }

    /// The table as a `DataFrame` with [`COLUMNS`].
    pub fn build(&self) -> Result<DataFrame, TableError> {
        self.table()?.to_dataframe()
    }

    fn row(&self, record: &PromptRecord) -> Result<TableRow, TableError> {
        let meta = self
            .repository
            .metadata(&record.prompt_id, record.variant)
            .ok_or_else(|| TableError::Metadata {
                prompt_id: record.prompt_id.clone(),
                variant: record.variant.to_string(),
            })?;
        Ok(TableRow {
            prompt_id: record.prompt_id.clone(),
            variant: record.variant.to_string(),
            prompt: record.prompt.clone(),
            token_budget: record.token_budget as i64,
            source_file: meta.source_file.display().to_string(),
            local_completion: None,
            local_latency_ms: None,
            status: RowStatus::Pending,
            prompt_tokens: meta.token_count as i64,
            local_ttft_ms: None,
            local_completion_tokens: None,
            local_error: None,
            local_logprobs: None,
        })
    }
}

impl PromptTable {
    pub fn to_dataframe(&self) -> Result<DataFrame, TableError> {
        let rows = &self.rows;
        let text = |f: fn(&TableRow) -> &str| rows.iter().map(f).collect::<Vec<_>>();
        let opt_text =
            |f: fn(&TableRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<Option<&str>>>();
        let columns = vec![
            Column::new(COLUMNS[0].into(), text(|r| &r.prompt_id)),
            Column::new(COLUMNS[1].into(), text(|r| &r.variant)),
            Column::new(COLUMNS[2].into(), text(|r| &r.prompt)),
            Column::new(
                COLUMNS[3].into(),
                rows.iter().map(|r| r.token_budget).collect::<Vec<_>>(),
            ),
            Column::new(COLUMNS[4].into(), text(|r| &r.source_file)),
            Column::new(
                COLUMNS[5].into(),
                opt_text(|r| r.local_completion.as_deref()),
            ),
            Column::new(
                COLUMNS[6].into(),
                rows.iter().map(|r| r.local_latency_ms).collect::<Vec<_>>(),
            ),
            Column::new(COLUMNS[7].into(), text(|r| r.status.as_str())),
            Column::new(
                COLUMNS[8].into(),
                rows.iter().map(|r| r.prompt_tokens).collect::<Vec<_>>(),
            ),
            Column::new(
                COLUMNS[9].into(),
                rows.iter().map(|r| r.local_ttft_ms).collect::<Vec<_>>(),
            ),
            Column::new(
                COLUMNS[10].into(),
                rows.iter()
                    .map(|r| r.local_completion_tokens)
                    .collect::<Vec<_>>(),
            ),
            Column::new(COLUMNS[11].into(), opt_text(|r| r.local_error.as_deref())),
            logprob_column(
                COLUMNS[12],
                rows.iter().map(|r| r.local_logprobs.as_deref()),
            ),
        ];
        Ok(DataFrame::new(rows.len(), columns)?)
    }

    /// Reads a table back, checking the column names, their order and their types.
    pub fn from_dataframe(df: &DataFrame, origin: &Path) -> Result<Self, TableError> {
        let names: Vec<&str> = df.columns().iter().map(|c| c.name().as_str()).collect();
        if names != COLUMNS && names != COLUMNS[..COLUMNS_WITHOUT_LOGPROBS] {
            return Err(TableError::file(
                origin,
                format!("columns are {names:?}, expected {COLUMNS:?}"),
            ));
        }
        for (column, expected) in df.columns().iter().zip(column_types()) {
            if *column.dtype() != expected {
                return Err(TableError::file(
                    origin,
                    format!(
                        "column `{}` has type {}, expected {expected}",
                        column.name(),
                        column.dtype()
                    ),
                ));
            }
        }
        let col = |i: usize| &df.columns()[i];
        let bad = |e: PolarsError| TableError::file(origin, e);
        let (id, variant, prompt, source) = (
            col(0).str().map_err(bad)?,
            col(1).str().map_err(bad)?,
            col(2).str().map_err(bad)?,
            col(4).str().map_err(bad)?,
        );
        let (budget, tokens, completion_tokens) = (
            col(3).i64().map_err(bad)?,
            col(8).i64().map_err(bad)?,
            col(10).i64().map_err(bad)?,
        );
        let (completion, status, error) = (
            col(5).str().map_err(bad)?,
            col(7).str().map_err(bad)?,
            col(11).str().map_err(bad)?,
        );
        let (latency, ttft) = (col(6).f64().map_err(bad)?, col(9).f64().map_err(bad)?);
        let logprobs = match df.columns().get(12) {
            Some(c) => Some(c.list().map_err(bad)?),
            None => None,
        };
        let mut rows = Vec::with_capacity(df.height());
        for i in 0..df.height() {
            let required = |value: Option<&str>, name: &str| {
                value
                    .map(str::to_string)
                    .ok_or_else(|| TableError::file(origin, format!("row {i}: `{name}` is null")))
            };
            let status_text = required(status.get(i), "status")?;
            let row = TableRow {
                prompt_id: required(id.get(i), "prompt_id")?,
                variant: required(variant.get(i), "variant")?,
                prompt: required(prompt.get(i), "prompt")?,
                token_budget: budget.get(i).unwrap_or_default(),
                source_file: required(source.get(i), "source_file")?,
                local_completion: completion.get(i).map(str::to_string),
                local_latency_ms: latency.get(i),
                status: RowStatus::parse(&status_text).ok_or_else(|| {
                    TableError::file(
                        origin,
                        format!("row {i}: status `{status_text}`, expected pending, ok or failed"),
                    )
                })?,
                prompt_tokens: tokens.get(i).unwrap_or_default(),
                local_ttft_ms: ttft.get(i),
                local_completion_tokens: completion_tokens.get(i),
                local_error: error.get(i).map(str::to_string),
                local_logprobs: match logprobs {
                    Some(l) => float_list(l.get_as_series(i)).map_err(bad)?,
                    None => None,
                },
            };
            rows.push(row);
        }
        Ok(Self { rows })
    }

    /// Writes the table to `path` atomically (temp file, fsync, rename).
    pub fn write_parquet(&self, path: &Path) -> Result<(), TableError> {
        let mut df = self.to_dataframe()?;
        crate::fsutil::write_atomic_with(path, |file| {
            ParquetWriter::new(file)
                .with_compression(ParquetCompression::Uncompressed)
                .finish(&mut df)
                .map(|_| ())
                .map_err(std::io::Error::other)
        })
        .map_err(|e| TableError::file(path, format!("cannot write: {e}")))
    }

    pub fn read_parquet(path: &Path) -> Result<Self, TableError> {
        let df = read_parquet_frame(path)?;
        Self::from_dataframe(&df, path)
    }

    /// Checks that an existing table holds the same prompts, in the same order, as `fresh`.
    pub fn check_same_prompts(&self, fresh: &PromptTable) -> Result<(), String> {
        if self.rows.len() != fresh.rows.len() {
            return Err(format!(
                "it has {} rows, the prompt sets {}",
                self.rows.len(),
                fresh.rows.len()
            ));
        }
        for (i, (old, new)) in self.rows.iter().zip(&fresh.rows).enumerate() {
            if old.prompt_id != new.prompt_id || old.variant != new.variant {
                return Err(format!(
                    "row {i} is {}, the prompt sets have {} there",
                    old.key(),
                    new.key()
                ));
            }
            if old.prompt != new.prompt {
                return Err(format!(
                    "the prompt of {} changed since the table was written",
                    old.key()
                ));
            }
        }
        Ok(())
    }

    pub fn count(&self, status: RowStatus) -> usize {
        self.rows.iter().filter(|r| r.status == status).count()
    }
}

/// A nullable list-of-f64 column (per-token logprobs).
pub fn logprob_column<'a>(name: &str, values: impl Iterator<Item = Option<&'a [f64]>>) -> Column {
    let series: Vec<Option<Series>> = values
        .map(|v| v.map(|v| Series::new(PlSmallStr::EMPTY, v)))
        .collect();
    let mut list: ListChunked = series.into_iter().collect();
    list.rename(name.into());
    let mut column = list.into_column();
    // An all-null column would otherwise be typed List(Null).
    if let Ok(cast) = column.cast(&DataType::List(Box::new(DataType::Float64))) {
        column = cast;
    }
    column
}

/// One cell of a list-of-f64 column.
pub fn float_list(cell: Option<Series>) -> Result<Option<Vec<f64>>, PolarsError> {
    match cell {
        None => Ok(None),
        Some(s) => Ok(Some(
            s.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect(),
        )),
    }
}

/// Reads any Parquet file into a `DataFrame`.
pub fn read_parquet_frame(path: &Path) -> Result<DataFrame, TableError> {
    let file = std::fs::File::open(path).map_err(|e| TableError::file(path, e))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| TableError::file(path, format!("not a readable Parquet table: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, variant: &str) -> TableRow {
        TableRow {
            prompt_id: id.into(),
            variant: variant.into(),
            prompt: format!("prompt {id} {variant}"),
            token_budget: 2048,
            source_file: "data/prompts_2k.txt".into(),
            local_completion: None,
            local_latency_ms: None,
            status: RowStatus::Pending,
            prompt_tokens: 2001,
            local_ttft_ms: None,
            local_completion_tokens: None,
            local_error: None,
            local_logprobs: None,
        }
    }

    #[test]
    fn parquet_round_trip_keeps_rows_nulls_and_order() {
        let mut table = PromptTable {
            rows: vec![row("p01", "2k"), row("p02", "2k"), row("p01", "4k")],
        };
        table.rows[0].status = RowStatus::Ok;
        table.rows[0].local_completion = Some("Paris".into());
        table.rows[0].local_latency_ms = Some(12.5);
        table.rows[0].local_ttft_ms = Some(3.25);
        table.rows[0].local_completion_tokens = Some(2);
        table.rows[0].local_logprobs = Some(vec![-0.25, -1.5]);
        table.rows[1].status = RowStatus::Failed;
        table.rows[1].local_error = Some("HTTP 500".into());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        table.write_parquet(&path).unwrap();
        assert_eq!(PromptTable::read_parquet(&path).unwrap(), table);
    }

    #[test]
    fn a_table_of_other_prompts_is_told_apart() {
        let table = PromptTable {
            rows: vec![row("p01", "2k"), row("p02", "2k")],
        };
        assert!(table.check_same_prompts(&table.clone()).is_ok());
        let mut changed = table.clone();
        changed.rows[1].prompt.push('!');
        let message = table.check_same_prompts(&changed).unwrap_err();
        assert!(message.contains("p02/2k"), "{message}");
        let mut reordered = table.clone();
        reordered.rows.swap(0, 1);
        assert!(table.check_same_prompts(&reordered).is_err());
    }

    #[test]
    fn a_file_with_other_columns_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.parquet");
        let mut df = DataFrame::new(1, vec![Column::new("x".into(), vec![1i64])]).unwrap();
        let mut file = std::fs::File::create(&path).unwrap();
        ParquetWriter::new(&mut file).finish(&mut df).unwrap();
        let err = PromptTable::read_parquet(&path).unwrap_err().to_string();
        assert!(
            err.contains("other.parquet") && err.contains("columns"),
            "{err}"
        );
    }
}
