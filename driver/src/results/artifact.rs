//! A job's output artifact: the engine's rows as JSONL (`engine run --out`), a JSON array of the
//! same rows, or a Parquet table with the same columns. Each row is checked on its own: a
//! malformed row is reported with the file and row and the others are still read.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Deserialize;

/// One row the engine wrote: a prompt's completion and how it was produced.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EngineRow {
    pub prompt_id: String,
    pub variant: String,
    pub completion: String,
    pub latency_ms: f64,
    pub completion_tokens: i64,
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub tp: Option<i64>,
    #[serde(default)]
    pub pp: Option<i64>,
    #[serde(default)]
    pub rank: Option<i64>,
    #[serde(default)]
    pub gpu_id: Option<i64>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub completion_token_ids: Option<Vec<u32>>,
    #[serde(default)]
    pub logprobs: Option<Vec<f64>>,
    #[serde(default)]
    pub prompt_tokens: Option<i64>,
    #[serde(default)]
    pub ttft_ms: Option<f64>,
    /// The gaps between consecutive tokens, in milliseconds.
    #[serde(default)]
    pub inter_token_ms: Option<Vec<f64>>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub trace_path: Option<String>,
}

/// A row (or a whole artifact) that could not be read, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactProblem {
    pub path: PathBuf,
    /// 1-based line of a JSONL file, 0-based row of a JSON array or Parquet table; `None`: the
    /// whole file.
    pub row: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ArtifactProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.row {
            Some(row) => write!(f, "{}: row {row}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// What could be read from one artifact.
#[derive(Debug, Default)]
pub struct ArtifactRows {
    pub rows: Vec<EngineRow>,
    pub problems: Vec<ArtifactProblem>,
}

/// Reads an artifact by its extension (`.parquet`, `.json`, else JSONL).
pub fn read_artifact(path: &Path) -> ArtifactRows {
    let problem = |row: Option<usize>, message: String| ArtifactProblem {
        path: path.to_path_buf(),
        row,
        message,
    };
    let mut out = ArtifactRows::default();
    if path.extension().is_some_and(|e| e == "parquet") {
        match read_parquet_rows(path) {
            Ok(rows) => {
                for (i, row) in rows.into_iter().enumerate() {
                    match row {
                        Ok(row) => out.rows.push(row),
                        Err(message) => out.problems.push(problem(Some(i), message)),
                    }
                }
            }
            Err(message) => out.problems.push(problem(None, message)),
        }
        return out;
    }
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            out.problems
                .push(problem(None, format!("cannot read: {e}")));
            return out;
        }
    };
    if path.extension().is_some_and(|e| e == "json") {
        match serde_json::from_str::<Vec<serde_json::Value>>(&text) {
            Ok(values) => {
                for (i, value) in values.into_iter().enumerate() {
                    match serde_json::from_value::<EngineRow>(value) {
                        Ok(row) => out.rows.push(row),
                        Err(e) => out.problems.push(problem(Some(i), e.to_string())),
                    }
                }
            }
            Err(e) => out
                .problems
                .push(problem(None, format!("not a JSON array of rows: {e}"))),
        }
        return out;
    }
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<EngineRow>(line) {
            Ok(row) => out.rows.push(row),
            Err(e) => out.problems.push(problem(Some(i + 1), e.to_string())),
        }
    }
    if !text.is_empty() && !text.ends_with('\n') {
        // The engine ends every row with a newline: a file without one was cut short, even when
        // its last line happens to parse.
        let last = text.lines().count();
        if !out.problems.iter().any(|p| p.row == Some(last)) {
            out.problems.push(problem(
                Some(last),
                "the file ends without a newline (truncated?)".into(),
            ));
            out.rows.pop();
        }
    }
    out
}

