//! `engine run` under a real `mpirun` (Open MPI), each job checked against the lone `engine run`
//! (a world of one) on the same input: identical greedy token ids and text, logprobs within 1e-4,
//! and the right metadata columns. Then failures: a rank killed mid-run, and a missing shard,
//! must bring the whole job down fast with a non-zero status.
//! These tests never skip: without `mpirun` on PATH they fail and say how to install it.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use common::mpi::{engine_alive, run_mpirun, run_single, Job, JobOutput};

/// A correct job that takes longer than this is hung: it is killed and the test fails. Generous:
/// the tests share two cores, and jobs of up to six ranks run side by side.
const JOB_TIMEOUT: Duration = Duration::from_secs(240);

/// How long a failing job may take to end.
const FAIL_FAST: Duration = Duration::from_secs(30);

/// Greedy logprobs of a sharded job may differ from one rank's by float reassociation only.
const LOGPROB_TOLERANCE: f32 = 1e-4;

/// One output row of `engine run`, every column the tests check.
#[derive(Debug, Clone, Deserialize)]
struct Row {
    prompt_id: String,
    variant: String,
    strategy: String,
    tp: usize,
    pp: usize,
    world_size: usize,
    rank: usize,
    hostname: String,
    completion: String,
    completion_token_ids: Vec<u32>,
    logprobs: Vec<f32>,
    prompt_tokens: usize,
    completion_tokens: usize,
    ttft_ms: f64,
    latency_ms: f64,
    inter_token_ms: Vec<f64>,
    finish_reason: String,
}

/// Every column of an output row (the nullable ones included).
const COLUMNS: [&str; 19] = [
    "prompt_id",
    "variant",
    "strategy",
    "tp",
    "pp",
    "world_size",
    "rank",
    "gpu_id",
    "hostname",
    "completion",
    "completion_token_ids",
    "logprobs",
    "prompt_tokens",
    "completion_tokens",
    "ttft_ms",
    "latency_ms",
    "inter_token_ms",
    "finish_reason",
    "trace_path",
];

/// One input row, as written to the prompts file.
struct Prompt {
    id: String,
    variant: &'static str,
    json: serde_json::Value,
}

/// A `tp x pp` layout and the label the rows must carry.
struct Layout {
    tp: usize,
    pp: usize,
    strategy: Option<&'static str>,
}

impl Layout {
    fn new(tp: usize, pp: usize) -> Self {
        Self {
            tp,
            pp,
            strategy: None,
        }
    }

    fn world(&self) -> usize {
        self.tp * self.pp
    }

    /// `--strategy` when given, else the default label.
    fn strategy(&self) -> String {
        self.strategy
            .map(str::to_string)
            .unwrap_or_else(|| format!("tp{}-pp{}", self.tp, self.pp))
    }

    fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--tp".into(),
            self.tp.to_string().into(),
            "--pp".into(),
            self.pp.to_string().into(),
        ];
        if let Some(strategy) = self.strategy {
            args.extend(["--strategy".into(), strategy.into()]);
        }
        args
    }
}

/// The `engine run` arguments shared by the single-rank and the MPI job.
struct RunSpec<'a> {
    model: &'a Path,
    prompts: &'a Path,
    max_new_tokens: usize,
    batch_size: usize,
    extra: &'a [&'a str],
}

impl RunSpec<'_> {
    fn args(&self, out: &Path, layout: &Layout) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["run".into()];
        args.extend(layout.args());
        args.extend([
            "--model".into(),
            self.model.into(),
            "--prompts".into(),
            self.prompts.into(),
            "--out".into(),
            out.into(),
            "--max-new-tokens".into(),
            self.max_new_tokens.to_string().into(),
            "--batch-size".into(),
            self.batch_size.to_string().into(),
        ]);
        args.extend(self.extra.iter().map(OsString::from));
        args
    }
}

fn write_prompts(dir: &Path, prompts: &[Prompt]) -> PathBuf {
    let path = dir.join("prompts.jsonl");
    let text: String = prompts.iter().map(|p| format!("{}\n", p.json)).collect();
    std::fs::write(&path, text).expect("write prompts");
    path
}

