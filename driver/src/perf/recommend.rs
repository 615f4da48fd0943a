//! The picks `driver plan --predict` closes with, among the strategies that fit in memory: for
//! latency, the shortest request of one user alone (time to first token plus every new token at
//! batch 1); for throughput, the most decode tokens/s per GPU at the run's batch (per GPU, since
//! GPUs a strategy leaves free can run another copy).

use super::predict::{Estimate, StrategyPrediction, Term};

/// A strategy picked for a goal, and why, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    pub strategy: String,
    pub reason: String,
}

/// One request alone, averaged over the prompt lengths: TTFT + new_tokens x decode time at
/// batch 1, by term.
pub fn request_estimate(p: &StrategyPrediction, new_tokens: usize) -> Estimate {
    let n = p.variants.len().max(1) as f64;
    p.variants
        .iter()
        .map(|v| v.ttft.plus(v.decode_batch1.times(new_tokens as f64)))
        .fold(Estimate::default(), Estimate::plus)
        .times(1.0 / n)
}

/// Decode tokens/s per GPU at the run's batch, averaged over the prompt lengths.
pub fn tokens_per_s_per_gpu(p: &StrategyPrediction) -> f64 {
    let n = p.variants.len().max(1) as f64;
    p.variants
        .iter()
        .map(|v| v.decode_tokens_per_s)
        .sum::<f64>()
        / n
        / p.gpus() as f64
}

/// The fitting strategies, best first by `score` (lower is better).
fn ranked(
    predictions: &[StrategyPrediction],
    score: impl Fn(&StrategyPrediction) -> f64,
) -> Vec<(&StrategyPrediction, f64)> {
    let mut ranked: Vec<_> = predictions
        .iter()
        .filter(|p| p.fits())
        .map(|p| (p, score(p)))
        .collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
    ranked
}

/// The strategy with the shortest request; none when no strategy fits.
pub fn for_latency(
    predictions: &[StrategyPrediction],
    new_tokens: usize,
) -> Option<Recommendation> {
    let ranked = ranked(predictions, |p| request_estimate(p, new_tokens).seconds());
    let (best, best_s) = *ranked.first()?;
    let dominant = |p: &StrategyPrediction| request_estimate(p, new_tokens).dominant();
    let first = best.variants.first()?;
    let mut reason = format!(
        "a request alone takes {:.2} s over the prompt lengths on average ({} new tokens; at {}: \
         {:.0} ms to first token, {:.1} ms/token), mostly {}",
        best_s,
        new_tokens,
        first.variant,
        first.ttft.seconds() * 1e3,
        first.decode_batch1.seconds() * 1e3,
        dominant(best)
    );
    reason.push_str(&versus(&ranked, |s| s / best_s, "slower", dominant));
    Some(Recommendation {
        strategy: best.strategy.clone(),
        reason,
    })
}

/// The strategy with the most decode tokens/s per GPU; none when no strategy fits.
pub fn for_throughput(predictions: &[StrategyPrediction]) -> Option<Recommendation> {
    let ranked = ranked(predictions, |p| -tokens_per_s_per_gpu(p));
    let (best, best_score) = *ranked.first()?;
    let per_gpu = -best_score;
    let dominant = |p: &StrategyPrediction| {
        p.variants
            .iter()
            .fold(Estimate::default(), |sum, v| sum.plus(v.decode_batch))
            .dominant()
    };
    let mut reason = format!(
        "{:.0} tokens/s per GPU at batch {} ({:.0} tokens/s on {} GPUs), decode mostly {}",
        per_gpu,
        best.batch_size,
        per_gpu * best.gpus() as f64,
        best.gpus(),
        dominant(best)
    );
    reason.push_str(&versus(
        &ranked,
        |s| per_gpu / -s,
        "fewer per GPU",
        dominant,
    ));
    Some(Recommendation {
        strategy: best.strategy.clone(),
        reason,
    })
}

/// "; next X 1.40x slower, last Y 3.00x slower (mostly Z)": how the others compare.
fn versus(
    ranked: &[(&StrategyPrediction, f64)],
    ratio: impl Fn(f64) -> f64,
    worse: &str,
    dominant: impl Fn(&StrategyPrediction) -> Term,
) -> String {
    let mut text = String::new();
    if let Some((next, score)) = ranked.get(1) {
        text += &format!("; next {} {:.2}x {worse}", next.strategy, ratio(*score));
    }
    if ranked.len() > 2 {
        if let Some((last, score)) = ranked.last() {
            text += &format!(
                ", last {} {:.2}x {worse} (mostly {})",
                last.strategy,
                ratio(*score),
                dominant(last)
            );
        }
    }
    text
}
