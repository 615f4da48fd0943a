//! GGUF import: turns a llama.cpp GGUF Llama into a Hugging Face model folder (`config.json`,
//! `model.safetensors` in f32, `tokenizer.json`, `tokenizer_config.json`,
//! `generation_config.json`), so the engine has one loading path for every model.
//!
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>. The tensor names and the
//! q/k rope permutation are those of llama.cpp's `convert_hf_to_gguf.py`, undone. Any tensor type
//! candle dequantizes is accepted (Q4_0, Q4_1, Q8_0, F16, F32, k-quants). Not covered: other
//! architectures, mixture-of-experts, llama3 rope scaling (`rope_freqs`), SentencePiece vocabularies.

mod metadata;
mod vocab;

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Tensor};

use crate::checkpoint::writer::ShardedWriter;
use crate::config::{GenerationConfig, LlamaConfig, ModelFiles, TokenIds};
use crate::error::{EngineError, Result};
use metadata::Metadata;

/// Shards stay below this size, so converting a large GGUF never holds all of it in f32 at once.
const MAX_SHARD_BYTES: usize = 4 << 30;

/// What [`import_gguf`] converted and wrote; its `Display` is one log line.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    pub tensors: usize,
    pub parameters: usize,
    pub vocab_size: usize,
    /// Token ids that end generation, as llama.cpp decides them (written to generation_config.json).
    pub eog_token_ids: Vec<u32>,
    pub files: Vec<PathBuf>,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .files
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        write!(
            f,
            "{} tensors, {} parameters, vocab {}, end-of-generation ids {:?}; wrote {}",
            self.tensors,
            self.parameters,
            self.vocab_size,
            self.eog_token_ids,
            names.join(", ")
        )
    }
}

/// Converts the GGUF Llama at `gguf_path` into a Hugging Face folder at `out_dir` (created; each
/// file written atomically). Errors name the GGUF file and the metadata field or tensor at fault.
pub fn import_gguf(gguf_path: &Path, out_dir: &Path) -> Result<ImportSummary> {
    let file = File::open(gguf_path)
        .map_err(|e| EngineError::io(gguf_path, "cannot open GGUF file", e))?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader)
        .map_err(|e| EngineError::file(gguf_path, format!("not a readable GGUF file: {e}")))?;
    let meta = Metadata {
        path: gguf_path,
        content: &content,
    };
    let architecture = meta.string("general.architecture")?;
    if architecture != "llama" {
        return Err(meta.bad(
            "general.architecture",
            format!("expected \"llama\", found {architecture:?}"),
        ));
    }

    let vocab = vocab::GgufVocab::read(&meta)?;
    // Built before anything is written, so a vocabulary it cannot represent leaves no output.
    let tokenizer_json = vocab.tokenizer_json()?;
    let tie_word_embeddings = !content.tensor_infos.contains_key("output.weight");
    let config = llama_config(&meta, &vocab, tie_word_embeddings)?;
    std::fs::create_dir_all(out_dir)
        .map_err(|e| EngineError::io(out_dir, "cannot create output folder", e))?;
    let files = ModelFiles::new(out_dir);

    tracing::info!(gguf = %gguf_path.display(), tensors = content.tensor_infos.len(), "dequantizing");
    let (tensors, parameters, mut written) = write_weights(&meta, &mut reader, &config, out_dir)?;

    config.write(&files.config())?;
    written.push(files.config());
    crate::fsutil::write_atomic(&files.tokenizer(), tokenizer_json.as_bytes())?;
    written.push(files.tokenizer());
    vocab.write_tokenizer_config(&files.tokenizer_config(), config.max_position_embeddings)?;
    written.push(files.tokenizer_config());
    let generation = GenerationConfig {
        bos_token_id: vocab.bos,
        eos_token_id: Some(TokenIds::Many(vocab.eog.clone())),
        pad_token_id: vocab.pad,
        ..Default::default()
    };
    generation.write(&files.generation_config())?;
    written.push(files.generation_config());

    Ok(ImportSummary {
        tensors,
        parameters,
        vocab_size: vocab.tokens.len(),
        eog_token_ids: vocab.eog.clone(),
        files: written,
    })
}

