//! A model folder's tokenizer: `tokenizer.json` (HF `tokenizers`) plus the chat template and
//! special tokens of `tokenizer_config.json`, loaded once.
//!
//! Behaves like transformers' fast tokenizer: special tokens written in the text are parsed as
//! special, `add_special_tokens` applies the post-processor of `tokenizer.json` (for Llama 3.1+
//! that prepends `<|begin_of_text|>`), and chat prompts are encoded without it because the
//! template prints the BOS itself. [`IncrementalDecoder`] turns a token stream into text deltas.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tokenizers::Tokenizer;

use crate::chat_template::{ChatMessage, ChatTemplate, RenderOptions, SpecialTokens};
use crate::error::{EngineError, Result};

/// A loaded tokenizer with its optional chat template.
pub struct ModelTokenizer {
    inner: Tokenizer,
    chat_template: Option<ChatTemplate>,
    special: SpecialTokens,
    config_path: PathBuf,
}

impl ModelTokenizer {
    /// Loads `dir/tokenizer.json` and, when present, `dir/tokenizer_config.json`; a
    /// `dir/chat_template.jinja` (what newer transformers save) takes precedence over the config's
    /// `chat_template`, as in transformers.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let tokenizer_path = dir.join("tokenizer.json");
        let bytes = std::fs::read(&tokenizer_path)
            .map_err(|e| EngineError::io(&tokenizer_path, "cannot read tokenizer", e))?;
        let inner = Tokenizer::from_bytes(&bytes).map_err(|e| {
            EngineError::file(&tokenizer_path, format!("invalid tokenizer.json: {e}"))
        })?;

        let config_path = dir.join("tokenizer_config.json");
        let config = TokenizerConfig::read_if_exists(&config_path)?;
        let template_path = dir.join("chat_template.jinja");
        let (template_source, template_origin) = if template_path.exists() {
            let text = std::fs::read_to_string(&template_path)
                .map_err(|e| EngineError::io(&template_path, "cannot read chat template", e))?;
            (Some(text), template_path)
        } else {
            (config.chat_template, config_path.clone())
        };
        let chat_template = template_source
            .map(|source| {
                ChatTemplate::new(&source, config.special.clone()).map_err(|e| {
                    EngineError::config(&template_origin, "chat_template", e.to_string())
                })
            })
            .transpose()?;
        Ok(Self {
            inner,
            chat_template,
            special: config.special,
            config_path,
        })
    }

    /// Token ids of `text`; special tokens in the text become their ids.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(|e| EngineError::Tokenizer(format!("cannot encode: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`; unknown ids are dropped, as `tokenizers` does.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| EngineError::Tokenizer(format!("cannot decode {} ids: {e}", ids.len())))
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added (special) tokens: 128256 for Llama 3.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.special.bos_token.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.special.eos_token.as_deref()
    }

    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// Renders a conversation into the prompt text the model was trained on.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        options: &RenderOptions,
    ) -> Result<String> {
        let template = self.chat_template.as_ref().ok_or_else(|| {
            EngineError::config(
                &self.config_path,
                "chat_template",
                "no chat template: this tokenizer cannot format chat messages",
            )
        })?;
        template.render(messages, options)
    }

    /// Renders then encodes without adding special tokens: the template already carries the BOS,
    /// so adding it again would give the model a doubled `<|begin_of_text|>`.
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        options: &RenderOptions,
    ) -> Result<Vec<u32>> {
        let text = self.apply_chat_template(messages, options)?;
        self.encode(&text, false)
    }

    /// The underlying `tokenizers` tokenizer, for what this wrapper does not cover.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

// By hand: the derived Debug of `tokenizers::Tokenizer` prints the whole vocabulary.
impl std::fmt::Debug for ModelTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .field("chat_template", &self.chat_template.is_some())
            .field("config_path", &self.config_path)
            .finish()
    }
}

/// The fields of `tokenizer_config.json` the engine reads.
#[derive(Debug, Default)]
struct TokenizerConfig {
    chat_template: Option<String>,
    special: SpecialTokens,
}

impl TokenizerConfig {
    fn read_if_exists(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| EngineError::io(path, "cannot read tokenizer config", e))?;
        let json: Json = serde_json::from_str(&text).map_err(|e| {
            EngineError::config(
                path,
                format!("line {} column {}", e.line(), e.column()),
                format!("invalid JSON: {e}"),
            )
        })?;
        let bad = |field: &str, message: String| EngineError::config(path, field, message);
        Ok(Self {
            chat_template: chat_template_field(json.get("chat_template"))
                .map_err(|m| bad("chat_template", m))?,
            special: SpecialTokens {
                bos_token: token_field(json.get("bos_token")).map_err(|m| bad("bos_token", m))?,
                eos_token: token_field(json.get("eos_token")).map_err(|m| bad("eos_token", m))?,
            },
        })
    }
}

