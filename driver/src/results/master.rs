//! The master table: one row per prompt, variant and strategy, the baseline's answer beside the
//! strategy's. Scoring and the report read it; it is checkpointed as `results/run_<ts>.parquet`.

use std::path::Path;

use polars::prelude::*;

use crate::data::table::{float_list, logprob_column, TableRow};

/// The columns, in order.
pub const MASTER_COLUMNS: [&str; 29] = [
    "prompt_id",
    "variant",
    "strategy",
    "token_budget",
    "prompt_tokens",
    "local_completion",
    "local_latency_ms",
    "local_ttft_ms",
    "local_completion_tokens",
    "status",
    "local_logprobs",
    "rank",
    "gpu_id",
    "cluster_completion",
    "cluster_latency_ms",
    "trace_path",
    "job_id",
    "nodes",
    "tp",
    "pp",
    "ttft_ms",
    "completion_tokens",
    "tokens_per_s",
    "decode_ms_per_token",
    "attempt",
    "error",
    "cluster_logprobs",
    "finish_reason",
    "source_artifact",
];

/// One prompt answered by one strategy, beside the baseline's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterRow {
    pub prompt_id: String,
    pub variant: String,
    pub strategy: String,
    pub token_budget: i64,
    pub prompt_tokens: Option<i64>,
    // The baseline's side (the prompt table's row).
    pub local_completion: Option<String>,
    pub local_latency_ms: Option<f64>,
    pub local_ttft_ms: Option<f64>,
    pub local_completion_tokens: Option<i64>,
    /// The baseline row's status: `ok`, `failed` or `pending`.
    pub status: String,
    pub local_logprobs: Option<Vec<f64>>,
    // The strategy's side; `None` where its job gave no row for this prompt.
    pub rank: Option<i64>,
    pub gpu_id: Option<i64>,
    pub cluster_completion: Option<String>,
    pub cluster_latency_ms: Option<f64>,
    pub trace_path: Option<String>,
    pub job_id: Option<String>,
    /// The nodes the job's ranks ran on, comma-separated.
    pub nodes: Option<String>,
    pub tp: Option<i64>,
    pub pp: Option<i64>,
    pub ttft_ms: Option<f64>,
    pub completion_tokens: Option<i64>,
    /// Generated tokens per second of the request's whole latency.
    pub tokens_per_s: Option<f64>,
    /// The median gap between consecutive generated tokens (the engine's inter-token times);
    /// `None` from an engine that does not report them.
    pub decode_ms_per_token: Option<f64>,
    /// The job attempt that produced the row (1: the first).
    pub attempt: Option<i64>,
    /// Why the strategy has no answer for this prompt.
    pub error: Option<String>,
    pub cluster_logprobs: Option<Vec<f64>>,
    pub finish_reason: Option<String>,
    /// The artifact the row was read from.
    pub source_artifact: Option<String>,
}

impl MasterRow {
    /// A row with the baseline's side filled and no strategy result yet.
    pub fn from_baseline(baseline: &TableRow, strategy: &str) -> Self {
        Self {
            prompt_id: baseline.prompt_id.clone(),
            variant: baseline.variant.clone(),
            strategy: strategy.to_string(),
            token_budget: baseline.token_budget,
            prompt_tokens: None,
            local_completion: baseline.local_completion.clone(),
            local_latency_ms: baseline.local_latency_ms,
            local_ttft_ms: baseline.local_ttft_ms,
            local_completion_tokens: baseline.local_completion_tokens,
            status: baseline.status.as_str().to_string(),
            local_logprobs: baseline.local_logprobs.clone(),
            rank: None,
            gpu_id: None,
            cluster_completion: None,
            cluster_latency_ms: None,
            trace_path: None,
            job_id: None,
            nodes: None,
            tp: None,
            pp: None,
            ttft_ms: None,
            completion_tokens: None,
            tokens_per_s: None,
            decode_ms_per_token: None,
            attempt: None,
            error: None,
            cluster_logprobs: None,
            finish_reason: None,
            source_artifact: None,
        }
    }

