//! The scored master table's rows, as the report reads them.

use polars::prelude::DataFrame;

use crate::metrics::{table, MetricsError};

/// One prompt x variant x strategy row, reduced to what the summary and the plots use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScoredRow {
    pub strategy: String,
    pub variant: String,
    pub correctness: Option<f64>,
    pub exact_match: Option<bool>,
    pub answer_correct: Option<bool>,
    pub baseline_answer_correct: Option<bool>,
    pub latency_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub tokens_per_s: Option<f64>,
    /// The median gap between the strategy's tokens, as the engine timed them; `None` in
    /// tables from before the engine reported them.
    pub decode_ms_per_token: Option<f64>,
    /// The prompt's length in tokens: the job's count, else the variant's budget.
    pub prompt_tokens: Option<i64>,
    /// Tokens the strategy generated.
    pub completion_tokens: Option<i64>,
    /// The strategy gave no completion.
    pub failed: bool,
    /// 1 for a first try; `None` when unknown.
    pub attempt: Option<i64>,
}

/// Reads the rows of a table scored by `CorrectnessEvaluator`.
pub(crate) fn read(df: &DataFrame) -> Result<Vec<ScoredRow>, MetricsError> {
    let strategy = table::required_strings(df, "strategy")?;
    let variant = table::required_strings(df, "variant")?;
    let correctness = table::floats(df, "correctness")?;
    let exact_match = table::bools(df, "exact_match")?;
    let answer_correct = table::bools(df, "answer_correct")?;
    let baseline_answer_correct = table::bools(df, "baseline_answer_correct")?;
    let latency_ms = table::floats(df, "cluster_latency_ms")?;
    let ttft_ms = table::floats(df, "ttft_ms")?;
    let tokens_per_s = table::floats(df, "tokens_per_s")?;
    let decode_ms_per_token = match df.column("decode_ms_per_token") {
        Ok(_) => table::floats(df, "decode_ms_per_token")?,
        Err(_) => vec![None; df.height()],
    };
    let prompt_tokens = table::ints(df, "prompt_tokens")?;
    let token_budget = table::ints(df, "token_budget")?;
    let completion_tokens = table::ints(df, "completion_tokens")?;
    let completion = table::strings(df, "cluster_completion")?;
    let attempt = table::ints(df, "attempt")?;
    Ok((0..df.height())
        .map(|i| ScoredRow {
            strategy: strategy[i].clone(),
            variant: variant[i].clone(),
            correctness: correctness[i],
            exact_match: exact_match[i],
            answer_correct: answer_correct[i],
            baseline_answer_correct: baseline_answer_correct[i],
            latency_ms: latency_ms[i],
            ttft_ms: ttft_ms[i],
            tokens_per_s: tokens_per_s[i],
            decode_ms_per_token: decode_ms_per_token[i],
            prompt_tokens: prompt_tokens[i].or(token_budget[i]),
            completion_tokens: completion_tokens[i],
            failed: completion[i].is_none(),
            attempt: attempt[i],
        })
        .collect())
}

/// The distinct values of `key` over `rows`, in order of first appearance.
pub(crate) fn distinct(rows: &[ScoredRow], key: fn(&ScoredRow) -> &str) -> Vec<&str> {
    let mut seen: Vec<&str> = Vec::new();
    for row in rows {
        let value = key(row);
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen
}