/// Reads a Parquet artifact; a missing required column or one of the wrong type fails the file,
/// a null in a required column fails its row.
fn read_parquet_rows(path: &Path) -> Result<Vec<Result<EngineRow, String>>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| format!("not a readable Parquet table: {e}"))?;
    let column = |name: &str| {
        df.column(name)
            .map_err(|_| format!("missing column `{name}`"))
    };
    let typed = |name: &str, e: PolarsError| format!("column `{name}`: {e}");
    let text = |name: &str| column(name)?.str().cloned().map_err(|e| typed(name, e));
    let int = |name: &str| column(name)?.i64().cloned().map_err(|e| typed(name, e));
    let float = |name: &str| column(name)?.f64().cloned().map_err(|e| typed(name, e));
    let optional = |name: &str| df.column(name).ok();
    let (prompt_id, variant, completion) =
        (text("prompt_id")?, text("variant")?, text("completion")?);
    let latency = float("latency_ms")?;
    let tokens = int("completion_tokens")?;
    let opt_text = |name: &str| {
        optional(name)
            .map(|c| c.str().cloned().map_err(|e| typed(name, e)))
            .transpose()
    };
    let opt_int = |name: &str| {
        optional(name)
            .map(|c| c.i64().cloned().map_err(|e| typed(name, e)))
            .transpose()
    };
    let opt_float = |name: &str| {
        optional(name)
            .map(|c| c.f64().cloned().map_err(|e| typed(name, e)))
            .transpose()
    };
    let (strategy, hostname, finish, trace) = (
        opt_text("strategy")?,
        opt_text("hostname")?,
        opt_text("finish_reason")?,
        opt_text("trace_path")?,
    );
    let (tp, pp, rank, gpu, prompt_tokens) = (
        opt_int("tp")?,
        opt_int("pp")?,
        opt_int("rank")?,
        opt_int("gpu_id")?,
        opt_int("prompt_tokens")?,
    );
    let ttft = opt_float("ttft_ms")?;
    let list = |name: &str| {
        optional(name)
            .map(|c| c.list().cloned().map_err(|e| typed(name, e)))
            .transpose()
    };
    let (logprobs, inter_token) = (list("logprobs")?, list("inter_token_ms")?);
    let floats = |l: &Option<ListChunked>, name: &str, i: usize| match l {
        Some(l) => {
            crate::data::table::float_list(l.get_as_series(i)).map_err(|e| format!("`{name}`: {e}"))
        }
        None => Ok(None),
    };
    let s =
        |c: &Option<StringChunked>, i: usize| c.as_ref().and_then(|c| c.get(i).map(str::to_string));
    let n = |c: &Option<Int64Chunked>, i: usize| c.as_ref().and_then(|c| c.get(i));
    Ok((0..df.height())
        .map(|i| {
            let need = |v: Option<&str>, name: &str| {
                v.map(str::to_string)
                    .ok_or_else(|| format!("`{name}` is null"))
            };
            Ok(EngineRow {
                prompt_id: need(prompt_id.get(i), "prompt_id")?,
                variant: need(variant.get(i), "variant")?,
                completion: need(completion.get(i), "completion")?,
                latency_ms: latency.get(i).ok_or("`latency_ms` is null")?,
                completion_tokens: tokens.get(i).ok_or("`completion_tokens` is null")?,
                strategy: s(&strategy, i),
                tp: n(&tp, i),
                pp: n(&pp, i),
                rank: n(&rank, i),
                gpu_id: n(&gpu, i),
                hostname: s(&hostname, i),
                completion_token_ids: None,
                logprobs: floats(&logprobs, "logprobs", i)?,
                prompt_tokens: n(&prompt_tokens, i),
                ttft_ms: ttft.as_ref().and_then(|c| c.get(i)),
                inter_token_ms: floats(&inter_token, "inter_token_ms", i)?,
                finish_reason: s(&finish, i),
                trace_path: s(&trace, i),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"prompt_id":"p01","variant":"2k","completion":"Paris","latency_ms":12.5,"completion_tokens":2,"tp":2,"pp":1,"rank":0,"gpu_id":null,"logprobs":[-0.1,-0.2]}"#;

    #[test]
    fn a_truncated_jsonl_reports_its_last_line_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let cut = &GOOD[..40];
        std::fs::write(
            &path,
            format!("{GOOD}\n{}\n{cut}", GOOD.replace("p01", "p02")),
        )
        .unwrap();
        let got = read_artifact(&path);
        assert_eq!(got.rows.len(), 2);
        assert_eq!(got.rows[1].prompt_id, "p02");
        assert_eq!(got.problems.len(), 1, "{:?}", got.problems);
        let text = got.problems[0].to_string();
        assert!(text.contains("out.jsonl: row 3:"), "{text}");
    }

    #[test]
    fn a_missing_field_and_a_wrong_type_name_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let missing = GOOD.replace(r#""completion":"Paris","#, "");
        let wrong = GOOD.replace("12.5", r#""slow""#);
        std::fs::write(&path, format!("{missing}\n{GOOD}\n{wrong}\n")).unwrap();
        let got = read_artifact(&path);
        assert_eq!(got.rows.len(), 1);
        let problems: Vec<String> = got.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            problems[0].contains("row 1") && problems[0].contains("completion"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("row 3") && problems[1].contains("invalid type"),
            "{problems:?}"
        );
    }

    #[test]
    fn parquet_artifacts_are_read_and_a_missing_column_fails_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.parquet");
        let mut df = df!(
            "prompt_id" => ["p01", "p02"],
            "variant" => ["2k", "2k"],
            "completion" => [Some("a"), None],
            "latency_ms" => [1.0, 2.0],
            "completion_tokens" => [1i64, 1],
        )
        .unwrap();
        ParquetWriter::new(std::fs::File::create(&good).unwrap())
            .finish(&mut df)
            .unwrap();
        let got = read_artifact(&good);
        assert_eq!(got.rows.len(), 1);
        assert_eq!(got.problems[0].row, Some(1));
        assert!(got.problems[0].message.contains("`completion` is null"));

        let bad = dir.path().join("bad.parquet");
        let mut df = df.drop("latency_ms").unwrap();
        ParquetWriter::new(std::fs::File::create(&bad).unwrap())
            .finish(&mut df)
            .unwrap();
        let got = read_artifact(&bad);
        assert!(got.rows.is_empty());
        assert_eq!(got.problems[0].row, None);
        assert!(got.problems[0]
            .to_string()
            .contains("missing column `latency_ms`"));
    }
}