fn read_rows(path: &Path, job: &JobOutput) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}\nthe job said:\n{}",
            path.display(),
            job.describe()
        )
    });
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let value: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("bad row in {}: {e}\n{l}", path.display()));
            let missing: Vec<&str> = COLUMNS
                .iter()
                .copied()
                .filter(|c| value.get(c).is_none())
                .collect();
            assert!(missing.is_empty(), "row without {missing:?}: {l}");
            serde_json::from_value(value)
                .unwrap_or_else(|e| panic!("bad row in {}: {e}\n{l}", path.display()))
        })
        .collect()
}

/// Runs `engine run` alone (no mpirun) and returns its rows, checked against `prompts`.
fn run_reference(spec: &RunSpec, prompts: &[Prompt], dir: &Path) -> Vec<Row> {
    let out_path = dir.join("single.jsonl");
    let layout = Layout::new(1, 1);
    let out = run_single(&spec.args(&out_path, &layout), JOB_TIMEOUT);
    out.assert_success();
    let rows = read_rows(&out_path, &out);
    check_rows(&rows, prompts, &layout, spec.max_new_tokens, "single rank");
    rows
}

/// Runs `mpirun -n tp*pp engine run ...` and returns its rows, checked against `prompts`.
fn run_mpi(spec: &RunSpec, prompts: &[Prompt], layout: &Layout, dir: &Path) -> Vec<Row> {
    let out_path = dir.join(format!("{}.jsonl", layout.strategy()));
    let out = run_mpirun(layout.world(), &spec.args(&out_path, layout), JOB_TIMEOUT);
    out.assert_success();
    let rows = read_rows(&out_path, &out);
    check_rows(
        &rows,
        prompts,
        layout,
        spec.max_new_tokens,
        &layout.strategy(),
    );
    rows
}

/// The metadata columns, and the rows' consistency with themselves and with the input.
fn check_rows(rows: &[Row], prompts: &[Prompt], layout: &Layout, max_new: usize, what: &str) {
    let ids: Vec<&str> = rows.iter().map(|r| r.prompt_id.as_str()).collect();
    let want: Vec<&str> = prompts.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, want, "{what}: one row per prompt, in input order");
    for (row, prompt) in rows.iter().zip(prompts) {
        let at = format!("{what}: prompt {}", row.prompt_id);
        assert_eq!(row.variant, prompt.variant, "{at}: variant");
        assert_eq!(row.strategy, layout.strategy(), "{at}: strategy");
        assert_eq!(
            (row.tp, row.pp, row.world_size),
            (layout.tp, layout.pp, layout.world()),
            "{at}: tp, pp, world_size"
        );
        assert_eq!(row.rank, 0, "{at}: rows come from rank 0");
        assert!(!row.hostname.trim().is_empty(), "{at}: hostname is empty");
        assert_eq!(
            row.completion_tokens,
            row.completion_token_ids.len(),
            "{at}: completion_tokens"
        );
        assert_eq!(
            row.logprobs.len(),
            row.completion_token_ids.len(),
            "{at}: one logprob per generated token"
        );
        assert!(
            row.logprobs.iter().all(|l| l.is_finite() && *l <= 0.0),
            "{at}: logprobs {:?}",
            row.logprobs
        );
        assert!(row.prompt_tokens > 0, "{at}: prompt_tokens");
        match row.finish_reason.as_str() {
            "length" => assert_eq!(row.completion_tokens, max_new, "{at}: finish length"),
            "stop" => assert!(
                (1..=max_new).contains(&row.completion_tokens),
                "{at}: finish stop after {} tokens",
                row.completion_tokens
            ),
            other => panic!("{at}: finish_reason {other:?}, want stop or length"),
        }
        assert!(
            row.ttft_ms >= 0.0 && row.latency_ms >= row.ttft_ms,
            "{at}: ttft_ms {} latency_ms {}",
            row.ttft_ms,
            row.latency_ms
        );
        // The gaps between tokens add up to the time after the first one.
        let gaps: f64 = row.inter_token_ms.iter().sum();
        assert!(
            row.inter_token_ms.len() == row.completion_tokens - 1
                && row.inter_token_ms.iter().all(|g| *g >= 0.0)
                && (gaps - (row.latency_ms - row.ttft_ms)).abs() < 1e-6 * row.latency_ms.max(1.0),
            "{at}: inter_token_ms {:?} for {} tokens, ttft_ms {} latency_ms {}",
            row.inter_token_ms,
            row.completion_tokens,
            row.ttft_ms,
            row.latency_ms
        );
    }
}

