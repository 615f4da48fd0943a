//! Predicted beside measured: for each strategy and variant, the performance model's time to
//! first token, decode time per token and tokens/s (from the run folder's `perf_inputs.json`, at
//! the group's own median prompt and completion lengths and its batch) beside the measured
//! medians, their ratio, the term the model says dominates, and a flag for any measured figure
//! more than [`SLOWER_THAN_MODEL`] times worse than its prediction.

use std::fmt::Write;

use polars::prelude::*;

use super::rows::{self, ScoredRow};
use super::stats;
use crate::metrics::MetricsError;
use crate::perf::{Estimate, PerfInputs};

/// A measured figure this many times worse than predicted is flagged.
pub const SLOWER_THAN_MODEL: f64 = 1.5;

/// The columns of `predicted_vs_measured.csv`, in order.
pub const PREDICTED_COLUMNS: [&str; 18] = [
    "strategy",
    "variant",
    "batch",
    "prompt_tokens",
    "completion_tokens",
    "ttft_predicted_ms",
    "ttft_measured_ms",
    "ttft_ratio",
    "ttft_bound",
    "decode_predicted_ms_per_token",
    "decode_measured_ms_per_token",
    "decode_ratio",
    "decode_bound",
    "tokens_per_s_predicted",
    "tokens_per_s_measured",
    "tokens_per_s_ratio",
    "decode_rows",
    "flags",
];

/// One figure: the prediction, the measurement (none when no row measured it), and the term
/// the model says dominates.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    pub predicted: f64,
    pub measured: Option<f64>,
    pub bound: String,
}

impl Compared {
    fn time(estimate: &Estimate, measured_ms: Option<f64>) -> Self {
        Self {
            predicted: estimate.seconds() * 1e3,
            measured: measured_ms,
            bound: estimate.dominant().label().to_string(),
        }
    }

    /// measured / predicted.
    pub fn ratio(&self) -> Option<f64> {
        self.measured.map(|m| m / self.predicted)
    }
}

/// One strategy and variant.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparedRow {
    pub strategy: String,
    pub variant: String,
    /// Prompts decoded together (the group's prompts, up to the engine's batch size).
    pub batch: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub ttft_ms: Compared,
    pub decode_ms_per_token: Compared,
    /// Generated tokens over the request's whole latency (higher is better).
    pub tokens_per_s: Compared,
    /// Rows whose decode time per token was measured (two tokens or more).
    pub decode_rows: usize,
}

impl ComparedRow {
    /// "SLOWER THAN MODEL: decode 2.3x" for each figure worse than predicted by more than
    /// [`SLOWER_THAN_MODEL`]; empty when none is.
    pub fn flags(&self) -> String {
        let slower = [
            ("TTFT", self.ttft_ms.ratio()),
            ("decode", self.decode_ms_per_token.ratio()),
            // A rate is worse when lower.
            ("tokens/s", self.tokens_per_s.ratio().map(|r| 1.0 / r)),
        ];
        let worse: Vec<String> = slower
            .iter()
            .filter_map(|(name, factor)| {
                factor
                    .filter(|f| *f > SLOWER_THAN_MODEL)
                    .map(|f| format!("{name} {f:.1}x"))
            })
            .collect();
        if worse.is_empty() {
            String::new()
        } else {
            format!("SLOWER THAN MODEL: {}", worse.join(", "))
        }
    }
}

/// The run's predicted and measured figures, and the hardware they were predicted on.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub hardware: String,
    pub rows: Vec<ComparedRow>,
}

/// Decode time per token of a row: the median gap between its tokens as the engine timed them
/// (a stall of the machine in one step moves a median little), else their mean,
/// (latency − TTFT) / (tokens − 1).
pub(crate) fn decode_ms_per_token(row: &ScoredRow) -> Option<f64> {
    row.decode_ms_per_token.or_else(|| {
        let (latency, ttft, tokens) = (row.latency_ms?, row.ttft_ms?, row.completion_tokens?);
        (tokens >= 2).then(|| (latency - ttft) / (tokens - 1) as f64)
    })
}

