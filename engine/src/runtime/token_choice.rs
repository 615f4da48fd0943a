//! What sampling needs from each row of logits, computed where the vocabulary lives: on one rank
//! from the full row, or across a tensor-parallel group from each rank's vocabulary slice without
//! gathering the whole vocabulary (each rank contributes its max, its sum of exponentials and its
//! top candidates; the full row is gathered only for sampling over the whole vocabulary).

use crate::dist::Communicator;
use crate::error::{EngineError, Result};
use crate::model::ShardedLogits;

use super::sampling::{top_k_indices, SamplingParams};

/// One row of logits, summarised for token selection.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSummary {
    /// Largest logit of the row.
    pub max: f64,
    /// `ln(sum(exp(logit - max)))` over the whole vocabulary.
    pub log_sum: f64,
    /// The best candidates `(token, logit)`, best first, ties to the lower id.
    pub top: Vec<(u32, f32)>,
    /// The whole row, present only when sampling needs every token.
    pub full: Option<Vec<f32>>,
}

impl RowSummary {
    /// Log-probability of a token whose logit is `logit`.
    pub fn logprob(&self, logit: f32) -> f32 {
        (logit as f64 - self.max - self.log_sum) as f32
    }

    /// Summary of a full row on one rank.
    pub fn from_full_row(row: &[f32], params: &SamplingParams) -> Self {
        let (max, log_sum) = log_sum_exp(row);
        let top = top_k_indices(row, candidates_needed(params))
            .into_iter()
            .map(|i| (i, row[i as usize]))
            .collect();
        let full = needs_full_row(params).then(|| row.to_vec());
        Self {
            max,
            log_sum,
            top,
            full,
        }
    }
}

/// Candidates to keep per row: enough for the greedy choice, top-k sampling and the reported
/// alternatives.
pub fn candidates_needed(params: &SamplingParams) -> usize {
    params.top_logprobs.max(params.top_k).max(1)
}

/// Sampling over the whole vocabulary (temperature without top-k) needs every logit.
pub fn needs_full_row(params: &SamplingParams) -> bool {
    !params.is_greedy() && params.top_k == 0
}

/// Summaries of every row of `logits`, computed across `tp` (which may be a group of one).
/// `params[i]` belongs to row `i`. Every rank of the group gets the same summaries.
pub fn summarize_rows(
    logits: &ShardedLogits,
    params: &[&SamplingParams],
    tp: &dyn Communicator,
) -> Result<Vec<RowSummary>> {
    let rows = logits.local.to_vec2::<f32>()?;
    if rows.len() != params.len() {
        return Err(EngineError::Request(format!(
            "{} logit rows for {} sequences",
            rows.len(),
            params.len()
        )));
    }
    if tp.size() == 1 {
        if logits.vocab_start != 0 || rows.first().is_some_and(|r| r.len() != logits.vocab_size) {
            return Err(EngineError::Request(
                "a group of one must hold the whole vocabulary".into(),
            ));
        }
        return Ok(rows
            .iter()
            .zip(params)
            .map(|(row, p)| RowSummary::from_full_row(row, p))
            .collect());
    }
    // Per row: [max, sum_exp, (id, logit) x k], padded to a fixed width so ranks can gather.
    let k_max = params
        .iter()
        .map(|p| candidates_needed(p))
        .max()
        .unwrap_or(1);
    let width = 2 + 2 * k_max;
    let mut packed = Vec::with_capacity(rows.len() * width);
    for row in &rows {
        let (max, log_sum) = log_sum_exp(row);
        packed.push(max as f32);
        packed.push(log_sum.exp() as f32);
        let top = top_k_indices(row, k_max);
        for slot in 0..k_max {
            match top.get(slot) {
                Some(&i) => {
                    packed.push((logits.vocab_start + i as usize) as f32);
                    packed.push(row[i as usize]);
                }
                None => {
                    packed.push(-1.0);
                    packed.push(f32::NEG_INFINITY);
                }
            }
        }
    }
    let gathered = tp.all_gather(&packed)?;
    let per_rank = rows.len() * width;
    let mut summaries = Vec::with_capacity(rows.len());
    for (r, p) in params.iter().enumerate() {
        let parts: Vec<&[f32]> = (0..tp.size())
            .map(|rank| &gathered[rank * per_rank + r * width..][..width])
            .collect();
        let max = parts
            .iter()
            .map(|part| part[0] as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = parts
            .iter()
            .map(|part| part[1] as f64 * (part[0] as f64 - max).exp())
            .sum();
        let mut top: Vec<(u32, f32)> = parts
            .iter()
            .flat_map(|part| {
                part[2..]
                    .chunks_exact(2)
                    .filter(|c| c[0] >= 0.0)
                    .map(|c| (c[0] as u32, c[1]))
            })
            .collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(candidates_needed(p));
        summaries.push(RowSummary {
            max,
            log_sum: sum.ln(),
            top,
            full: None,
        });
    }
    if params.iter().any(|p| needs_full_row(p)) {
        let full = gather_full_rows(&rows, logits.vocab_size, tp)?;
        for ((summary, p), row) in summaries.iter_mut().zip(params).zip(full) {
            if needs_full_row(p) {
                summary.full = Some(row);
            }
        }
    }
    Ok(summaries)
}

/// Every row over the whole vocabulary (slices padded to the largest so ranks gather equal sizes).
fn gather_full_rows(
    rows: &[Vec<f32>],
    vocab: usize,
    tp: &dyn Communicator,
) -> Result<Vec<Vec<f32>>> {
    let size = tp.size();
    let widest = vocab.div_ceil(size);
    let mut packed = Vec::with_capacity(rows.len() * widest);
    for row in rows {
        packed.extend_from_slice(row);
        packed.resize(packed.len() + widest - row.len(), f32::NEG_INFINITY);
    }
    let gathered = tp.all_gather(&packed)?;
    let per_rank = rows.len() * widest;
    Ok((0..rows.len())
        .map(|r| {
            (0..size)
                .flat_map(|rank| {
                    let len = crate::model::parallel::Shard::new(rank, size)
                        .uneven_range(vocab)
                        .1;
                    gathered[rank * per_rank + r * widest..][..len]
                        .iter()
                        .copied()
                })
                .collect()
        })
        .collect())
}

/// `(max, ln(sum(exp(x - max))))` in f64.
fn log_sum_exp(row: &[f32]) -> (f64, f64) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    (max, sum.ln())
}