/// The MPI job generated what the single rank did.
fn assert_same_generation(single: &[Row], sharded: &[Row], what: &str) {
    assert_eq!(single.len(), sharded.len(), "{what}: row count");
    for (a, b) in single.iter().zip(sharded) {
        let at = format!("{what}: prompt {}", a.prompt_id);
        assert_eq!(b.prompt_id, a.prompt_id, "{at}: order");
        assert_eq!(b.prompt_tokens, a.prompt_tokens, "{at}: prompt_tokens");
        assert_eq!(
            b.completion_token_ids, a.completion_token_ids,
            "{at}: greedy token ids"
        );
        assert_eq!(b.completion, a.completion, "{at}: completion text");
        assert_eq!(b.finish_reason, a.finish_reason, "{at}: finish_reason");
        for (i, (x, y)) in a.logprobs.iter().zip(&b.logprobs).enumerate() {
            assert!(
                (x - y).abs() < LOGPROB_TOLERANCE,
                "{at}: token {i}: logprob {y} vs single rank {x}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tiny synthetic model: six raw prompts of clearly different lengths in one batch.

const TINY_MAX_NEW: usize = 6;

fn tiny_prompts() -> Vec<Prompt> {
    let texts = [
        ("hi", "short", "Hi"),
        (
            "story",
            "medium",
            "Once upon a time, in a small village by the sea, there lived an old fisherman who",
        ),
        ("capital", "short", "The capital of France is"),
        (
            "counting",
            "long",
            "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 \
             31 32 33 34 35 36 37 38 39 40",
        ),
        ("greeting", "short", "Good morning!"),
        (
            "recipe",
            "medium",
            "To bake bread you need flour, water, salt and yeast. First,",
        ),
    ];
    texts
        .iter()
        .map(|&(id, variant, prompt)| Prompt {
            id: id.into(),
            variant,
            json: json!({ "prompt_id": id, "variant": variant, "prompt": prompt }),
        })
        .collect()
}

/// A tiny f32 model with `kv_heads` KV heads (8 query heads), run alone and as `layout`.
fn check_tiny(kv_heads: usize, layout: Layout) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    common::tiny_model_with_tokenizer(&model, Some(kv_heads));
    let prompts = tiny_prompts();
    let prompts_path = write_prompts(dir.path(), &prompts);
    let spec = RunSpec {
        model: &model,
        prompts: &prompts_path,
        max_new_tokens: TINY_MAX_NEW,
        batch_size: prompts.len(),
        extra: &[],
    };
    let single = run_reference(&spec, &prompts, dir.path());
    let mut lengths: Vec<usize> = single.iter().map(|r| r.prompt_tokens).collect();
    lengths.sort_unstable();
    lengths.dedup();
    assert_eq!(
        lengths.len(),
        prompts.len(),
        "the prompts should all differ in length: {lengths:?}"
    );
    let sharded = run_mpi(&spec, &prompts, &layout, dir.path());
    assert_same_generation(
        &single,
        &sharded,
        &format!("tiny model, {kv_heads} KV heads, {}", layout.strategy()),
    );
}

#[test]
fn tiny_tp4_matches_single_rank() {
    check_tiny(4, Layout::new(4, 1));
}

#[test]
fn tiny_pp4_matches_single_rank() {
    check_tiny(4, Layout::new(1, 4));
}

#[test]
fn tiny_tp2_by_pp2_matches_single_rank() {
    check_tiny(4, Layout::new(2, 2));
}

#[test]
fn tiny_tp4_with_two_kv_heads_replicates_them_and_matches_single_rank() {
    check_tiny(2, Layout::new(4, 1));
}

// ---------------------------------------------------------------------------------------------
// SmolLM2-135M-Instruct (9 heads, 3 KV heads, 30 layers): chat prompts, real text.

const SMOL_MAX_NEW: usize = 16;
const SMOL_EXTRA: [&str; 2] = ["--date", "26 Jul 2024"];

fn chat_prompts() -> Vec<Prompt> {
    let chats: [(&str, &[(&str, &str)]); 4] = [
        ("france", &[("user", "What is the capital of France?")]),
        (
            "colors",
            &[
                ("system", "You are a helpful assistant."),
                ("user", "Name three primary colors."),
            ],
        ),
        ("haiku", &[("user", "Write a haiku about the sea.")]),
        (
            "spider",
            &[("user", "How many legs does a spider have? Answer briefly.")],
        ),
    ];
    chats
        .iter()
        .map(|&(id, messages)| {
            let messages: Vec<_> = messages
                .iter()
                .map(|&(role, content)| json!({ "role": role, "content": content }))
                .collect();
            Prompt {
                id: id.into(),
                variant: "chat",
                json: json!({ "prompt_id": id, "variant": "chat", "messages": messages }),
            }
        })
        .collect()
}

fn smol_spec<'a>(model: &'a Path, prompts: &'a Path) -> RunSpec<'a> {
    RunSpec {
        model,
        prompts,
        max_new_tokens: SMOL_MAX_NEW,
        batch_size: 4,
        extra: &SMOL_EXTRA,
    }
}

/// The single rank's SmolLM2 rows, computed once and shared by the SmolLM2 tests.
fn smol_reference() -> &'static [Row] {
    static REFERENCE: OnceLock<Vec<Row>> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let model = common::project_model("smollm2-135m-instruct");
        let dir = tempfile::tempdir().unwrap();
        let prompts = chat_prompts();
        let prompts_path = write_prompts(dir.path(), &prompts);
        let rows = run_reference(&smol_spec(&model, &prompts_path), &prompts, dir.path());
        assert!(
            rows.iter().any(|r| !r.completion.trim().is_empty()),
            "SmolLM2 should write some text: {rows:?}"
        );
        rows
    })
}

