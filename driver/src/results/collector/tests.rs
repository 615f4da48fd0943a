use std::path::Path;

use super::*;
use crate::data::table::RowStatus;
use crate::parallelism::strategy::{AttemptKind, EngineArgs};
use crate::slurm::job_factory::JobScript;
use crate::slurm::run_state::Phase;

fn baseline(id: &str, variant: &str) -> TableRow {
    TableRow {
        prompt_id: id.into(),
        variant: variant.into(),
        prompt: format!("prompt {id}"),
        token_budget: 2048,
        source_file: "data/prompts_2k.txt".into(),
        local_completion: Some(format!("answer {id}")),
        local_latency_ms: Some(100.0),
        status: RowStatus::Ok,
        prompt_tokens: 2000,
        local_ttft_ms: Some(10.0),
        local_completion_tokens: Some(2),
        local_error: None,
        local_logprobs: None,
    }
}

fn attempt(dir: &Path, number: u32, state: JobState) -> Attempt {
    Attempt {
        number,
        kind: AttemptKind::First,
        why: "first attempt".into(),
        args: EngineArgs {
            tp: 2,
            pp: 1,
            nodes: 1,
            gpus_per_node: 2,
            ranks_per_node: 2,
            layer_split: vec![4],
            micro_batches: None,
            batch_size: 4,
        },
        script: JobScript {
            job_name: "j".into(),
            script: dir.join("job.sbatch"),
            dir: dir.to_path_buf(),
            out: dir.join("out.jsonl"),
            placement: dir.join("placement.tsv"),
            stdout: "o".into(),
            stderr: "e".into(),
            walltime_secs: 60,
            world_size: 2,
        },
        phase: Phase::Ended,
        job_id: Some(format!("10{number}")),
        state: Some(state),
        exit_code: Some(0),
        signal: None,
        nodes: Some("slurm-node".into()),
        reason: None,
        log_tail: None,
        outputs_present: true,
        delivered: true,
        started_unix: 0,
        ended_unix: None,
    }
}

fn job(strategy: &str, variant: &str, status: JobProgress, attempts: Vec<Attempt>) -> JobRecord {
    JobRecord {
        strategy: strategy.into(),
        variant: variant.into(),
        status,
        why: None,
        attempts,
    }
}

fn engine_line(id: &str, tp: usize) -> String {
    format!(
        r#"{{"prompt_id":"{id}","variant":"2k","completion":"answer {id}","latency_ms":200.0,"completion_tokens":4,"tp":{tp},"pp":1,"rank":0,"gpu_id":0,"ttft_ms":50.0,"inter_token_ms":[40.0,60.0,50.0],"logprobs":[-0.5,-0.25,-1.0,-2.0],"finish_reason":"length"}}"#
    )
}

#[test]
fn a_job_s_rows_come_beside_the_baseline_with_placement_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let a = attempt(dir.path(), 1, JobState::Completed);
    std::fs::write(
        &a.script.out,
        format!("{}\n{}\n", engine_line("p02", 2), engine_line("p01", 2)),
    )
    .unwrap();
    std::fs::write(&a.script.placement, "1 node-b 0,1\n0 node-a 0,1\n").unwrap();
    let table = dir.path().join("run.parquet");
    let mut c = ResultCollector::new(
        vec![
            baseline("p01", "2k"),
            baseline("p02", "2k"),
            baseline("p01", "4k"),
        ],
        vec!["tp-single-node".into()],
        table.clone(),
    );
    let j = job(
        "tp-single-node",
        "2k",
        JobProgress::Succeeded,
        vec![a.clone()],
    );
    let got = c.collect_attempt(&j, &a);
    assert_eq!(
        got,
        Collected {
            answered: 2,
            missing: 0
        }
    );
    let rows = c.rows();
    // The baseline table's order, not the artifact's.
    assert_eq!(
        rows.iter()
            .map(|r| r.prompt_id.as_str())
            .collect::<Vec<_>>(),
        ["p01", "p02"]
    );
    let r = &rows[0];
    assert_eq!(r.cluster_completion.as_deref(), Some("answer p01"));
    assert_eq!(r.local_completion.as_deref(), Some("answer p01"));
    assert_eq!(r.nodes.as_deref(), Some("node-a,node-b"));
    assert_eq!((r.tp, r.pp, r.attempt), (Some(2), Some(1), Some(1)));
    assert_eq!(r.job_id.as_deref(), Some("101"));
    // 4 tokens in 200 ms.
    assert_eq!(r.tokens_per_s, Some(20.0));
    // The median of the engine's gaps between tokens.
    assert_eq!(r.decode_ms_per_token, Some(50.0));
    c.checkpoint().unwrap();
    let df = crate::data::table::read_parquet_frame(&table).unwrap();
    assert_eq!(df.height(), 2);
}

#[test]
fn a_malformed_row_is_reported_and_the_others_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let a = attempt(dir.path(), 1, JobState::Completed);
    let wrong_tp = engine_line("p02", 4);
    std::fs::write(
        &a.script.out,
        format!("{}\n{wrong_tp}\n{{\"prompt_id\":", engine_line("p01", 2)),
    )
    .unwrap();
    let mut c = ResultCollector::new(
        vec![
            baseline("p01", "2k"),
            baseline("p02", "2k"),
            baseline("p03", "2k"),
        ],
        vec!["s".into()],
        dir.path().join("t.parquet"),
    );
    let got = c.collect_attempt(&job("s", "2k", JobProgress::Succeeded, vec![a.clone()]), &a);
    assert_eq!(
        got,
        Collected {
            answered: 1,
            missing: 2
        }
    );
    let problems: Vec<String> = c.problems().iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("out.jsonl: row 3")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("row 2: prompt p02 ran at tp=Some(4)")),
        "{problems:?}"
    );
    let rows = c.rows();
    assert!(rows[1]
        .error
        .as_deref()
        .unwrap()
        .contains("no readable row"));
    // Collecting again after a restart gives the same rows and no duplicate problems.
    c.collect_attempt(&job("s", "2k", JobProgress::Succeeded, vec![a.clone()]), &a);
    assert_eq!(c.problems().len(), 2);
    assert_eq!(c.rows(), rows);
}

#[test]
fn a_failed_job_gives_error_rows_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = attempt(dir.path(), 2, JobState::Failed);
    a.outputs_present = false;
    let mut j = job("pp-across-nodes", "4k", JobProgress::Failed, vec![a]);
    j.why = Some("FAILED with exit code 3 after 2 tries".into());
    let mut c = ResultCollector::new(
        vec![baseline("p01", "2k"), baseline("p01", "4k")],
        vec!["pp-across-nodes".into()],
        dir.path().join("t.parquet"),
    );
    let state = RunState {
        version: 1,
        run_id: "r".into(),
        profile: "p".into(),
        launcher: "local".into(),
        created_unix: 0,
        jobs: vec![j],
    };
    assert_eq!(
        c.collect_run(&state),
        Collected {
            answered: 0,
            missing: 1
        }
    );
    let rows = c.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].variant, "4k");
    assert_eq!(rows[0].cluster_completion, None);
    assert_eq!(rows[0].attempt, Some(2));
    assert!(rows[0].error.as_deref().unwrap().contains("exit code 3"));
}
