//! The embedded default: `driver baseline` starts the real `engine serve` on SmolLM2-135M-Instruct,
//! fills all 40 rows `ok`, stops the server, and the table reads back in polars with the exact
//! column names and types.
//!
//! The engine serves SmolLM2 at a few dozen prompt tokens a second on a small CPU, and the whole
//! prompt sets are about 147k SmolLM2 tokens: the run therefore uses the smoke setting
//! `max_prompt_chars = 800` (each request carries the start and the end of its prompt) and
//! `max_tokens = 8`. That every whole prompt fits SmolLM2's context is checked separately below.

mod common;

use std::time::Instant;

use driver::data::prompts::PromptRepository;
use driver::data::table::read_parquet_frame;
use driver::data::tokens::TokenCounter;
use polars::prelude::DataType;

const SMOLLM2: &str = "smollm2-135m-instruct";

#[test]
fn the_embedded_engine_serve_fills_all_40_rows_ok() {
    let engine = common::engine_bin();
    let model = common::model_path(SMOLLM2);
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let config = common::write_config(
        dir.path(),
        "embedded",
        &results,
        &format!(
            "model = {:?}\nmax_tokens = 8\nmax_prompt_chars = 800\nconcurrency = 4\n\
             requests_per_minute = 0\nrequest_timeout_s = 900.0\n\
             [baseline.embedded]\nmax_batch = 4\nstartup_timeout_s = 300.0\n",
            model.display().to_string()
        ),
    );
    let start = Instant::now();
    // The driver finds the engine next to itself, as it would after `cargo build --workspace`,
    // unless the tests were pointed at another one.
    let mut driver = common::driver();
    if let Some(bin) = std::env::var_os("SHARDLAB_ENGINE_BIN") {
        driver.env("ENGINE_BIN", bin);
    }
    let output = driver
        .args(["baseline", "--no-progress", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(&engine.display().to_string()), "{stderr}");
    eprintln!("embedded baseline: 40 rows in {:.0?}", start.elapsed());

    let df = read_parquet_frame(&results.join("baseline_prompts.parquet")).unwrap();
    let names: Vec<&str> = df.columns().iter().map(|c| c.name().as_str()).collect();
    assert_eq!(
        names,
        [
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
        ]
    );
    let types: Vec<DataType> = df.columns().iter().map(|c| c.dtype().clone()).collect();
    use DataType::{Float64, Int64, String as Str};
    assert_eq!(
        types,
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
            DataType::List(Box::new(Float64))
        ]
    );
    assert_eq!(df.height(), 40);

    let col = |name: &str| df.column(name).unwrap();
    let (ids, variants, status) = (
        col("prompt_id").str().unwrap(),
        col("variant").str().unwrap(),
        col("status").str().unwrap(),
    );
    let (completion, error) = (
        col("local_completion").str().unwrap(),
        col("local_error").str().unwrap(),
    );
    let (latency, ttft) = (
        col("local_latency_ms").f64().unwrap(),
        col("local_ttft_ms").f64().unwrap(),
    );
    let (tokens, budget) = (
        col("local_completion_tokens").i64().unwrap(),
        col("token_budget").i64().unwrap(),
    );
    for i in 0..40 {
        // The stable order: the 2k rows p01..p20, then the 4k rows in the same order.
        let variant = if i < 20 { "2k" } else { "4k" };
        assert_eq!(ids.get(i), Some(format!("p{:02}", i % 20 + 1).as_str()));
        assert_eq!(variants.get(i), Some(variant));
        assert_eq!(budget.get(i), Some(if i < 20 { 2048 } else { 4096 }));
        assert_eq!(status.get(i), Some("ok"), "row {i}: {:?}", error.get(i));
        assert_eq!(error.get(i), None);
        assert!(completion.get(i).is_some(), "row {i}");
        let (l, t) = (latency.get(i).unwrap(), ttft.get(i));
        assert!(l > 0.0);
        if let Some(t) = t {
            assert!(0.0 < t && t <= l, "row {i}: ttft {t} latency {l}");
        }
        let n = tokens.get(i).unwrap();
        assert!(n <= 8, "row {i}: {n} completion tokens");
    }
}

#[test]
fn every_whole_prompt_fits_smollm2s_context() {
    let model = common::model_path(SMOLLM2);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    let context = config["max_position_embeddings"].as_u64().unwrap() as usize;
    let smollm2 = TokenCounter::from_file(&model.join("tokenizer.json")).unwrap();
    let repository = PromptRepository::new(common::data_dir(), common::counter());
    // The chat template adds a system prompt and role markers; 128 tokens of it and room for a
    // 256-token answer.
    let room = 128 + 256;
    for record in repository.load_all().unwrap() {
        let n = smollm2.count(&record.prompt).unwrap();
        assert!(
            n + room <= context,
            "{} {}: {n} SmolLM2 tokens leave no room in a {context}-token context",
            record.prompt_id,
            record.variant
        );
    }
}
