//! Generation on the real SmolLM2-135M-Instruct, imported by the project's own code (`make model`).

mod common;

use std::sync::OnceLock;

use candle_core::{DType, Device};
use engine::chat_template::{ChatMessage, RenderOptions};
use engine::runtime::{FinishReason, GenerationRequest, LoadedModel, SamplingParams};

fn smollm2() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = common::project_model("smollm2-135m-instruct");
        LoadedModel::load(&dir, DType::F32, &Device::Cpu).expect("load SmolLM2")
    })
}

fn chat_ids(model: &LoadedModel, prompt: &str) -> Vec<u32> {
    let messages = [ChatMessage {
        role: "user".into(),
        content: prompt.into(),
    }];
    model
        .tokenizer
        .encode_chat(&messages, &RenderOptions::default())
        .unwrap()
}

#[test]
fn greedy_chat_answer_to_2_plus_2_matches_llama_cpp_and_stops_on_im_end() {
    let model = smollm2();
    let request = GenerationRequest {
        prompt_ids: chat_ids(model, "What is 2+2?"),
        params: SamplingParams {
            max_new_tokens: 64,
            ..Default::default()
        },
    };
    let out = model.generator().generate(&[request]).unwrap().remove(0);
    assert_eq!(
        out.completion,
        "The answer to this classic math problem is 4."
    );
    assert_eq!(out.finish_reason, FinishReason::Stop);
    let im_end = model.tokenizer.token_to_id("<|im_end|>").unwrap();
    assert_eq!(out.completion_token_ids.last(), Some(&im_end));
    assert_eq!(out.logprobs.len(), out.completion_token_ids.len());
}

#[test]
fn chat_prompt_tokens_match_llama_cpp() {
    let model = smollm2();
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            common::workspace_root().join("../shared/reference/smollm2/llamacpp_reference.json"),
        )
        .expect("shared/reference/smollm2/llamacpp_reference.json beside the repository"),
    )
    .unwrap();
    let text = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
    let expected: Vec<u32> =
        serde_json::from_value(reference["tokenize_parse_special"][text].clone()).unwrap();
    assert_eq!(chat_ids(model, "What is 2+2?"), expected);
}

#[test]
fn batch_of_four_prompts_of_different_lengths_matches_each_alone() {
    let model = smollm2();
    let prompts = [
        "Hi",
        "Name three colours of the rainbow.",
        "Write one sentence about the sea, then one about mountains, and explain which you prefer.",
        "What is the capital city of France? Answer in one word, please.",
    ];
    let params = SamplingParams {
        max_new_tokens: 24,
        top_logprobs: 3,
        ..Default::default()
    };
    let requests: Vec<_> = prompts
        .iter()
        .map(|p| GenerationRequest {
            prompt_ids: chat_ids(model, p),
            params: params.clone(),
        })
        .collect();
    let lengths: std::collections::HashSet<_> =
        requests.iter().map(|r| r.prompt_ids.len()).collect();
    assert_eq!(lengths.len(), 4, "prompt lengths must differ");
    let batched = model.generator().generate(&requests).unwrap();
    for (request, together) in requests.iter().zip(&batched) {
        let alone = model
            .generator()
            .generate(std::slice::from_ref(request))
            .unwrap()
            .remove(0);
        assert_eq!(together.completion_token_ids, alone.completion_token_ids);
        assert_eq!(together.completion, alone.completion);
        for (a, b) in together.logprobs.iter().zip(&alone.logprobs) {
            assert!(
                (a.logprob - b.logprob).abs() < 1e-4,
                "{} vs {}",
                a.logprob,
                b.logprob
            );
        }
    }
}

#[test]
fn seeded_sampling_is_reproducible_and_stop_strings_cut_the_text() {
    let model = smollm2();
    let ids = chat_ids(model, "Tell me a short story about a cat.");
    let sampled = SamplingParams {
        temperature: 0.8,
        top_p: 0.9,
        top_k: 40,
        seed: 42,
        max_new_tokens: 16,
        ..Default::default()
    };
    let run = |params: &SamplingParams| {
        model
            .generator()
            .generate(&[GenerationRequest {
                prompt_ids: ids.clone(),
                params: params.clone(),
            }])
            .unwrap()
            .remove(0)
    };
    let a = run(&sampled);
    assert_eq!(a.completion_token_ids, run(&sampled).completion_token_ids);
    assert_ne!(
        a.completion_token_ids,
        run(&SamplingParams {
            seed: 43,
            ..sampled.clone()
        })
        .completion_token_ids
    );

    let greedy = run(&SamplingParams {
        max_new_tokens: 16,
        ..Default::default()
    });
    assert_eq!(greedy.finish_reason, FinishReason::Length);
    assert_eq!(greedy.completion_token_ids.len(), 16);
    let word = greedy
        .completion
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    let stopped = run(&SamplingParams {
        max_new_tokens: 16,
        stop: vec![word.clone()],
        ..Default::default()
    });
    assert_eq!(stopped.finish_reason, FinishReason::Stop);
    assert!(!stopped.completion.contains(&word));
    assert!(greedy.completion.starts_with(&stopped.completion));
}