/// `config.json` from the `llama.*` metadata; refuses what the engine would compute wrong.
fn llama_config(
    meta: &Metadata,
    vocab: &vocab::GgufVocab,
    tie_word_embeddings: bool,
) -> Result<LlamaConfig> {
    if meta.opt_usize("llama.expert_count")?.unwrap_or(0) > 0 {
        return Err(meta.bad(
            "llama.expert_count",
            "mixture-of-experts models are not supported",
        ));
    }
    if let Some(kind) = meta.opt_string("llama.rope.scaling.type")? {
        if kind != "none" {
            return Err(meta.bad(
                "llama.rope.scaling.type",
                format!("rope scaling {kind:?} is not supported"),
            ));
        }
    }
    let hidden_size = meta.usize("llama.embedding_length")?;
    let num_attention_heads = meta.usize("llama.attention.head_count")?;
    if num_attention_heads == 0 || hidden_size % num_attention_heads != 0 {
        return Err(meta.bad(
            "llama.attention.head_count",
            format!("{num_attention_heads} does not divide llama.embedding_length {hidden_size}"),
        ));
    }
    let key_length = meta.opt_usize("llama.attention.key_length")?;
    let head_dim = key_length.unwrap_or(hidden_size / num_attention_heads);
    if let Some(v) = meta.opt_usize("llama.attention.value_length")? {
        if v != head_dim {
            return Err(meta.bad(
                "llama.attention.value_length",
                format!("{v} differs from the key length {head_dim}"),
            ));
        }
    }
    if let Some(rope_dim) = meta.opt_usize("llama.rope.dimension_count")? {
        if rope_dim != head_dim {
            return Err(meta.bad(
                "llama.rope.dimension_count",
                format!("partial rotary embeddings ({rope_dim} of head_dim {head_dim}) are not supported"),
            ));
        }
    }
    let vocab_size = vocab.tokens.len();
    if let Some(n) = meta.opt_usize("llama.vocab_size")? {
        if n != vocab_size {
            return Err(meta.bad(
                "llama.vocab_size",
                format!("{n} differs from the {vocab_size} entries of tokenizer.ggml.tokens"),
            ));
        }
    }
    let config = LlamaConfig {
        architectures: vec!["LlamaForCausalLM".into()],
        model_type: "llama".into(),
        hidden_size,
        intermediate_size: meta.usize("llama.feed_forward_length")?,
        num_hidden_layers: meta.usize("llama.block_count")?,
        num_attention_heads,
        num_key_value_heads: Some(
            meta.opt_usize("llama.attention.head_count_kv")?
                .unwrap_or(num_attention_heads),
        ),
        head_dim: key_length,
        vocab_size,
        rms_norm_eps: meta.f64("llama.attention.layer_norm_rms_epsilon")?,
        rope_theta: meta.opt_f64("llama.rope.freq_base")?.unwrap_or(10_000.0),
        rope_scaling: None,
        max_position_embeddings: meta.usize("llama.context_length")?,
        tie_word_embeddings,
        bos_token_id: vocab.bos,
        eos_token_id: Some(TokenIds::One(vocab.eos)),
        pad_token_id: vocab.pad,
        hidden_act: "silu".into(),
        torch_dtype: Some("float32".into()),
    };
    config.validate(meta.path)?;
    Ok(config)
}

/// One GGUF tensor and where it goes.
struct TensorPlan {
    gguf: String,
    hf: String,
    shape: Vec<usize>,
    /// Heads to un-permute the rows of (q and k only).
    rope_heads: Option<usize>,
}

