//! `summary.md`: the summary table and a recommendation a person can act on.

use std::fmt::Write;

use super::{RunSummary, SummaryRow, RECOMMEND_MIN_CORRECTNESS};

pub(super) fn render(summary: &RunSummary) -> String {
    let mut md = String::from("# Run summary\n\n");
    md.push_str(
        "| strategy | variant | prompts | correctness mean | correctness min | exact match \
         | answer accuracy | baseline accuracy | latency p50 ms | p90 ms | p99 ms \
         | TTFT p50 ms | tokens/s | failures | retries |\n",
    );
    md.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for row in &summary.rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.strategy,
            row.variant,
            row.prompts,
            fixed(row.correctness_mean, 3),
            fixed(row.correctness_min, 3),
            fixed(row.exact_match_share, 2),
            fixed(row.answer_accuracy, 2),
            fixed(row.baseline_answer_accuracy, 2),
            fixed(row.latency_p50_ms, 1),
            fixed(row.latency_p90_ms, 1),
            fixed(row.latency_p99_ms, 1),
            fixed(row.ttft_p50_ms, 1),
            fixed(row.tokens_per_s_mean, 1),
            row.failures,
            row.retries,
        );
    }
    md.push_str("\n## Which strategy\n\n");
    md.push_str(&recommendation(&summary.overall));
    md.push_str(
        "\n\nCorrectness is the mean of token agreement, ROUGE-L F1 and chrF against the \
         baseline's completion (1.0: the baseline's text; a failed row counts 0.0); answer \
         accuracy is checked against `data/answers.json`, for the baseline too. Latencies are \
         nearest-rank percentiles of the per-prompt latency. Plots: \
         `latency_vs_correctness`, `throughput_vs_prompt_length`, `latency_distribution` \
         (PNG and SVG).\n",
    );
    md.push('\n');
    match &summary.predicted {
        Some(predicted) => md.push_str(&predicted.to_markdown()),
        None => md.push_str(&super::predicted::no_predictions_markdown()),
    }
    md
}

fn fixed(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.decimals$}"))
}

/// Picks the fastest strategy (p50 latency over all variants) among those whose mean
/// correctness reaches [`RECOMMEND_MIN_CORRECTNESS`]; says so plainly when none does.
pub(super) fn recommendation(overall: &[SummaryRow]) -> String {
    let timed: Vec<(&SummaryRow, f64)> = overall
        .iter()
        .filter_map(|r| r.latency_p50_ms.map(|p50| (r, p50)))
        .collect();
    if timed.is_empty() {
        return "No strategy produced a timed completion, so there is nothing to recommend yet."
            .to_string();
    }
    let mut faithful: Vec<(&SummaryRow, f64)> = timed
        .iter()
        .copied()
        .filter(|(r, _)| {
            r.correctness_mean
                .is_some_and(|c| c >= RECOMMEND_MIN_CORRECTNESS)
        })
        .collect();
    faithful.sort_by(|a, b| a.1.total_cmp(&b.1));
    let Some(&(best, p50)) = faithful.first() else {
        let most_faithful = overall
            .iter()
            .filter(|r| r.correctness_mean.is_some())
            .max_by(|a, b| {
                let key = |r: &SummaryRow| r.correctness_mean.unwrap_or(0.0);
                key(a).total_cmp(&key(b))
            });
        let (fastest, fastest_p50) = timed
            .iter()
            .copied()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("timed is not empty");
        let mut text = format!(
            "No strategy reached a mean correctness of {RECOMMEND_MIN_CORRECTNESS} against the \
             baseline, so none is recommended as a drop-in replacement."
        );
        if let Some(r) = most_faithful {
            let _ = write!(
                text,
                " The most faithful is **{}** (mean correctness {});",
                r.strategy,
                fixed(r.correctness_mean, 3)
            );
        }
        let _ = write!(
            text,
            " the fastest is **{}** (p50 latency {fastest_p50:.1} ms). Read the per-prompt \
             scores before choosing.",
            fastest.strategy
        );
        return text;
    };
    let mut text = format!(
        "Run **{}**: the fastest strategy with a mean correctness of at least \
         {RECOMMEND_MIN_CORRECTNESS} (p50 latency {p50:.1} ms, mean correctness {}, over {} \
         prompts",
        best.strategy,
        fixed(best.correctness_mean, 3),
        best.prompts
    );
    if best.failures > 0 {
        let _ = write!(text, ", {} of them failed", best.failures);
    }
    text.push_str(").");
    if let Some(&(next, next_p50)) = faithful.get(1) {
        let _ = write!(
            text,
            " The next is **{}** at {next_p50:.1} ms ({:.2}x slower).",
            next.strategy,
            next_p50 / p50
        );
    }
    let excluded = timed.len() - faithful.len();
    if excluded > 0 {
        let _ = write!(
            text,
            " {excluded} other strateg{} fell below the correctness bar.",
            if excluded == 1 { "y" } else { "ies" }
        );
    }
    text
}