/// `chat_template`: a string, or a list of `{name, template}` of which "default" is used.
fn chat_template_field(value: Option<&Json>) -> std::result::Result<Option<String>, String> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Array(entries)) => {
            let mut names = Vec::new();
            for entry in entries {
                let name = entry.get("name").and_then(Json::as_str);
                let template = entry.get("template").and_then(Json::as_str);
                match (name, template) {
                    (Some("default"), Some(template)) => return Ok(Some(template.to_owned())),
                    (Some(name), Some(_)) => names.push(name.to_owned()),
                    _ => {
                        return Err(format!(
                            "expected {{\"name\", \"template\"}} entries, found {entry}"
                        ))
                    }
                }
            }
            Err(format!("no template named \"default\" (found {names:?})"))
        }
        Some(other) => Err(format!("expected a string or a list, found {other}")),
    }
}

/// `bos_token`/`eos_token`: a string, an AddedToken object `{"content": ...}`, or null.
fn token_field(value: Option<&Json>) -> std::result::Result<Option<String>, String> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Object(map)) => match map.get("content") {
            Some(Json::String(s)) => Ok(Some(s.clone())),
            _ => Err("expected an object with a string \"content\"".into()),
        },
        Some(other) => Err(format!(
            "expected a string or {{\"content\": ...}}, found {other}"
        )),
    }
}

/// Turns a stream of token ids into text deltas that never split a UTF-8 character.
///
/// Byte-level BPE tokens can hold part of a character (an emoji often spans several tokens), so
/// each step decodes a short window of recent ids with and without the new one and emits the
/// difference only once it no longer ends in U+FFFD; until then the bytes are held back.
#[derive(Debug, Clone, Default)]
pub struct IncrementalDecoder {
    skip_special_tokens: bool,
    /// Ids from the start of the decode window; `ids[..read]` is already emitted.
    ids: Vec<u32>,
    read: usize,
}

impl IncrementalDecoder {
    pub fn new(skip_special_tokens: bool) -> Self {
        Self {
            skip_special_tokens,
            ..Self::default()
        }
    }

    /// Adds one id; returns the new text, or `None` while a character is still incomplete.
    pub fn step(&mut self, tokenizer: &ModelTokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let emitted = tokenizer.decode(&self.ids[..self.read], self.skip_special_tokens)?;
        let full = tokenizer.decode(&self.ids, self.skip_special_tokens)?;
        if full.ends_with('\u{FFFD}') || full.len() <= emitted.len() {
            return Ok(None);
        }
        let Some(delta) = full.strip_prefix(emitted.as_str()) else {
            // A decoder that rewrites earlier text (none of the Llama ones does): hold back.
            return Ok(None);
        };
        let delta = delta.to_owned();
        // Keep only the last emitted ids as context: decoders may look at the previous token
        // (e.g. to strip a leading space), and the window stays short however long the stream.
        self.ids.drain(..self.read);
        self.read = self.ids.len();
        Ok(Some(delta))
    }