/// Every tensor an HF Llama with `config` has, in checkpoint order, with its GGUF name.
fn tensor_plan(config: &LlamaConfig) -> Vec<TensorPlan> {
    let (h, i, v) = (
        config.hidden_size,
        config.intermediate_size,
        config.vocab_size,
    );
    let (heads, kv, hd) = (
        config.num_attention_heads,
        config.num_key_value_heads(),
        config.head_dim(),
    );
    let plan = |gguf: String, hf: String, shape: &[usize], rope_heads| TensorPlan {
        gguf,
        hf,
        shape: shape.to_vec(),
        rope_heads,
    };
    let mut out = vec![plan(
        "token_embd.weight".into(),
        "model.embed_tokens.weight".into(),
        &[v, h],
        None,
    )];
    for n in 0..config.num_hidden_layers {
        let layer = [
            ("attn_norm", "input_layernorm", vec![h], None),
            (
                "attn_q",
                "self_attn.q_proj",
                vec![heads * hd, h],
                Some(heads),
            ),
            ("attn_k", "self_attn.k_proj", vec![kv * hd, h], Some(kv)),
            ("attn_v", "self_attn.v_proj", vec![kv * hd, h], None),
            ("attn_output", "self_attn.o_proj", vec![h, heads * hd], None),
            ("ffn_norm", "post_attention_layernorm", vec![h], None),
            ("ffn_gate", "mlp.gate_proj", vec![i, h], None),
            ("ffn_up", "mlp.up_proj", vec![i, h], None),
            ("ffn_down", "mlp.down_proj", vec![h, i], None),
        ];
        for (gguf, hf, shape, rope_heads) in layer {
            out.push(plan(
                format!("blk.{n}.{gguf}.weight"),
                format!("model.layers.{n}.{hf}.weight"),
                &shape,
                rope_heads,
            ));
        }
    }
    out.push(plan(
        "output_norm.weight".into(),
        "model.norm.weight".into(),
        &[h],
        None,
    ));
    if !config.tie_word_embeddings {
        out.push(plan(
            "output.weight".into(),
            "lm_head.weight".into(),
            &[v, h],
            None,
        ));
    }
    out
}