    /// `strategy/p07/4k`, how messages name a row.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.strategy, self.prompt_id, self.variant)
    }
}

/// The master table could not be built, read or written.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("{path}: {message}")]
    File {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("building the master table: {0}")]
    Polars(#[from] PolarsError),
}

/// The rows as a `DataFrame`, columns in [`MASTER_COLUMNS`] order.
pub fn to_dataframe(rows: &[MasterRow]) -> Result<DataFrame, MasterError> {
    fn strs<'a>(
        rows: &'a [MasterRow],
        f: impl Fn(&'a MasterRow) -> Option<&'a str>,
    ) -> Vec<Option<&'a str>> {
        rows.iter().map(f).collect()
    }
    fn ints(rows: &[MasterRow], f: impl Fn(&MasterRow) -> Option<i64>) -> Vec<Option<i64>> {
        rows.iter().map(f).collect()
    }
    fn floats(rows: &[MasterRow], f: impl Fn(&MasterRow) -> Option<f64>) -> Vec<Option<f64>> {
        rows.iter().map(f).collect()
    }
    let c = |i: usize| PlSmallStr::from(MASTER_COLUMNS[i]);
    let columns = vec![
        Column::new(c(0), strs(rows, |r| Some(&r.prompt_id))),
        Column::new(c(1), strs(rows, |r| Some(&r.variant))),
        Column::new(c(2), strs(rows, |r| Some(&r.strategy))),
        Column::new(c(3), ints(rows, |r| Some(r.token_budget))),
        Column::new(c(4), ints(rows, |r| r.prompt_tokens)),
        Column::new(c(5), strs(rows, |r| r.local_completion.as_deref())),
        Column::new(c(6), floats(rows, |r| r.local_latency_ms)),
        Column::new(c(7), floats(rows, |r| r.local_ttft_ms)),
        Column::new(c(8), ints(rows, |r| r.local_completion_tokens)),
        Column::new(c(9), strs(rows, |r| Some(&r.status))),
        logprob_column(
            MASTER_COLUMNS[10],
            rows.iter().map(|r| r.local_logprobs.as_deref()),
        ),
        Column::new(c(11), ints(rows, |r| r.rank)),
        Column::new(c(12), ints(rows, |r| r.gpu_id)),
        Column::new(c(13), strs(rows, |r| r.cluster_completion.as_deref())),
        Column::new(c(14), floats(rows, |r| r.cluster_latency_ms)),
        Column::new(c(15), strs(rows, |r| r.trace_path.as_deref())),
        Column::new(c(16), strs(rows, |r| r.job_id.as_deref())),
        Column::new(c(17), strs(rows, |r| r.nodes.as_deref())),
        Column::new(c(18), ints(rows, |r| r.tp)),
        Column::new(c(19), ints(rows, |r| r.pp)),
        Column::new(c(20), floats(rows, |r| r.ttft_ms)),
        Column::new(c(21), ints(rows, |r| r.completion_tokens)),
        Column::new(c(22), floats(rows, |r| r.tokens_per_s)),
        Column::new(c(23), floats(rows, |r| r.decode_ms_per_token)),
        Column::new(c(24), ints(rows, |r| r.attempt)),
        Column::new(c(25), strs(rows, |r| r.error.as_deref())),
        logprob_column(
            MASTER_COLUMNS[26],
            rows.iter().map(|r| r.cluster_logprobs.as_deref()),
        ),
        Column::new(c(27), strs(rows, |r| r.finish_reason.as_deref())),
        Column::new(c(28), strs(rows, |r| r.source_artifact.as_deref())),
    ];
    Ok(DataFrame::new(rows.len(), columns)?)
}

