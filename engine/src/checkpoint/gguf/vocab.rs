//! The GGUF vocabulary as Hugging Face files: `tokenizer.json` (a `tokenizers` byte-level BPE),
//! `tokenizer_config.json`, and the end-of-generation ids llama.cpp would stop on.
//!
//! Only GPT-2 style byte-level BPE (`tokenizer.ggml.model` "gpt2") with a pre-tokenizer whose regex
//! `tokenizers` reproduces exactly; anything else is refused rather than tokenized differently.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use super::metadata::Metadata;
use crate::error::{EngineError, Result};

/// llama.cpp token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Token texts llama.cpp's `llama_vocab::impl::load` treats as end of generation
/// (<https://github.com/ggml-org/llama.cpp/issues/9606>: text-based, "obviously not ideal").
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
];

/// FIM tokens llama.cpp also stops on: (metadata key, texts it detects the token by when the key
/// is absent). Only the first match of each counts, so SmolLM2's `<reponame>` (4) ends generation
/// and its `<repo_name>` (3) and `<file_sep>` (5) do not.
const EOG_FIM: &[(&str, &[&str])] = &[
    (
        "tokenizer.ggml.fim_pad_token_id",
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    ),
    (
        "tokenizer.ggml.fim_rep_token_id",
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
    ),
    ("tokenizer.ggml.fim_sep_token_id", &["<|file_sep|>"]),
];

/// Pre-tokenizers (`tokenizer.ggml.pre`) this importer reproduces exactly.
const SUPPORTED_PRE: &[&str] = &["smollm", "gpt-2"];

/// The vocabulary read from the `tokenizer.*` metadata.
pub(super) struct GgufVocab {
    /// The GGUF file, for error messages.
    path: PathBuf,
    pub tokens: Vec<String>,
    token_types: Vec<i64>,
    merges: Vec<(String, String)>,
    pre: String,
    pub bos: Option<u32>,
    pub eos: u32,
    pub pad: Option<u32>,
    unk: Option<u32>,
    add_bos: bool,
    chat_template: Option<String>,
    /// Sorted end-of-generation ids.
    pub eog: Vec<u32>,
}