/// Dequantizes every tensor to f32 under its HF name; returns (tensors, parameters, files).
fn write_weights(
    meta: &Metadata,
    reader: &mut BufReader<File>,
    config: &LlamaConfig,
    out_dir: &Path,
) -> Result<(usize, usize, Vec<PathBuf>)> {
    let plan = tensor_plan(config);
    let infos = &meta.content.tensor_infos;
    let mut unexpected: Vec<&String> = infos
        .keys()
        .filter(|name| !plan.iter().any(|p| &p.gguf == *name))
        .collect();
    unexpected.sort();
    if let Some(name) = unexpected.first() {
        let why = if name.as_str() == "rope_freqs.weight" {
            "llama3 rope scaling (rope_freqs) is not supported".to_string()
        } else {
            format!(
                "has no Hugging Face Llama equivalent ({} unexpected tensors)",
                unexpected.len()
            )
        };
        return Err(EngineError::tensor(meta.path, name.as_str(), why));
    }

    // Names and shapes are checked before anything is dequantized. candle reverses GGUF's
    // innermost-first dims list on reading, so these are HF's (out, in) shapes.
    for p in &plan {
        let Some(info) = infos.get(&p.gguf) else {
            let why = format!("missing (needed for {})", p.hf);
            return Err(EngineError::tensor(meta.path, &p.gguf, why));
        };
        if info.shape.dims() != p.shape.as_slice() {
            let why = format!(
                "shape {:?}, expected {:?} for {}",
                info.shape.dims(),
                p.shape,
                p.hf
            );
            return Err(EngineError::tensor(meta.path, &p.gguf, why));
        }
    }

    let mut writer = ShardedWriter::new(out_dir, MAX_SHARD_BYTES);
    let mut parameters = 0;
    for p in &plan {
        let at_fault =
            |e: candle_core::Error| EngineError::tensor(meta.path, &p.gguf, e.to_string());
        let tensor = meta
            .content
            .tensor(reader, &p.gguf, &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(at_fault)?;
        let tensor = match p.rope_heads {
            Some(heads) => unpermute_rope_rows(&tensor, heads).map_err(at_fault)?,
            None => tensor,
        };
        parameters += tensor.elem_count();
        writer.push(p.hf.clone(), tensor)?;
    }
    Ok((plan.len(), parameters, writer.finish()?))
}

/// Undoes llama.cpp's q/k permutation: GGUF interleaves each head's rotary pairs, HF Llama
/// rotates halves (`rotate_half`). HF row `h*hd + j*hd/2 + i` = GGUF row `h*hd + 2*i + j`.
fn unpermute_rope_rows(w: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let head_dim = rows / n_head;
    w.reshape((n_head, head_dim / 2, 2, cols))?
        .transpose(1, 2)?
        .reshape((rows, cols))
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::gguf_file::{self, Value};
    use candle_core::quantized::{GgmlDType, QTensor};

    use super::*;

    fn write_gguf(path: &Path, metadata: &[(&str, Value)], tensors: &[(&str, QTensor)]) {
        let mut file = File::create(path).unwrap();
        let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (*k, t)).collect();
        gguf_file::write(&mut file, &metadata, &tensors).unwrap();
    }

    fn strings(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
    }

    const TOKENS: &[&str] = &[
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<repo_name>",
        "<reponame>",
        "<file_sep>",
        "a",
        "b",
        "ab",
        "Ġ",
        "Ġa",
        "1",
        "2",
    ];

    /// A complete tiny Llama: hidden 32, 4 heads of 8, 2 KV heads, one layer, tied embeddings.
    fn tiny_llama_metadata() -> Vec<(&'static str, Value)> {
        let types = TOKENS
            .iter()
            .map(|t| Value::I32(if t.starts_with('<') { 3 } else { 1 }));
        vec![
            ("general.architecture", Value::String("llama".into())),
            ("llama.block_count", Value::U32(1)),
            ("llama.context_length", Value::U32(256)),
            ("llama.embedding_length", Value::U32(32)),
            ("llama.feed_forward_length", Value::U32(64)),
            ("llama.attention.head_count", Value::U32(4)),
            ("llama.attention.head_count_kv", Value::U32(2)),
            ("llama.rope.freq_base", Value::F32(100_000.0)),
            ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            ("tokenizer.ggml.pre", Value::String("smollm".into())),
            ("tokenizer.ggml.tokens", strings(TOKENS)),
            ("tokenizer.ggml.token_type", Value::Array(types.collect())),
            ("tokenizer.ggml.merges", strings(&["a b", "Ġ a"])),
            ("tokenizer.ggml.bos_token_id", Value::U32(1)),
            ("tokenizer.ggml.eos_token_id", Value::U32(2)),
            ("tokenizer.ggml.padding_token_id", Value::U32(2)),
            ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
            (
                "tokenizer.chat_template",
                Value::String("{{ messages }}".into()),
            ),
        ]
    }

    /// A tensor whose element (r, c) is `r * 1000 + c`, so every row is recognisable.
    fn numbered(rows: usize, cols: usize) -> Tensor {
        let data: Vec<f32> = (0..rows * cols)
            .map(|k| ((k / cols) * 1000 + k % cols) as f32)
            .collect();
        Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
    }

    fn tiny_llama_tensors() -> Vec<(String, QTensor)> {
        let f32 = |t: Tensor| QTensor::quantize(&t, GgmlDType::F32).unwrap();
        let ones = |n| f32(Tensor::ones(n, DType::F32, &Device::Cpu).unwrap());
        let random = |r, c| Tensor::randn(0f32, 1.0, (r, c), &Device::Cpu).unwrap();
        vec![
            (
                "token_embd.weight".into(),
                QTensor::quantize(&random(13, 32), GgmlDType::Q8_0).unwrap(),
            ),
            ("output_norm.weight".into(), ones(32)),
            ("blk.0.attn_norm.weight".into(), ones(32)),
            ("blk.0.ffn_norm.weight".into(), ones(32)),
            ("blk.0.attn_q.weight".into(), f32(numbered(32, 32))),
            ("blk.0.attn_k.weight".into(), f32(numbered(16, 32))),
            (
                "blk.0.attn_v.weight".into(),
                QTensor::quantize(&numbered(16, 32), GgmlDType::F16).unwrap(),
            ),
            ("blk.0.attn_output.weight".into(), f32(numbered(32, 32))),
            (
                "blk.0.ffn_gate.weight".into(),
                QTensor::quantize(&random(64, 32), GgmlDType::Q4_1).unwrap(),
            ),
            (
                "blk.0.ffn_up.weight".into(),
                QTensor::quantize(&random(64, 32), GgmlDType::Q4_0).unwrap(),
            ),
            ("blk.0.ffn_down.weight".into(), f32(random(32, 64))),
        ]
    }

    fn write_tiny_llama(path: &Path, metadata: &[(&str, Value)]) {
        let tensors = tiny_llama_tensors();
        let tensors: Vec<(&str, QTensor)> =
            tensors.into_iter().map(|(n, t)| (leak(n), t)).collect();
        write_gguf(path, metadata, &tensors);
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    #[test]
    fn unpermute_puts_gguf_row_h_2i_j_at_hf_row_h_j_i() {
        let (n_head, hd, cols) = (3, 8, 2);
        let gguf = numbered(n_head * hd, cols);
        let hf = unpermute_rope_rows(&gguf, n_head)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let gguf = gguf.to_vec2::<f32>().unwrap();
        for h in 0..n_head {
            for j in 0..2 {
                for i in 0..hd / 2 {
                    assert_eq!(
                        hf[h * hd + j * hd / 2 + i],
                        gguf[h * hd + 2 * i + j],
                        "h={h} j={j} i={i}"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_non_llama_architecture_naming_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gpt2.gguf");
        write_gguf(
            &path,
            &[("general.architecture", Value::String("gpt2".into()))],
            &[],
        );
        let err = import_gguf(&path, &dir.path().join("out"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gpt2.gguf"), "{err}");
        assert!(err.contains("general.architecture"), "{err}");
        assert!(err.contains("\"gpt2\""), "{err}");
        assert!(
            !dir.path().join("out").exists(),
            "nothing is written for a refused file"
        );
    }

    #[test]
    fn garbage_and_truncated_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.gguf");
        std::fs::write(&garbage, b"this is not a GGUF file at all").unwrap();
        let err = import_gguf(&garbage, &dir.path().join("out"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("garbage.gguf"), "{err}");

        let whole = dir.path().join("whole.gguf");
        write_tiny_llama(&whole, &tiny_llama_metadata());
        let bytes = std::fs::read(&whole).unwrap();
        let truncated = dir.path().join("truncated.gguf");
        for len in [20, bytes.len() / 2, bytes.len() - 100] {
            std::fs::write(&truncated, &bytes[..len]).unwrap();
            let err = import_gguf(&truncated, &dir.path().join("out"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("truncated.gguf"), "{len} bytes: {err}");
        }
    }

    #[test]
    fn missing_metadata_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        let mut metadata = tiny_llama_metadata();
        metadata.retain(|(k, _)| *k != "llama.block_count");
        write_tiny_llama(&path, &metadata);
        let err = import_gguf(&path, &dir.path().join("out"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m.gguf") && err.contains("llama.block_count"),
            "{err}"
        );
    }

    #[test]
    fn unknown_pre_tokenizer_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.gguf");
        let mut metadata = tiny_llama_metadata();
        metadata.retain(|(k, _)| *k != "tokenizer.ggml.pre");
        metadata.push(("tokenizer.ggml.pre", Value::String("qwen2".into())));
        write_tiny_llama(&path, &metadata);
        let err = import_gguf(&path, &dir.path().join("out"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p.gguf") && err.contains("tokenizer.ggml.pre"),
            "{err}"
        );
        assert!(err.contains("qwen2"), "{err}");
    }

    #[test]
    fn add_bos_token_becomes_a_post_processor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bos.gguf");
        let mut metadata = tiny_llama_metadata();
        metadata.retain(|(k, _)| *k != "tokenizer.ggml.add_bos_token");
        metadata.push(("tokenizer.ggml.add_bos_token", Value::Bool(true)));
        write_tiny_llama(&path, &metadata);
        let out = dir.path().join("out");
        import_gguf(&path, &out).unwrap();
        let tokenizer = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
        assert_eq!(tokenizer.encode("ab", true).unwrap().get_ids(), &[1, 8]);
        assert_eq!(tokenizer.encode("ab", false).unwrap().get_ids(), &[8]);
    }

    #[test]
    fn imports_tiny_llama_into_hf_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        write_tiny_llama(&path, &tiny_llama_metadata());
        let out = dir.path().join("out");
        let summary = import_gguf(&path, &out).unwrap();
        assert_eq!(summary.tensors, 11);
        assert_eq!(summary.vocab_size, TOKENS.len());
        // eos 2, `<|endoftext|>` 0, FIM repo `<reponame>` 4; not `<repo_name>` 3 or `<file_sep>` 5.
        assert_eq!(summary.eog_token_ids, vec![0, 2, 4]);

        let files = ModelFiles::new(&out);
        let config = LlamaConfig::from_file(&files.config()).unwrap();
        assert_eq!(
            (
                config.hidden_size,
                config.num_attention_heads,
                config.num_key_value_heads()
            ),
            (32, 4, 2)
        );
        assert_eq!((config.rms_norm_eps, config.rope_theta), (1e-5, 100_000.0));
        assert!(config.tie_word_embeddings);
        let generation = GenerationConfig::from_file_if_exists(&files.generation_config())
            .unwrap()
            .unwrap();
        assert_eq!(generation.eos_token_id.unwrap().to_vec(), vec![0, 2, 4]);

        let weights = candle_core::safetensors::load(files.single_weights(), &Device::Cpu).unwrap();
        assert!(!weights.contains_key("lm_head.weight"));
        assert_eq!(weights["model.embed_tokens.weight"].dims(), &[13, 32]);
        let q = weights["model.layers.0.self_attn.q_proj.weight"]
            .to_vec2::<f32>()
            .unwrap();
        // HF row h*8 + j*4 + i holds GGUF row h*8 + 2i + j (numbered: value = row * 1000 + col).
        assert_eq!(q[4][0], 1000.0); // h 0, j 1, i 0 <- GGUF row 1
        assert_eq!(q[8 + 1][3], 10_003.0); // h 1, j 0, i 1 <- GGUF row 10
        let v = weights["model.layers.0.self_attn.v_proj.weight"]
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(v[1][7], 1007.0, "v is not permuted"); // f16-exact

        let tokenizer = tokenizers::Tokenizer::from_file(files.tokenizer()).unwrap();
        let ids = tokenizer
            .encode("ab ab<|im_end|>12", false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(ids, vec![8, 9, 8, 2, 11, 12]);
        assert_eq!(tokenizer.decode(&[8, 10], false).unwrap(), "ab a");

        let text = std::fs::read_to_string(files.tokenizer_config()).unwrap();
        let tc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(tc["eos_token"], "<|im_end|>");
        assert_eq!(tc["added_tokens_decoder"]["4"]["content"], "<reponame>");
        assert_eq!(tc["chat_template"], "{{ messages }}");
    }
}