/// Reads rows back from a master table (scored or not: extra columns are ignored).
pub fn from_dataframe(df: &DataFrame, origin: &Path) -> Result<Vec<MasterRow>, MasterError> {
    let bad = |message: String| MasterError::File {
        path: origin.to_path_buf(),
        message,
    };
    let get = |name: &str| {
        df.column(name)
            .map_err(|_| bad(format!("no column `{name}`")))
    };
    let s = |name: &str| -> Result<StringChunked, MasterError> {
        get(name)?
            .str()
            .cloned()
            .map_err(|e| bad(format!("column `{name}`: {e}")))
    };
    let i = |name: &str| -> Result<Int64Chunked, MasterError> {
        get(name)?
            .i64()
            .cloned()
            .map_err(|e| bad(format!("column `{name}`: {e}")))
    };
    let f = |name: &str| -> Result<Float64Chunked, MasterError> {
        get(name)?
            .f64()
            .cloned()
            .map_err(|e| bad(format!("column `{name}`: {e}")))
    };
    let l = |name: &str| -> Result<ListChunked, MasterError> {
        get(name)?
            .list()
            .cloned()
            .map_err(|e| bad(format!("column `{name}`: {e}")))
    };
    let (prompt_id, variant, strategy) = (s("prompt_id")?, s("variant")?, s("strategy")?);
    let (token_budget, prompt_tokens) = (i("token_budget")?, i("prompt_tokens")?);
    let local_completion = s("local_completion")?;
    let (local_latency, local_ttft) = (f("local_latency_ms")?, f("local_ttft_ms")?);
    let local_tokens = i("local_completion_tokens")?;
    let status = s("status")?;
    let local_logprobs = l("local_logprobs")?;
    let (rank, gpu_id) = (i("rank")?, i("gpu_id")?);
    let cluster_completion = s("cluster_completion")?;
    let cluster_latency = f("cluster_latency_ms")?;
    let (trace_path, job_id, nodes) = (s("trace_path")?, s("job_id")?, s("nodes")?);
    let (tp, pp) = (i("tp")?, i("pp")?);
    let ttft = f("ttft_ms")?;
    let completion_tokens = i("completion_tokens")?;
    let tokens_per_s = f("tokens_per_s")?;
    // Tables written before the engine reported inter-token times have no such column.
    let decode_ms_per_token = match df.column("decode_ms_per_token") {
        Ok(_) => Some(f("decode_ms_per_token")?),
        Err(_) => None,
    };
    let attempt = i("attempt")?;
    let error = s("error")?;
    let cluster_logprobs = l("cluster_logprobs")?;
    let finish_reason = s("finish_reason")?;
    let source = s("source_artifact")?;
    let owned = |v: Option<&str>| v.map(str::to_string);
    let mut rows = Vec::with_capacity(df.height());
    for n in 0..df.height() {
        let required = |v: Option<&str>, name: &str| {
            v.map(str::to_string)
                .ok_or_else(|| bad(format!("row {n}: `{name}` is null")))
        };
        let list = |l: &ListChunked, name: &str| {
            float_list(l.get_as_series(n)).map_err(|e| bad(format!("row {n}: `{name}`: {e}")))
        };
        rows.push(MasterRow {
            prompt_id: required(prompt_id.get(n), "prompt_id")?,
            variant: required(variant.get(n), "variant")?,
            strategy: required(strategy.get(n), "strategy")?,
            token_budget: token_budget.get(n).unwrap_or_default(),
            prompt_tokens: prompt_tokens.get(n),
            local_completion: owned(local_completion.get(n)),
            local_latency_ms: local_latency.get(n),
            local_ttft_ms: local_ttft.get(n),
            local_completion_tokens: local_tokens.get(n),
            status: required(status.get(n), "status")?,
            local_logprobs: list(&local_logprobs, "local_logprobs")?,
            rank: rank.get(n),
            gpu_id: gpu_id.get(n),
            cluster_completion: owned(cluster_completion.get(n)),
            cluster_latency_ms: cluster_latency.get(n),
            trace_path: owned(trace_path.get(n)),
            job_id: owned(job_id.get(n)),
            nodes: owned(nodes.get(n)),
            tp: tp.get(n),
            pp: pp.get(n),
            ttft_ms: ttft.get(n),
            completion_tokens: completion_tokens.get(n),
            tokens_per_s: tokens_per_s.get(n),
            decode_ms_per_token: decode_ms_per_token.as_ref().and_then(|c| c.get(n)),
            attempt: attempt.get(n),
            error: owned(error.get(n)),
            cluster_logprobs: list(&cluster_logprobs, "cluster_logprobs")?,
            finish_reason: owned(finish_reason.get(n)),
            source_artifact: owned(source.get(n)),
        });
    }
    Ok(rows)
}

