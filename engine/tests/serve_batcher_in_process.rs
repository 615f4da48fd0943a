//! The continuous batcher behind `engine serve`, with ranks as threads (the in-process backend) on
//! the tiny synthetic model: sequences joining at different steps, one released mid-way, short and
//! long prompts, greedy and seeded sampling. Each sequence gets exactly the tokens and logprobs it
//! gets alone (`Generator::generate` on one prompt), and tp=2, pp=2, tp=2 x pp=2 and pp=3 give the
//! single rank's tokens (logprobs within 1e-4) on every rank.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device};
use engine::dist::local::LocalJob;
use engine::dist::DistContext;
use engine::model::llama::open_dir;
use engine::model::parallel::Shard;
use engine::model::{split_layers, Llama, ShardPlan};
use engine::runtime::batcher::{Admission, Batcher, StepEvent, StepPlan, WireParams};
use engine::runtime::sampling::SampledToken;
use engine::runtime::{FinishReason, GenerationRequest, Generator, SamplingParams};
use engine::tokenizer::ModelTokenizer;

/// Llama 3's end-of-generation ids (the tiny model uses its tokenizer).
const EOG: [u32; 2] = [128001, 128009];

/// One request and when it joins (and maybe leaves) the batch.
struct Scheduled {
    request: GenerationRequest,
    joins: usize,
    released: Option<usize>,
}

fn schedule() -> Vec<Scheduled> {
    let greedy = SamplingParams {
        max_new_tokens: 8,
        top_logprobs: 3,
        ..Default::default()
    };
    // Short (<= 16 tokens: the streaming kernel) and long prompts, joining at steps 0 to 5.
    let specs = [
        (1usize, 0usize),
        (5, 0),
        (17, 0),
        (3, 1),
        (40, 2),
        (9, 2),
        (24, 4),
        (2, 5),
    ];
    specs
        .iter()
        .enumerate()
        .map(|(i, &(len, joins))| {
            let mut params = greedy.clone();
            if i == 3 {
                params = SamplingParams {
                    temperature: 0.9,
                    top_k: 20,
                    seed: 5,
                    ..greedy.clone()
                };
            }
            if i == 5 {
                params = SamplingParams {
                    temperature: 0.7,
                    top_p: 0.9,
                    seed: 9,
                    max_new_tokens: 11,
                    ..greedy.clone()
                };
            }
            Scheduled {
                request: GenerationRequest {
                    prompt_ids: (0..len as u32)
                        .map(|t| 1000 + (t * 131 + i as u32 * 7919) % 120_000)
                        .collect(),
                    params,
                },
                joins,
                released: (i == 1).then_some(3),
            }
        })
        .collect()
}

fn load(dir: &Path, ctx: &DistContext) -> Llama {
    let (config, ck) = open_dir(dir).unwrap();
    let topo = ctx.topology;
    let layers = split_layers(config.num_hidden_layers, topo.pp, None)
        .unwrap()
        .remove(topo.stage());
    let plan = ShardPlan {
        tp: Shard::new(topo.tp_rank(), topo.tp),
        layers,
    };
    Llama::load(&ck, config, plan, DType::F32, &Device::Cpu).unwrap()
}

/// Each sequence's tokens and how it finished (`None`: released first).
type Outcome = BTreeMap<u64, (Vec<SampledToken>, Option<FinishReason>)>;

/// Runs the schedule through a batcher on this rank.
fn run_batcher(dir: &Path, ctx: &DistContext) -> Outcome {
    let model = load(dir, ctx);
    let mut batcher = Batcher::new(&model, EOG);
    let scheduled = schedule();
    let mut outcome = Outcome::new();
    let last_join = scheduled.iter().map(|s| s.joins).max().unwrap_or(0);
    let mut step = 0;
    while step <= last_join || batcher.running() > 0 {
        let plan = StepPlan {
            admit: scheduled
                .iter()
                .enumerate()
                .filter(|(_, s)| s.joins == step)
                .map(|(i, s)| Admission {
                    id: i as u64,
                    prompt_ids: s.request.prompt_ids.clone(),
                    params: WireParams::from(&s.request.params),
                })
                .collect(),
            release: scheduled
                .iter()
                .enumerate()
                .filter(|(_, s)| s.released == Some(step))
                .map(|(i, _)| i as u64)
                .collect(),
        };
        batcher
            .step(plan, ctx, &mut |event| match event {
                StepEvent::Token { id, token, finish } => {
                    let entry = outcome.entry(id).or_default();
                    entry.0.push(token);
                    entry.1 = finish;
                }
                StepEvent::Rejected { id, message } => panic!("request {id} rejected: {message}"),
            })
            .unwrap();
        step += 1;
    }
    outcome
}

#[test]
fn batched_sequences_match_each_alone_on_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_model_with_tokenizer(dir.path(), Some(4));
    let batched = LocalJob::new(1, 1)
        .run(|ctx| run_batcher(dir.path(), &ctx))
        .remove(0);

    // Against each request alone.
    let model = Llama::load_dir(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let tokenizer = ModelTokenizer::from_dir(dir.path()).unwrap();
    let generator = Generator::new(&model, &tokenizer, EOG);
    for (i, scheduled) in schedule().iter().enumerate() {
        let alone = generator
            .generate(std::slice::from_ref(&scheduled.request))
            .unwrap()
            .remove(0);
        let (tokens, finish) = &batched[&(i as u64)];
        let ids: Vec<u32> = tokens.iter().map(|t| t.token).collect();
        if scheduled.released.is_some() {
            assert!(finish.is_none(), "request {i} was released");
            assert!(
                !ids.is_empty() && alone.completion_token_ids.starts_with(&ids),
                "request {i}: {ids:?} is not a prefix of {:?}",
                alone.completion_token_ids
            );
            continue;
        }
        assert_eq!(ids, alone.completion_token_ids, "request {i}: tokens");
        assert_eq!(*finish, Some(alone.finish_reason), "request {i}: finish");
        for (t, a) in tokens.iter().zip(&alone.logprobs) {
            assert_eq!(
                (t.logprob, &t.top),
                (a.logprob, &a.top_logprobs),
                "request {i}: logprobs alone and batched"
            );
        }
    }

    // The parallel layouts: every rank gets the single rank's tokens.
    for (tp, pp) in [(2, 1), (1, 2), (2, 2), (1, 3)] {
        let per_rank = LocalJob::new(tp, pp).run(|ctx| run_batcher(dir.path(), &ctx));
        for (rank, outcome) in per_rank.iter().enumerate() {
            let what = format!("tp={tp} pp={pp} rank {rank}");
            assert_eq!(
                outcome.keys().collect::<Vec<_>>(),
                batched.keys().collect::<Vec<_>>(),
                "{what}"
            );
            for (id, (tokens, finish)) in outcome {
                let (want, want_finish) = &batched[id];
                let ids = |t: &[SampledToken]| t.iter().map(|t| t.token).collect::<Vec<_>>();
                assert_eq!(ids(tokens), ids(want), "{what}: request {id} tokens");
                assert_eq!(finish, want_finish, "{what}: request {id} finish");
                for (a, b) in tokens.iter().zip(want) {
                    assert!(
                        (a.logprob - b.logprob).abs() < 1e-4,
                        "{what}: request {id}: logprob {} vs {}",
                        a.logprob,
                        b.logprob
                    );
                }
            }
        }
    }
}