impl GgufVocab {
    pub fn read(meta: &Metadata) -> Result<Self> {
        let model = meta.string("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(meta.bad(
                "tokenizer.ggml.model",
                format!(
                    "only \"gpt2\" (byte-level BPE) vocabularies are supported, found {model:?}"
                ),
            ));
        }
        let pre = meta.string("tokenizer.ggml.pre")?;
        if !SUPPORTED_PRE.contains(&pre) {
            return Err(meta.bad(
                "tokenizer.ggml.pre",
                format!("unsupported pre-tokenizer {pre:?} (supported: {SUPPORTED_PRE:?})"),
            ));
        }
        let tokens: Vec<String> = meta
            .strings("tokenizer.ggml.tokens")?
            .into_iter()
            .map(String::from)
            .collect();
        let n = tokens.len();
        let token_types = meta.integers("tokenizer.ggml.token_type")?;
        if token_types.len() != n {
            return Err(meta.bad(
                "tokenizer.ggml.token_type",
                format!("{} entries for {n} tokens", token_types.len()),
            ));
        }
        let merges = meta
            .strings("tokenizer.ggml.merges")?
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| {
                        meta.bad(
                            "tokenizer.ggml.merges",
                            format!("entry {i} ({m:?}) is not two tokens separated by a space"),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let eos = meta
            .opt_token_id("tokenizer.ggml.eos_token_id", n)?
            .ok_or_else(|| {
                meta.bad(
                    "tokenizer.ggml.eos_token_id",
                    "missing from the GGUF metadata",
                )
            })?;

        let mut eog = BTreeSet::from([eos]);
        for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            eog.extend(meta.opt_token_id(key, n)?);
        }
        for (key, texts) in EOG_FIM {
            let by_text = || tokens.iter().position(|t| texts.contains(&t.as_str()));
            eog.extend(
                meta.opt_token_id(key, n)?
                    .or_else(|| by_text().map(|i| i as u32)),
            );
        }
        eog.extend(
            (0u32..)
                .zip(&tokens)
                .filter(|(_, t)| EOG_TEXTS.contains(&t.as_str()))
                .map(|(id, _)| id),
        );

        if meta.opt_bool("tokenizer.ggml.add_eos_token")? == Some(true) {
            return Err(meta.bad(
                "tokenizer.ggml.add_eos_token",
                "appending EOS on encode is not supported",
            ));
        }

        Ok(Self {
            path: meta.path.to_path_buf(),
            bos: meta.opt_token_id("tokenizer.ggml.bos_token_id", n)?,
            pad: meta.opt_token_id("tokenizer.ggml.padding_token_id", n)?,
            unk: meta.opt_token_id("tokenizer.ggml.unknown_token_id", n)?,
            add_bos: meta
                .opt_bool("tokenizer.ggml.add_bos_token")?
                .unwrap_or(false),
            chat_template: meta
                .opt_string("tokenizer.chat_template")?
                .map(String::from),
            pre: pre.to_string(),
            tokens,
            token_types,
            merges,
            eos,
            eog: eog.into_iter().collect(),
        })
    }

    /// The HF tokenizer: byte-level BPE, CONTROL tokens as special added tokens, USER_DEFINED ones
    /// as plain added tokens (llama.cpp matches both in text), BOS prepended only if the GGUF asks.
    fn tokenizer(&self) -> Result<Tokenizer> {
        let mut vocab = Vocab::with_capacity(self.tokens.len());
        for (id, token) in (0u32..).zip(&self.tokens) {
            if let Some(first) = vocab.insert(token.clone(), id) {
                return Err(self.bad(
                    "tokenizer.ggml.tokens",
                    format!("token {token:?} appears twice (ids {first} and {id})"),
                ));
            }
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, self.merges.clone())
            .fuse_unk(false)
            .byte_fallback(false)
            .build()
            .map_err(|e| self.bad("tokenizer.ggml.merges", format!("cannot build BPE: {e}")))?;
        let mut tokenizer = Tokenizer::new(bpe);

        // Both are the GPT-2 regex; "smollm" first splits every digit on its own, as llama.cpp does.
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tokenizer: PreTokenizerWrapper = match self.pre.as_str() {
            "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
            _ => byte_level.into(),
        };
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

        let added = |kind: i64, special: bool| -> Vec<AddedToken> {
            self.tokens
                .iter()
                .zip(&self.token_types)
                .filter(|(_, t)| **t == kind)
                .map(|(text, _)| AddedToken::from(text.clone(), special))
                .collect()
        };
        let types_error =
            |e: tokenizers::Error| self.bad("tokenizer.ggml.token_type", e.to_string());
        tokenizer
            .add_special_tokens(added(TOKEN_TYPE_CONTROL, true))
            .map_err(types_error)?;
        tokenizer
            .add_tokens(added(TOKEN_TYPE_USER_DEFINED, false))
            .map_err(types_error)?;

        if self.add_bos {
            let bos_error = |e: String| self.bad("tokenizer.ggml.add_bos_token", e);
            let bos = self.bos.ok_or_else(|| {
                bos_error("set, but there is no tokenizer.ggml.bos_token_id".into())
            })?;
            let text = self.tokens[bos as usize].clone();
            let mut template = TemplateProcessing::builder();
            template
                .try_single(format!("{text}:0 $A:0"))
                .and_then(|b| b.try_pair(format!("{text}:0 $A:0 {text}:1 $B:1")))
                .map_err(|e| bos_error(format!("BOS template: {e}")))?;
            let template = template
                .special_tokens(vec![(text, bos)])
                .build()
                .map_err(|e| bos_error(format!("BOS template: {e}")))?;
            tokenizer.with_post_processor(Some(template));
        }
        Ok(tokenizer)
    }

    /// `tokenizer.json`, pretty-printed.
    pub fn tokenizer_json(&self) -> Result<String> {
        self.tokenizer()?
            .to_string(true)
            .map_err(|e| self.bad("tokenizer", format!("cannot serialise tokenizer.json: {e}")))
    }

    fn bad(&self, field: &str, message: impl Into<String>) -> EngineError {
        EngineError::config(&self.path, field, message)
    }

    /// `tokenizer_config.json` as transformers writes it for a `PreTrainedTokenizerFast`.
    pub fn write_tokenizer_config(&self, path: &Path, model_max_length: usize) -> Result<()> {
        let text_of = |id: Option<u32>| id.map(|id| self.tokens[id as usize].clone());
        let added_tokens_decoder: serde_json::Map<String, serde_json::Value> = self
            .tokens
            .iter()
            .zip(&self.token_types)
            .enumerate()
            .filter(|(_, (_, t))| matches!(**t, TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED))
            .map(|(id, (text, t))| {
                let entry = serde_json::json!({
                    "content": text,
                    "lstrip": false,
                    "normalized": false,
                    "rstrip": false,
                    "single_word": false,
                    "special": *t == TOKEN_TYPE_CONTROL,
                });
                (id.to_string(), entry)
            })
            .collect();
        let config = serde_json::json!({
            "add_bos_token": self.add_bos,
            "add_eos_token": false,
            "added_tokens_decoder": added_tokens_decoder,
            "bos_token": text_of(self.bos),
            "chat_template": self.chat_template,
            "clean_up_tokenization_spaces": false,
            "eos_token": text_of(Some(self.eos)),
            "model_max_length": model_max_length,
            "pad_token": text_of(self.pad),
            "tokenizer_class": "PreTrainedTokenizerFast",
            "unk_token": text_of(self.unk),
        });
        let text = serde_json::to_string_pretty(&config)
            .map_err(|e| EngineError::config(path, "*", e.to_string()))?;
        crate::fsutil::write_atomic(path, text.as_bytes())
    }
}