/// Writes a frame to Parquet atomically (temp file, fsync, rename).
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<(), MasterError> {
    crate::fsutil::write_atomic_with(path, |file| {
        ParquetWriter::new(file)
            .finish(df)
            .map(|_| ())
            .map_err(std::io::Error::other)
    })
    .map_err(|e| MasterError::File {
        path: path.to_path_buf(),
        message: format!("cannot write: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::table::RowStatus;

    pub(crate) fn baseline_row(id: &str, variant: &str) -> TableRow {
        TableRow {
            prompt_id: id.into(),
            variant: variant.into(),
            prompt: format!("prompt {id}"),
            token_budget: 2048,
            source_file: "data/prompts_2k.txt".into(),
            local_completion: Some("The answer is 42.".into()),
            local_latency_ms: Some(100.0),
            status: RowStatus::Ok,
            prompt_tokens: 2000,
            local_ttft_ms: Some(10.0),
            local_completion_tokens: Some(6),
            local_error: None,
            local_logprobs: Some(vec![-0.5, -0.25]),
        }
    }

    #[test]
    fn parquet_round_trip_keeps_every_column_and_null() {
        let mut ok = MasterRow::from_baseline(&baseline_row("p01", "2k"), "tp-single-node");
        ok.cluster_completion = Some("The answer is 42.".into());
        ok.cluster_logprobs = Some(vec![-0.5, -0.3]);
        ok.rank = Some(0);
        ok.tp = Some(2);
        ok.pp = Some(1);
        ok.nodes = Some("n1".into());
        ok.tokens_per_s = Some(12.5);
        ok.decode_ms_per_token = Some(41.5);
        let mut failed = MasterRow::from_baseline(&baseline_row("p02", "4k"), "tp-single-node");
        failed.error = Some("job FAILED (exit 1)".into());
        failed.local_logprobs = None;
        let rows = vec![ok, failed];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.parquet");
        write_parquet(&mut to_dataframe(&rows).unwrap(), &path).unwrap();
        let df = crate::data::table::read_parquet_frame(&path).unwrap();
        let names: Vec<&str> = df.columns().iter().map(|c| c.name().as_str()).collect();
        assert_eq!(names, MASTER_COLUMNS);
        assert_eq!(from_dataframe(&df, &path).unwrap(), rows);
    }

    #[test]
    fn a_table_from_before_inter_token_times_reads_without_them() {
        let mut row = MasterRow::from_baseline(&baseline_row("p01", "2k"), "s");
        row.decode_ms_per_token = Some(41.5);
        let df = to_dataframe(&[row.clone()])
            .unwrap()
            .drop("decode_ms_per_token")
            .unwrap();
        row.decode_ms_per_token = None;
        assert_eq!(
            from_dataframe(&df, Path::new("old.parquet")).unwrap(),
            vec![row]
        );
    }

    #[test]
    fn a_table_without_a_column_is_refused_by_name() {
        let rows = vec![MasterRow::from_baseline(&baseline_row("p01", "2k"), "s")];
        let df = to_dataframe(&rows).unwrap().drop("nodes").unwrap();
        let err = from_dataframe(&df, Path::new("/r/run.parquet"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/r/run.parquet") && err.contains("`nodes`"),
            "{err}"
        );
    }
}