impl Comparison {
    /// Compares every strategy and variant of `rows` with `inputs`' predictions; a strategy the
    /// inputs do not know, or a group without a completed row, is left out.
    pub(crate) fn of(rows: &[ScoredRow], inputs: &PerfInputs) -> Self {
        let mut compared = Vec::new();
        for strategy in rows::distinct(rows, |r| &r.strategy) {
            for variant in rows::distinct(rows, |r| &r.variant) {
                let group: Vec<&ScoredRow> = rows
                    .iter()
                    .filter(|r| r.strategy == strategy && r.variant == variant)
                    .collect();
                if let Some(row) = compare_group(strategy, variant, &group, inputs) {
                    compared.push(row);
                }
            }
        }
        Self {
            hardware: inputs.hardware.describe(),
            rows: compared,
        }
    }

    /// Figures measured more than [`SLOWER_THAN_MODEL`] times worse than predicted.
    pub fn flagged(&self) -> usize {
        self.rows.iter().filter(|r| !r.flags().is_empty()).count()
    }

    /// The rows as a table with [`PREDICTED_COLUMNS`].
    pub fn to_dataframe(&self) -> Result<DataFrame, MetricsError> {
        let rows = &self.rows;
        let text = |f: &dyn Fn(&ComparedRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
        let int =
            |f: fn(&ComparedRow) -> usize| rows.iter().map(|r| f(r) as i64).collect::<Vec<_>>();
        let float =
            |f: &dyn Fn(&ComparedRow) -> Option<f64>| rows.iter().map(f).collect::<Vec<_>>();
        let figure = |f: fn(&ComparedRow) -> &Compared| {
            (
                float(&|r| Some(f(r).predicted)),
                float(&|r| f(r).measured),
                float(&|r| f(r).ratio()),
                text(&|r| f(r).bound.clone()),
            )
        };
        let (ttft_p, ttft_m, ttft_r, ttft_b) = figure(|r| &r.ttft_ms);
        let (dec_p, dec_m, dec_r, dec_b) = figure(|r| &r.decode_ms_per_token);
        let (tps_p, tps_m, tps_r, _) = figure(|r| &r.tokens_per_s);
        let c = |i: usize| PREDICTED_COLUMNS[i].into();
        let columns = vec![
            Column::new(c(0), text(&|r| r.strategy.clone())),
            Column::new(c(1), text(&|r| r.variant.clone())),
            Column::new(c(2), int(|r| r.batch)),
            Column::new(c(3), int(|r| r.prompt_tokens)),
            Column::new(c(4), int(|r| r.completion_tokens)),
            Column::new(c(5), ttft_p),
            Column::new(c(6), ttft_m),
            Column::new(c(7), ttft_r),
            Column::new(c(8), ttft_b),
            Column::new(c(9), dec_p),
            Column::new(c(10), dec_m),
            Column::new(c(11), dec_r),
            Column::new(c(12), dec_b),
            Column::new(c(13), tps_p),
            Column::new(c(14), tps_m),
            Column::new(c(15), tps_r),
            Column::new(c(16), int(|r| r.decode_rows)),
            Column::new(c(17), text(&|r| r.flags())),
        ];
        Ok(DataFrame::new(rows.len(), columns)?)
    }

    /// The `summary.md` section: what was assumed, the table, and how many figures are flagged.
    pub fn to_markdown(&self) -> String {
        let mut md = String::from("## Predicted vs measured\n\n");
        let _ = writeln!(
            md,
            "The performance model (`driver plan --predict`) on {}; each strategy and variant \
             predicted at its median prompt and completion length and its batch. Measured: \
             medians over the group's prompts; decode is the median gap between a row's tokens as the \
             engine timed them (else (latency - TTFT) / (tokens - 1)). Ratio: \
             measured / predicted. A figure more than {SLOWER_THAN_MODEL}x worse than predicted \
             is flagged.\n",
            self.hardware
        );
        md.push_str(
            "| strategy | variant | batch | prompt tokens | new tokens | TTFT ms predicted \
             | measured | ratio | bound | decode ms/token predicted | measured | ratio | bound \
             | tokens/s predicted | measured | ratio | flag |\n",
        );
        md.push_str("|---|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|---|--:|--:|--:|---|\n");
        for r in &self.rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {:.1} | {} | {} | {} | {:.1} \
                 | {} | {} | {} |",
                r.strategy,
                r.variant,
                r.batch,
                r.prompt_tokens,
                r.completion_tokens,
                r.ttft_ms.predicted,
                fixed(r.ttft_ms.measured, 1),
                fixed(r.ttft_ms.ratio(), 2),
                r.ttft_ms.bound,
                r.decode_ms_per_token.predicted,
                fixed(r.decode_ms_per_token.measured, 1),
                fixed(r.decode_ms_per_token.ratio(), 2),
                r.decode_ms_per_token.bound,
                r.tokens_per_s.predicted,
                fixed(r.tokens_per_s.measured, 1),
                fixed(r.tokens_per_s.ratio(), 2),
                r.flags(),
            );
        }
        let flagged = self.flagged();
        md.push('\n');
        if flagged == 0 {
            md.push_str("Every measured figure is within 1.5x of its prediction (or better).\n");
        } else {
            let _ = writeln!(
                md,
                "{flagged} of {} strategy/variant rows measured more than {SLOWER_THAN_MODEL}x \
                 slower than the model in some figure: the model leaves out what slowed them, or \
                 the machine was busy.",
                self.rows.len()
            );
        }
        md
    }
}

