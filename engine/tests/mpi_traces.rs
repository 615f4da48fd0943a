//! `engine run --trace-dir` under mpirun: every rank writes a Chrome trace (the JSON Perfetto
//! opens) with spans for loading, prefill, decode steps, all-reduces and pipeline send/recv, and
//! the output rows point at rank 0's trace.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::mpi::run_mpirun;

#[test]
fn every_rank_writes_a_chrome_trace_with_its_compute_and_communication_spans() {
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