    /// Whatever is still held back (e.g. a truncated character at the end of generation).
    pub fn flush(&mut self, tokenizer: &ModelTokenizer) -> Result<Option<String>> {
        let emitted = tokenizer.decode(&self.ids[..self.read], self.skip_special_tokens)?;
        let full = tokenizer.decode(&self.ids, self.skip_special_tokens)?;
        self.ids.clear();
        self.read = 0;
        let rest = full.strip_prefix(emitted.as_str()).unwrap_or(&full);
        Ok((!rest.is_empty()).then(|| rest.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::AddedToken;

    /// A byte-level BPE with no merges: every byte is its own token, so "é" is two tokens and a
    /// llama emoji four, which exercises the held-back bytes of the incremental decoder.
    fn write_byte_tokenizer(dir: &Path) {
        let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
        alphabet.sort_unstable();
        let vocab: tokenizers::models::bpe::Vocab = alphabet
            .into_iter()
            .zip(0u32..)
            .map(|(c, i)| (c.to_string(), i))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, vec![])
            .build()
            .unwrap();
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer
            .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
            .with_decoder(Some(ByteLevelDecoder::default()));
        tokenizer
            .add_special_tokens(vec![
                AddedToken::from("<s>", true),
                AddedToken::from("</s>", true),
            ])
            .unwrap();
        tokenizer.save(dir.join("tokenizer.json"), false).unwrap();
    }

    fn write_config(dir: &Path, json: &str) {
        std::fs::write(dir.join("tokenizer_config.json"), json).unwrap();
    }

    #[test]
    fn loads_without_config_and_has_no_template() {
        let dir = tempfile::tempdir().unwrap();
        write_byte_tokenizer(dir.path());
        let tok = ModelTokenizer::from_dir(dir.path()).unwrap();
        assert!(tok.chat_template().is_none());
        assert_eq!(tok.vocab_size(), 258);
        let err = tok
            .apply_chat_template(&[ChatMessage::new("user", "hi")], &RenderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tokenizer_config.json") && err.contains("chat_template"),
            "{err}"
        );
    }

    #[test]
    fn special_tokens_in_text_are_parsed_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        write_byte_tokenizer(dir.path());
        let tok = ModelTokenizer::from_dir(dir.path()).unwrap();
        let s = tok.token_to_id("<s>").unwrap();
        let ids = tok.encode("<s>hé</s>", false).unwrap();
        assert_eq!(ids.len(), 1 + 3 + 1);
        assert_eq!(ids[0], s);
        assert_eq!(tok.id_to_token(s).as_deref(), Some("<s>"));
        assert_eq!(tok.decode(&ids, false).unwrap(), "<s>hé</s>");
        assert_eq!(tok.decode(&ids, true).unwrap(), "hé");
    }

    #[test]
    fn template_list_and_token_objects_are_read() {
        let dir = tempfile::tempdir().unwrap();
        write_byte_tokenizer(dir.path());
        write_config(
            dir.path(),
            r#"{"bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>",
                "chat_template": [{"name": "tool_use", "template": "x"},
                                  {"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"}]}"#,
        );
        let tok = ModelTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tok.bos_token(), Some("<s>"));
        let messages = [ChatMessage::new("user", "hi")];
        let text = tok
            .apply_chat_template(&messages, &RenderOptions::default())
            .unwrap();
        assert_eq!(text, "<s>hi</s>");
        let ids = tok
            .encode_chat(&messages, &RenderOptions::default())
            .unwrap();
        assert_eq!(ids.first().copied(), tok.token_to_id("<s>"));
        assert_eq!(ids.last().copied(), tok.token_to_id("</s>"));
    }

    #[test]
    fn config_errors_name_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        write_byte_tokenizer(dir.path());
        for (json, field) in [
            (r#"{"bos_token": 5}"#, "bos_token"),
            (
                r#"{"chat_template": [{"name": "rag", "template": "x"}]}"#,
                "chat_template",
            ),
            (r#"{"chat_template": "{% for %}"}"#, "chat_template"),
        ] {
            write_config(dir.path(), json);
            let err = ModelTokenizer::from_dir(dir.path())
                .unwrap_err()
                .to_string();
            assert!(err.contains("tokenizer_config.json"), "{err}");
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn missing_tokenizer_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = ModelTokenizer::from_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
    }

    #[test]
    fn incremental_decoder_never_splits_a_character() {
        let dir = tempfile::tempdir().unwrap();
        write_byte_tokenizer(dir.path());
        let tok = ModelTokenizer::from_dir(dir.path()).unwrap();
        let text = "héllo 🦙 wörld";
        let ids = tok.encode(text, false).unwrap();
        let mut decoder = IncrementalDecoder::new(false);
        let mut out = String::new();
        let mut held = 0;
        for &id in &ids {
            match decoder.step(&tok, id).unwrap() {
                Some(delta) => out.push_str(&delta),
                None => held += 1,
            }
        }
        assert!(decoder.flush(&tok).unwrap().is_none());
        assert_eq!(out, text);
        // "é", "ö" hold back one byte each, the emoji three.
        assert_eq!(held, 5);
    }

    #[test]
    fn incremental_decoder_flushes_a_truncated_character() {
        let dir = tempfile::tempdir().unwrap();
        write_byte_tokenizer(dir.path());
        let tok = ModelTokenizer::from_dir(dir.path()).unwrap();
        let ids = tok.encode("a🦙", false).unwrap();
        let mut decoder = IncrementalDecoder::new(false);
        assert_eq!(decoder.step(&tok, ids[0]).unwrap().as_deref(), Some("a"));
        assert_eq!(decoder.step(&tok, ids[1]).unwrap(), None);
        assert_eq!(decoder.flush(&tok).unwrap().as_deref(), Some("\u{FFFD}"));
    }
}
