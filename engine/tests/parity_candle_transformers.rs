//! The engine's Llama against candle-transformers' `models::llama` on the same weights: the
//! logits must agree within 1e-4 for the prefill and for 8 decode steps.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama as reference;
use engine::config::LlamaConfig;
use engine::model::{Llama, SequenceBatch};
use engine::runtime::sampling::argmax;

fn reference_config(config: &LlamaConfig) -> reference::Config {
    let json = serde_json::to_string(config).unwrap();
    let cfg: reference::LlamaConfig = serde_json::from_str(&json).unwrap();
    cfg.into_config(false)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn tiny_gqa_llama3_rope_matches_candle_transformers_for_prefill_and_8_decode_steps() {
    let prompt: Vec<u32> = vec![128000, 791, 6864, 315, 9822, 374, 12366, 13, 578];
    compare_with_candle_transformers(&prompt, 8);
}

#[test]
fn long_prompt_prefill_in_several_attention_chunks_matches_candle_transformers() {
    // Past the engine's 128-row prefill chunk, so chunked causal attention is exercised.
    let prompt: Vec<u32> = (0..300u32).map(|i| 1000 + (i * 7919) % 100_000).collect();
    compare_with_candle_transformers(&prompt, 3);
}

fn compare_with_candle_transformers(prompt: &[u32], decode_steps: usize) {
    let dir = tempfile::tempdir().unwrap();
    // A small shard limit forces several shards and an index, the layout of real 70B checkpoints.
    common::tiny_model(dir.path(), Some(2), 8 << 20);
    assert!(dir.path().join("model.safetensors.index.json").exists());

    let device = Device::Cpu;
    let ours = Llama::load_dir(dir.path(), DType::F32, &device).unwrap();
    let config = ours.config().clone();
    assert!(config.llama3_rope_scaling().unwrap().is_some());
    assert!(config.num_key_value_heads() < config.num_attention_heads);

    let mut shards: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    shards.sort();
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&shards, DType::F32, &device).unwrap() };
    let ref_cfg = reference_config(&config);
    let theirs = reference::Llama::load(vb, &ref_cfg).unwrap();
    let mut their_cache = reference::Cache::new(true, DType::F32, &ref_cfg, &device).unwrap();

    let mut our_cache = ours.new_cache(prompt.len() + decode_steps).unwrap();
    let our_logits = ours
        .forward(SequenceBatch {
            tokens: vec![prompt],
            caches: vec![&mut our_cache],
        })
        .unwrap()
        .squeeze(0)
        .unwrap();
    let input = Tensor::new(prompt, &device).unwrap().unsqueeze(0).unwrap();
    let their_logits = theirs
        .forward(&input, 0, &mut their_cache)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let diff = max_abs_diff(&our_logits, &their_logits);
    assert!(diff < 1e-4, "prefill logits differ by {diff}");

    let mut next = argmax(&our_logits.to_vec1::<f32>().unwrap());
    for step in 0..decode_steps {
        let position = prompt.len() + step;
        let token = [next];
        let our_logits = ours
            .forward(SequenceBatch {
                tokens: vec![&token[..]],
                caches: vec![&mut our_cache],
            })
            .unwrap()
            .squeeze(0)
            .unwrap();
        let input = Tensor::new(&token, &device).unwrap().unsqueeze(0).unwrap();
        let their_logits = theirs
            .forward(&input, position, &mut their_cache)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let diff = max_abs_diff(&our_logits, &their_logits);
        assert!(diff < 1e-4, "decode step {step}: logits differ by {diff}");
        next = argmax(&our_logits.to_vec1::<f32>().unwrap());
    }
}