fn check_smol(layout: Layout) {
    let single = smol_reference();
    let model = common::project_model("smollm2-135m-instruct");
    let dir = tempfile::tempdir().unwrap();
    let prompts = chat_prompts();
    let prompts_path = write_prompts(dir.path(), &prompts);
    let sharded = run_mpi(
        &smol_spec(&model, &prompts_path),
        &prompts,
        &layout,
        dir.path(),
    );
    assert_same_generation(single, &sharded, &format!("SmolLM2, {}", layout.strategy()));
}

#[test]
fn smollm2_tp3_matches_single_rank() {
    check_smol(Layout::new(3, 1));
}

#[test]
fn smollm2_pp3_matches_single_rank() {
    check_smol(Layout {
        strategy: Some("smollm2-pp3"),
        ..Layout::new(1, 3)
    });
}

#[test]
fn smollm2_tp3_by_pp2_matches_single_rank() {
    check_smol(Layout {
        strategy: Some("smollm2-tp3xpp2"),
        ..Layout::new(3, 2)
    });
}

// ---------------------------------------------------------------------------------------------
// Failures end the whole job, fast.

#[test]
fn killing_one_rank_ends_the_whole_job_fast() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    common::tiny_model_with_tokenizer(&model, Some(4));
    let prompts = &tiny_prompts()[..2];
    let prompts_path = write_prompts(dir.path(), prompts);
    let out_path = dir.path().join("out.jsonl");
    let spec = RunSpec {
        model: &model,
        prompts: &prompts_path,
        // Minutes of decoding: the job must still be running when the rank is killed.
        max_new_tokens: 4000,
        batch_size: 2,
        extra: &[],
    };
    let layout = Layout::new(2, 2);
    let mut job = Job::start_mpirun(layout.world(), &spec.args(&out_path, &layout));
    let ranks = job.wait_for_ranks(layout.world(), Duration::from_secs(120));
    // A couple of seconds into the run (loading, then decoding).
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        job.is_running(),
        "the 4000-token job ended before a rank could be killed"
    );
    let victim = *ranks
        .iter()
        .rev()
        .find(|r| r.rank.is_some_and(|rank| rank != 0))
        .unwrap_or_else(|| panic!("no rank other than 0 among {ranks:?}"));
    let killed_at = Instant::now();
    common::mpi::signal(victim.pid, "KILL");
    let out = job.wait_timeout(FAIL_FAST).unwrap_or_else(|| {
        job.kill_all();
        panic!(
            "`{}` still ran {FAIL_FAST:?} after rank {:?} (pid {}) was killed; killed it",
            job.what(),
            victim.rank,
            victim.pid
        )
    });
    let took = killed_at.elapsed();
    assert!(
        !out.success(),
        "the job must fail when a rank dies\n{}",
        out.describe()
    );
    assert!(
        took < FAIL_FAST,
        "the job took {took:?} to end after the kill\n{}",
        out.describe()
    );
    assert!(
        !out_path.exists(),
        "a failed job must not write its output\n{}",
        out.describe()
    );
    // Every rank is gone (mpirun took them down), not orphaned and still decoding.
    let deadline = Instant::now() + Duration::from_secs(5);
    while ranks.iter().any(|r| engine_alive(r.pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let alive: Vec<_> = ranks.iter().filter(|r| engine_alive(r.pid)).collect();
    assert!(
        alive.is_empty(),
        "ranks outlived the job: {alive:?}\n{}",
        out.describe()
    );
    eprintln!(
        "killed rank {:?} (pid {}); mpirun exited ({}) {:.2} s later",
        victim.rank,
        victim.pid,
        out.status,
        took.as_secs_f64()
    );
}

#[test]
fn a_missing_shard_fails_fast_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let tokenizer = common::project_model("llama3-tokenizer");
    let synth: Vec<OsString> = vec![
        "synth".into(),
        "--preset".into(),
        "tiny".into(),
        "--layers".into(),
        "4".into(),
        "--max-shard-mb".into(),
        "8".into(),
        "--tokenizer".into(),
        tokenizer.into(),
        "--out".into(),
        model.clone().into(),
    ];
    run_single(&synth, JOB_TIMEOUT).assert_success();

    // Remove the shard holding layer 0, which every rank of a tp=2 job loads.
    let index_path = model.join("model.safetensors.index.json");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index_path).expect("the synth index"))
            .expect("index JSON");
    let weight_map = index["weight_map"].as_object().expect("weight_map");
    let shards: std::collections::BTreeSet<&str> =
        weight_map.values().filter_map(|v| v.as_str()).collect();
    assert!(shards.len() > 1, "want several shards, got {shards:?}");
    let missing = weight_map["model.layers.0.input_layernorm.weight"]
        .as_str()
        .expect("layer 0's shard");
    std::fs::remove_file(model.join(missing)).expect("remove the shard");

    let prompts = &tiny_prompts()[..2];
    let prompts_path = write_prompts(dir.path(), prompts);
    let out_path = dir.path().join("out.jsonl");
    let spec = RunSpec {
        model: &model,
        prompts: &prompts_path,
        max_new_tokens: 4,
        batch_size: 2,
        extra: &[],
    };
    let layout = Layout::new(2, 1);
    let out =
        Job::start_mpirun(layout.world(), &spec.args(&out_path, &layout)).wait_or_kill(FAIL_FAST);
    assert!(
        !out.success(),
        "a missing shard must fail the job\n{}",
        out.describe()
    );
    assert!(
        out.elapsed < FAIL_FAST,
        "took {:?}\n{}",
        out.elapsed,
        out.describe()
    );
    assert!(
        out.stderr.contains(missing),
        "stderr should name the missing shard {missing}\n{}",
        out.describe()
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.describe());
    assert!(!out_path.exists(), "a failed job must not write its output");
}
