//! Builds master tables for the tests, with the collector's columns and types, so scoring and
//! reports are tested without running jobs.

use polars::prelude::*;

/// One row of the master table; [`Row::ok`] fills a successful row, tests change the rest.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub prompt_id: String,
    pub variant: String,
    pub strategy: String,
    pub token_budget: i64,
    pub local_completion: Option<String>,
    pub local_latency_ms: f64,
    pub local_ttft_ms: Option<f64>,
    pub local_completion_tokens: Option<i64>,
    pub status: String,
    pub local_logprobs: Option<Vec<f64>>,
    pub cluster_completion: Option<String>,
    pub cluster_latency_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub completion_tokens: Option<i64>,
    pub prompt_tokens: Option<i64>,
    pub tokens_per_s: Option<f64>,
    pub decode_ms_per_token: Option<f64>,
    pub cluster_logprobs: Option<Vec<f64>>,
    pub rank: i64,
    pub gpu_id: Option<i64>,
    pub nodes: String,
    pub tp: i64,
    pub pp: i64,
    pub job_id: String,
    pub attempt: i64,
    pub error: Option<String>,
    pub trace_path: Option<String>,
}

impl Row {
    pub fn ok(
        prompt_id: &str,
        variant: &str,
        strategy: &str,
        baseline: &str,
        cluster: &str,
    ) -> Row {
        Row {
            prompt_id: prompt_id.into(),
            variant: variant.into(),
            strategy: strategy.into(),
            token_budget: if variant == "4k" { 4096 } else { 2048 },
            local_completion: Some(baseline.into()),
            local_latency_ms: 100.0,
            local_ttft_ms: Some(10.0),
            local_completion_tokens: Some(8),
            status: "ok".into(),
            local_logprobs: None,
            cluster_completion: Some(cluster.into()),
            cluster_latency_ms: Some(100.0),
            ttft_ms: Some(10.0),
            completion_tokens: Some(8),
            prompt_tokens: Some(2000),
            tokens_per_s: Some(80.0),
            decode_ms_per_token: None,
            cluster_logprobs: None,
            rank: 0,
            gpu_id: Some(0),
            nodes: "node1".into(),
            tp: 2,
            pp: 1,
            job_id: "100".into(),
            attempt: 1,
            error: None,
            trace_path: None,
        }
    }

    /// The strategy's job failed for this row: no completion, no timings.
    pub fn failed(mut self) -> Row {
        self.cluster_completion = None;
        self.cluster_latency_ms = None;
        self.ttft_ms = None;
        self.completion_tokens = None;
        self.tokens_per_s = None;
        self.decode_ms_per_token = None;
        self.error = Some("rank 1 exited with 137".into());
        self
    }
}

fn logprobs(name: &str, values: Vec<Option<Vec<f64>>>) -> Column {
    let lists: Vec<Option<Series>> = values
        .into_iter()
        .map(|v| v.map(|v| Series::new(PlSmallStr::EMPTY, v)))
        .collect();
    Series::new(name.into(), lists)
        .cast(&DataType::List(Box::new(DataType::Float64)))
        .unwrap()
        .into()
}

/// The master table of `rows`, in their order.
pub(crate) fn master_table(rows: &[Row]) -> DataFrame {
    macro_rules! col {
        ($name:ident) => {
            Column::new(
                stringify!($name).into(),
                rows.iter().map(|r| r.$name.clone()).collect::<Vec<_>>(),
            )
        };
    }
    let columns = vec![
        col!(prompt_id),
        col!(variant),
        col!(strategy),
        col!(token_budget),
        col!(local_completion),
        col!(local_latency_ms),
        col!(local_ttft_ms),
        col!(local_completion_tokens),
        col!(status),
        logprobs(
            "local_logprobs",
            rows.iter().map(|r| r.local_logprobs.clone()).collect(),
        ),
        col!(cluster_completion),
        col!(cluster_latency_ms),
        col!(ttft_ms),
        col!(completion_tokens),
        col!(prompt_tokens),
        col!(tokens_per_s),
        col!(decode_ms_per_token),
        logprobs(
            "cluster_logprobs",
            rows.iter().map(|r| r.cluster_logprobs.clone()).collect(),
        ),
        col!(rank),
        col!(gpu_id),
        col!(nodes),
        col!(tp),
        col!(pp),
        col!(job_id),
        col!(attempt),
        col!(error),
        col!(trace_path),
    ];
    DataFrame::new(rows.len(), columns).unwrap()
}

/// A tokenizer with one token per byte (byte-level BPE without merges), so token counts in the
/// tests can be worked out by hand.
pub(crate) fn byte_tokenizer() -> tokenizers::Tokenizer {
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    let vocab: tokenizers::models::bpe::Vocab = alphabet
        .into_iter()
        .enumerate()
        .map(|(id, c)| (c.to_string(), id as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .build()
        .unwrap();
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, false, false)));
    tokenizer
}
