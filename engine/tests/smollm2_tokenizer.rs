//! The SmolLM2 folder imported from GGUF (`make model`) against llama.cpp on the same GGUF:
//! token ids for every reference string, the end-of-generation ids and the config facts.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The imported model folder; a missing one fails the test (it must never be skipped silently).
fn model_dir() -> PathBuf {
    let models = std::env::var_os("SHARDLAB_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("models"));
    let dir = models.join("smollm2-135m-instruct");
    assert!(
        dir.join("tokenizer.json").is_file(),
        "{} has no tokenizer.json: run `make model` (scripts/fetch-models.sh) to import SmolLM2",
        dir.display()
    );
    dir
}

/// `shared/` is a sibling of the repository (in CI too).
fn reference() -> serde_json::Value {
    let path = workspace_root().join("../shared/reference/smollm2/llamacpp_reference.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn tokenizer_matches_llamacpp_on_every_reference_string() {
    let path = model_dir().join("tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_file(&path)
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
    let reference = reference();
    let cases = reference["tokenize_parse_special"]
        .as_object()
        .expect("tokenize_parse_special is an object of text -> ids");
    assert!(!cases.is_empty());

    let mut mismatches = Vec::new();
    for (text, expected) in cases {
        let expected: Vec<u32> = serde_json::from_value(expected.clone()).expect("ids are u32");
        // No special tokens added (add_bos_token is false); special tokens in the text still parse.
        let encoding = tokenizer.encode(text.as_str(), false).expect("encode");
        if encoding.get_ids() != expected.as_slice() {
            mismatches.push(format!(
                "{text:?}\n  llama.cpp: {expected:?}\n  ours:      {:?}",
                encoding.get_ids()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} strings tokenize differently:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

#[test]
fn generation_config_stops_where_llamacpp_does() {
    let generation = read_json(&model_dir().join("generation_config.json"));
    assert_eq!(generation["eos_token_id"], serde_json::json!([0, 2, 4]));
}

#[test]
fn config_has_the_smollm2_facts() {
    let c = read_json(&model_dir().join("config.json"));
    assert_eq!(c["model_type"], "llama");
    assert_eq!(c["num_hidden_layers"], 30);
    assert_eq!(c["hidden_size"], 576);
    assert_eq!(c["intermediate_size"], 1536);
    assert_eq!(c["num_attention_heads"], 9);
    assert_eq!(c["num_key_value_heads"], 3);
    assert_eq!(c["vocab_size"], 49152);
    assert_eq!(c["rope_theta"], 100000.0);
    assert_eq!(c["rms_norm_eps"], 1e-5);
    assert_eq!(c["max_position_embeddings"], 8192);
    assert_eq!(c["tie_word_embeddings"], true);
    assert_eq!(c["bos_token_id"], 1);
    assert_eq!(c["eos_token_id"], 2);
}