/// The line a report without predictions carries.
pub fn no_predictions_markdown() -> String {
    "## Predicted vs measured\n\nNo predictions: the run folder has no `perf_inputs.json` (its \
     profile has no `[hardware]` section, or the run predates the performance model).\n"
        .to_string()
}

fn compare_group(
    strategy: &str,
    variant: &str,
    group: &[&ScoredRow],
    inputs: &PerfInputs,
) -> Option<ComparedRow> {
    let known = |f: &dyn Fn(&ScoredRow) -> Option<f64>| -> Vec<f64> {
        group.iter().filter_map(|r| f(r)).collect()
    };
    let median = |values: Vec<f64>| stats::percentile(&values, 50.0);
    let completed: Vec<&&ScoredRow> = group.iter().filter(|r| !r.failed).collect();
    if completed.is_empty() {
        return None;
    }
    let prompt_tokens = median(known(&|r| r.prompt_tokens.map(|t| t as f64)))? as usize;
    let completion_tokens = median(known(&|r| r.completion_tokens.map(|t| t as f64)))? as usize;
    let layout = inputs.strategies.iter().find(|s| s.strategy == strategy)?;
    let batch = group.len().min(layout.args.batch_size).max(1);
    let p = inputs.predict_group(strategy, variant, prompt_tokens, completion_tokens, batch)?;
    let decode = known(&decode_ms_per_token);
    let decode_rows = decode.len();
    let predicted_latency_s = p.ttft_batch.seconds()
        + completion_tokens.saturating_sub(1) as f64 * p.decode_batch.seconds();
    Some(ComparedRow {
        strategy: strategy.to_string(),
        variant: variant.to_string(),
        batch,
        prompt_tokens,
        completion_tokens,
        ttft_ms: Compared::time(&p.ttft_batch, median(known(&|r| r.ttft_ms))),
        decode_ms_per_token: Compared::time(&p.decode_batch, median(decode)),
        tokens_per_s: Compared {
            predicted: completion_tokens as f64 / predicted_latency_s,
            measured: median(known(&|r| r.tokens_per_s)),
            bound: p.decode_batch.dominant().label().to_string(),
        },
        decode_rows,
    })
}

fn fixed(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.decimals$}"))
}

#[cfg(test)]
mod tests;
