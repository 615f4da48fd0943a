//! `engine run --trace-dir` under mpirun: every rank writes a Chrome trace (the JSON Perfetto
//! opens) with spans for loading, prefill, decode steps, all-reduces and pipeline send/recv, and
//! the output rows point at rank 0's trace.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::mpi::run_mpirun;

/// A work folder with the tiny synthetic model and a JSONL of two prompts of different lengths.
fn tiny_model_and_two_prompts() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("tiny");
    common::tiny_model_with_tokenizer(&model, None);
    let prompts = work.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt_id\": \"p1\", \"variant\": \"2k\", \"prompt\": \"Tensor and pipeline\"}\n\
         {\"prompt_id\": \"p2\", \"variant\": \"2k\", \"prompt\": \"A longer prompt for the second sequence\"}\n",
    )
    .unwrap();
    (work, model, prompts)
}

#[test]
fn every_rank_writes_a_chrome_trace_with_its_compute_and_communication_spans() {
    let (work, model, prompts) = tiny_model_and_two_prompts();
    let traces = work.path().join("traces");
    let out = work.path().join("out.jsonl");
    let args = [
        "run",
        "--tp",
        "2",
        "--pp",
        "2",
        "--max-new-tokens",
        "4",
        "--model",
        model.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--trace-dir",
        traces.to_str().unwrap(),
    ];
    run_mpirun(4, &args, Duration::from_secs(240)).assert_success();

    for rank in 0..4 {
        let path = traces.join(format!("rank{rank}.trace.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        let events = json
            .as_array()
            .or_else(|| json["traceEvents"].as_array())
            .expect("a list of trace events");
        let names: HashSet<&str> = events.iter().filter_map(|e| e["name"].as_str()).collect();
        let stage = rank / 2;
        let mut expected = vec!["load", "prefill", "decode_step", "all_reduce"];
        expected.push(if stage == 0 { "send" } else { "recv" });
        for name in expected {
            assert!(
                names.contains(name),
                "rank {rank}: no `{name}` span in {}: {names:?}",
                path.display()
            );
        }
    }
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        first["trace_path"].as_str().unwrap(),
        traces.join("rank0.trace.json").to_str().unwrap()
    );
}

/// The `all_reduce` spans' `bytes` and `values` arguments, over every event of a trace.
fn all_reduce_bytes_per_value(trace: &std::path::Path) -> Vec<f64> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(trace).unwrap()).unwrap();
    let events = json
        .as_array()
        .or_else(|| json["traceEvents"].as_array())
        .expect("a list of trace events")
        .clone();
    // tracing-chrome writes span fields as strings.
    let number = |v: &serde_json::Value| -> Option<f64> {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    events
        .iter()
        .filter(|e| e["name"] == "all_reduce")
        .filter_map(|e| Some(number(&e["args"]["bytes"])? / number(&e["args"]["values"])?))
        .collect()
}

/// `--allreduce-dtype model` on a bf16 model: the all-reduces carry 2 bytes a value instead of 4,
/// and the answers stay those of the f32 reduction (greedy tokens equal on this tiny model, whose
/// top logits are far apart; logprobs within bf16's resolution).
#[test]
fn bf16_all_reduce_in_the_model_dtype_halves_the_bytes_and_keeps_the_answers() {
    let (work, model, prompts) = tiny_model_and_two_prompts();
    let mut rows = Vec::new();
    for reduce in ["f32", "model"] {
        let traces = work.path().join(format!("traces-{reduce}"));
        let out = work.path().join(format!("out-{reduce}.jsonl"));
        let args = [
            "run",
            "--tp",
            "2",
            "--dtype",
            "bf16",
            "--allreduce-dtype",
            reduce,
            "--max-new-tokens",
            "6",
            "--model",
            model.to_str().unwrap(),
            "--prompts",
            prompts.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--trace-dir",
            traces.to_str().unwrap(),
        ];
        run_mpirun(2, &args, Duration::from_secs(240)).assert_success();
        let per_value = all_reduce_bytes_per_value(&traces.join("rank1.trace.json"));
        assert!(
            !per_value.is_empty(),
            "{reduce}: no all_reduce spans with bytes"
        );
        let expected = if reduce == "f32" { 4.0 } else { 2.0 };
        assert!(
            per_value.iter().all(|&b| b == expected),
            "{reduce}: bytes per value {per_value:?}, expected {expected}"
        );
        let parsed: Vec<serde_json::Value> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        rows.push(parsed);
    }
    for (f32_row, model_row) in rows[0].iter().zip(&rows[1]) {
        assert_eq!(
            f32_row["completion_token_ids"], model_row["completion_token_ids"],
            "greedy tokens differ between f32 and bf16 all-reduce"
        );
        let logprobs = |row: &serde_json::Value| -> Vec<f64> {
            row["logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_f64().unwrap())
                .collect()
        };
        for (a, b) in logprobs(f32_row).iter().zip(logprobs(model_row)) {
            assert!((a - b).abs() < 0.05, "logprob {a} vs {b}");
        }
    }
}
