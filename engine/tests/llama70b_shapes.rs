//! Llama 3.3 70B's exact shapes (hidden 8192, 64 heads, 8 KV heads, intermediate 28672, vocab
//! 128256) with one layer, in bf16 on disk, computed in f32: tp=8 and tp=16 (KV heads replicated
//! twice) give tp=1's greedy tokens, and no rank holds more than its shard: peak anonymous memory
//! (sampled through the run) stays within 1.2 x the shard's bytes + 400 MB.

mod common;

use std::path::Path;
use std::time::Duration;

use common::mpi::{run_mpirun, run_single};
use engine::runtime::batch_job::{RankStats, ResultRow};

const TIMEOUT: Duration = Duration::from_secs(600);

fn read_rows(path: &Path) -> Vec<ResultRow> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn read_stats(dir: &Path, ranks: usize) -> Vec<RankStats> {
    (0..ranks)
        .map(|r| {
            let path = dir.join(format!("rank{r}.json"));
            serde_json::from_str(
                &std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            )
            .unwrap()
        })
        .collect()
}

#[test]
fn tp8_and_tp16_match_tp1_and_each_rank_holds_only_its_shard() {
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("llama-3.3-70b-1layer");
    let tokenizer = common::project_model("llama3-tokenizer");
    let synth = run_single(
        &[
            "synth",
            "--preset",
            "llama-3.3-70b",
            "--layers",
            "1",
            "--dtype",
            "bf16",
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
        ],
        TIMEOUT,
    );
    synth.assert_success();
    let prompts = work.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt_id\": \"p01\", \"variant\": \"2k\", \"prompt\": \"The capital of France is\"}\n\
         {\"prompt_id\": \"p02\", \"variant\": \"2k\", \"prompt\": \"Pipelines and tensors\"}\n",
    )
    .unwrap();

    let run = |ranks: usize, tp: usize| {
        let out = work.path().join(format!("tp{tp}.jsonl"));
        let stats = work.path().join(format!("stats-tp{tp}"));
        let mut args: Vec<String> = vec!["run".into(), "--tp".into(), tp.to_string()];
        for (flag, value) in [
            ("--model", model.to_str().unwrap()),
            ("--prompts", prompts.to_str().unwrap()),
            ("--out", out.to_str().unwrap()),
            ("--stats-dir", stats.to_str().unwrap()),
            ("--max-new-tokens", "3"),
        ] {
            args.push(flag.into());
            args.push(value.into());
        }
        let job = if ranks == 1 {
            run_single(&args, TIMEOUT)
        } else {
            run_mpirun(ranks, &args, TIMEOUT)
        };
        job.assert_success();
        (read_rows(&out), read_stats(&stats, ranks))
    };

    let (single, _) = run(1, 1);
    assert_eq!(single.len(), 2);
    let mut report = Vec::new();
    for tp in [8, 16] {
        let (rows, stats) = run(tp, tp);
        for (a, b) in single.iter().zip(&rows) {
            assert_eq!(
                a.completion_token_ids, b.completion_token_ids,
                "tp={tp} prompt {}",
                a.prompt_id
            );
            for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
                assert!(
                    (x - y).abs() < 1e-3,
                    "tp={tp} prompt {}: logprob {x} vs {y}",
                    a.prompt_id
                );
            }
        }
        for s in &stats {
            let budget = 1.2 * s.shard_bytes as f64 + 400.0 * (1 << 20) as f64;
            report.push(format!(
                "tp={tp} rank {}: shard {:.0} MB, peak RssAnon {:.0} MB, budget {:.0} MB",
                s.rank,
                s.shard_bytes as f64 / 1048576.0,
                s.peak_rss_anon_bytes as f64 / 1048576.0,
                budget / 1048576.0
            ));
            assert!(
                (s.peak_rss_anon_bytes as f64) <= budget,
                "tp={tp} rank {}: peak RssAnon {} bytes over the budget {budget:.0} (shard {} bytes)",
                s.rank,
                s.peak_rss_anon_bytes,
                s.shard_bytes
            );
        }
    }
    // Shown with --nocapture; the figures for the record.
    println!("{}", report.join("\n"));
}
