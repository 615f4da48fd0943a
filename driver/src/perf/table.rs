//! The text `driver plan --predict` prints: what the predictions assume, one row per strategy and
//! prompt length with each time's dominating term, and the two recommendations.

use std::fmt::Write;

use super::predict::Estimate;
use super::recommend::{for_latency, for_throughput};
use super::Predictions;

/// The assumptions, the table and the recommendations, as printed.
pub fn render(predictions: &Predictions) -> String {
    let h = &predictions.hardware;
    let m = &predictions.model;
    let w = &predictions.workload;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "hardware {}", h.describe());
    let _ = writeln!(
        out,
        "model: {} layers, hidden {}, {} heads / {} KV heads, vocab {}, {} bytes per weight; \
         {} new tokens per prompt (decode at the mean context); activations sent as {} bytes",
        m.layers,
        m.hidden_size,
        m.heads,
        m.kv_heads,
        m.vocab_size,
        m.value_bytes,
        w.new_tokens,
        w.activation_bytes
    );
    let batch = predictions
        .strategies
        .first()
        .map_or("b".to_string(), |s| format!("b={}", s.batch_size));
    let _ = writeln!(
        out,
        "\n{:<16} {:>3} {:>3} {:>5} {:>6}  {:<25} {:<25} {:<25} {:>9} {:>9}  GB/GPU weights + KV",
        "strategy",
        "tp",
        "pp",
        "nodes",
        "prompt",
        "TTFT ms (bound)",
        "decode b=1 ms/tok (bound)",
        format!("decode {batch} ms/tok (bound)"),
        format!("tok/s {batch}"),
        "tok/s/GPU",
    );
    for s in &predictions.strategies {
        for v in &s.variants {
            let fits = if v.memory.fits { "" } else { "  DOES NOT FIT" };
            let _ = writeln!(
                out,
                "{:<16} {:>3} {:>3} {:>5} {:>6}  {} {} {} {:>9.0} {:>9.1}  {:.1} + {:.1}{fits}",
                s.strategy,
                s.tp,
                s.pp,
                s.nodes,
                v.variant,
                cell(&v.ttft),
                cell(&v.decode_batch1),
                cell(&v.decode_batch),
                v.decode_tokens_per_s,
                v.decode_tokens_per_s / s.gpus() as f64,
                v.memory.weights_bytes / 1e9,
                v.memory.kv_cache_bytes / 1e9,
            );
        }
    }
    out.push('\n');
    for (goal, pick) in [
        (
            "latency",
            for_latency(&predictions.strategies, w.new_tokens),
        ),
        ("throughput", for_throughput(&predictions.strategies)),
    ] {
        let _ = match pick {
            Some(r) => writeln!(out, "{goal:<10}  {}: {}", r.strategy, r.reason),
            None => writeln!(out, "{goal:<10}  none: no strategy fits in memory"),
        };
    }
    out
}

/// "  116.2 HBM" in a column of 25.
fn cell(e: &Estimate) -> String {
    format!("{:>8.1} {:<16}", e.seconds() * 1e3, e.dominant().label())
}
