//! Tensor and pipeline parallelism with ranks as threads (the in-process backend): every layout
//! gives the single rank's greedy tokens, logprobs within 1e-4, and the same seeded samples.

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use engine::dist::local::LocalJob;
use engine::dist::DistContext;
use engine::model::llama::open_dir;
use engine::model::parallel::Shard;
use engine::model::{split_layers, Llama, ShardPlan};
use engine::runtime::{GenerationOutput, GenerationRequest, Generator, SamplingParams};
use engine::tokenizer::ModelTokenizer;

fn requests() -> Vec<GenerationRequest> {
    let greedy = SamplingParams {
        max_new_tokens: 8,
        top_logprobs: 3,
        ..Default::default()
    };
    let lengths = [1usize, 5, 17, 3, 40, 9];
    let mut requests: Vec<_> = lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| GenerationRequest {
            prompt_ids: (0..n as u32)
                .map(|t| 1000 + (t * 131 + i as u32 * 7919) % 120_000)
                .collect(),
            params: greedy.clone(),
        })
        .collect();
    // Seeded sampling: over the top-k candidates, and over the whole vocabulary with top-p.
    requests[3].params = SamplingParams {
        temperature: 0.9,
        top_k: 20,
        seed: 5,
        ..greedy.clone()
    };
    requests[5].params = SamplingParams {
        temperature: 0.7,
        top_p: 0.9,
        seed: 9,
        ..greedy
    };
    requests
}

fn generate(dir: &Path, ctx: &DistContext) -> Vec<GenerationOutput> {
    let (config, ck) = open_dir(dir).unwrap();
    let topo = ctx.topology;
    let layers = split_layers(config.num_hidden_layers, topo.pp, None)
        .unwrap()
        .remove(topo.stage());
    let plan = ShardPlan {
        tp: Shard::new(topo.tp_rank(), topo.tp),
        layers,
    };
    let model = Llama::load(&ck, config, plan, DType::F32, &Device::Cpu).unwrap();
    let tokenizer = ModelTokenizer::from_dir(dir).unwrap();
    Generator::new(&model, &tokenizer, [128001, 128009])
        .generate_distributed(&requests(), ctx, 3)
        .unwrap()
}

fn assert_same(single: &[GenerationOutput], sharded: &[GenerationOutput], what: &str) {
    for (i, (a, b)) in single.iter().zip(sharded).enumerate() {
        assert_eq!(
            a.completion_token_ids, b.completion_token_ids,
            "{what}: request {i} tokens"
        );
        for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
            assert!(
                (x.logprob - y.logprob).abs() < 1e-4,
                "{what}: request {i}: logprob {} vs {}",
                x.logprob,
                y.logprob
            );
            let ids = |t: &[(u32, f32)]| t.iter().map(|p| p.0).collect::<Vec<_>>();
            assert_eq!(
                ids(&x.top_logprobs),
                ids(&y.top_logprobs),
                "{what}: request {i} top ids"
            );
        }
    }
}

fn check(kv_heads: usize, tp: usize, pp: usize) {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_model_with_tokenizer(dir.path(), Some(kv_heads));
    let single = LocalJob::new(1, 1)
        .run(|ctx| generate(dir.path(), &ctx))
        .remove(0);
    let per_rank = LocalJob::new(tp, pp).run(|ctx| generate(dir.path(), &ctx));
    for (rank, outputs) in per_rank.iter().enumerate() {
        // The first stage's ranks return the outputs (they receive the sampled tokens).
        if rank < tp {
            assert_same(
                &single,
                outputs,
                &format!("tp={tp} pp={pp} kv_heads={kv_heads} rank {rank}"),
            );
        } else {
            assert!(outputs.is_empty(), "rank {rank} is not on the first stage");
        }
    }
}

#[test]
fn tp2_matches_single_rank() {
    check(4, 2, 1);
}

#[test]
fn tp4_matches_single_rank() {
    check(4, 4, 1);
}

#[test]
fn tp4_with_two_kv_heads_replicates_them_and_matches_single_rank() {
    check(2, 4, 1);
}

#[test]
fn pp4_matches_single_rank() {
    check(4, 1, 4);
}

#[test]
fn tp2_by_pp2_matches_single_rank() {
    check(4, 2, 2);
}
