//! Random-weight models at real shapes (`engine synth`), so sharding and memory can be tested at
//! Llama 3.3 70B's dimensions with only a few layers.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::writer::ShardedWriter;
use crate::config::{GenerationConfig, LlamaConfig, RopeScaling, TokenIds};
use crate::error::{EngineError, Result};

/// Model shapes `engine synth` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// A few-MB Llama 3 style model (GQA, llama3 rope scaling, Llama 3 vocabulary).
    Tiny,
    /// A ~380M-parameter model with 8 heads: enough work per layer for parallel speed-ups to show.
    Small,
    /// Llama 3.3 70B Instruct's exact shapes.
    #[value(name = "llama-3.3-70b")]
    Llama33_70b,
}

/// What to synthesise.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub preset: Preset,
    pub layers: Option<usize>,
    pub kv_heads: Option<usize>,
    pub dtype: DType,
    pub seed: u64,
    /// Largest shard file; a model bigger than this gets an index, as HF checkpoints do.
    pub max_shard_bytes: usize,
    /// Folder with `tokenizer.json` (and optionally `tokenizer_config.json`) to copy in.
    pub tokenizer_dir: Option<PathBuf>,
}

fn llama3_rope_scaling() -> RopeScaling {
    RopeScaling {
        rope_type: "llama3".into(),
        factor: Some(8.0),
        low_freq_factor: Some(1.0),
        high_freq_factor: Some(4.0),
        original_max_position_embeddings: Some(8192),
    }
}

/// The config of a preset (before `--layers` / `--kv-heads` overrides).
pub fn preset_config(preset: Preset) -> LlamaConfig {
    let (hidden, intermediate, layers, heads, kv_heads, max_pos) = match preset {
        Preset::Tiny => (128, 384, 4, 8, 4, 8192),
        Preset::Small => (1024, 3584, 8, 8, 8, 8192),
        Preset::Llama33_70b => (8192, 28672, 80, 64, 8, 131072),
    };
    LlamaConfig {
        architectures: vec!["LlamaForCausalLM".into()],
        model_type: "llama".into(),
        hidden_size: hidden,
        intermediate_size: intermediate,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: Some(kv_heads),
        head_dim: None,
        vocab_size: 128256,
        rms_norm_eps: 1e-5,
        rope_theta: 500000.0,
        rope_scaling: Some(llama3_rope_scaling()),
        max_position_embeddings: max_pos,
        tie_word_embeddings: false,
        bos_token_id: Some(128000),
        eos_token_id: Some(TokenIds::Many(vec![128001, 128008, 128009])),
        pad_token_id: None,
        hidden_act: "silu".into(),
        torch_dtype: None,
    }
}

/// Writes config, generation config, weights (and tokenizer files when given) into `out`.
/// Returns the number of parameters written.
pub fn synthesize(options: &SynthOptions, out: &Path) -> Result<usize> {
    let mut config = preset_config(options.preset);
    if let Some(layers) = options.layers {
        config.num_hidden_layers = layers;
    }
    if let Some(kv) = options.kv_heads {
        config.num_key_value_heads = Some(kv);
    }
    synthesize_config(config, options, out)
}

/// Like [`synthesize`], with `config` instead of the preset's (other shapes, for measuring);
/// `options`' dtype, seed, shard size and tokenizer apply.
pub fn synthesize_config(
    mut config: LlamaConfig,
    options: &SynthOptions,
    out: &Path,
) -> Result<usize> {
    config.torch_dtype = Some(match options.dtype {
        DType::BF16 => "bfloat16".into(),
        DType::F16 => "float16".into(),
        _ => "float32".into(),
    });
    let config_path = out.join("config.json");
    config.validate(&config_path)?;
    std::fs::create_dir_all(out)
        .map_err(|e| EngineError::io(out, "cannot create output folder", e))?;

    let mut writer = ShardedWriter::new(out, options.max_shard_bytes);
    let (h, i, v) = (
        config.hidden_size,
        config.intermediate_size,
        config.vocab_size,
    );
    let (hd, nh, nkv) = (
        config.head_dim(),
        config.num_attention_heads,
        config.num_key_value_heads(),
    );
    let mut params = 0;
    let mut push =
        |writer: &mut ShardedWriter, name: String, shape: &[usize], kind: Init| -> Result<()> {
            // Each tensor its own stream: the same seed gives the same weights at any --layers.
            let tensor_seed =
                options.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ fnv1a(name.as_bytes());
            let t = random_tensor(tensor_seed, shape, kind, options.dtype)?;
            params += t.elem_count();
            writer.push(name, t)
        };
    push(
        &mut writer,
        "model.embed_tokens.weight".into(),
        &[v, h],
        Init::Embedding,
    )?;
    for l in 0..config.num_hidden_layers {
        let p = format!("model.layers.{l}");
        push(
            &mut writer,
            format!("{p}.input_layernorm.weight"),
            &[h],
            Init::Norm,
        )?;
        push(
            &mut writer,
            format!("{p}.self_attn.q_proj.weight"),
            &[nh * hd, h],
            Init::Linear,
        )?;
        push(
            &mut writer,
            format!("{p}.self_attn.k_proj.weight"),
            &[nkv * hd, h],
            Init::Linear,
        )?;
        push(
            &mut writer,
            format!("{p}.self_attn.v_proj.weight"),
            &[nkv * hd, h],
            Init::Linear,
        )?;
        push(
            &mut writer,
            format!("{p}.self_attn.o_proj.weight"),
            &[h, nh * hd],
            Init::Linear,
        )?;
        push(
            &mut writer,
            format!("{p}.post_attention_layernorm.weight"),
            &[h],
            Init::Norm,
        )?;
        push(
            &mut writer,
            format!("{p}.mlp.gate_proj.weight"),
            &[i, h],
            Init::Linear,
        )?;
        push(
            &mut writer,
            format!("{p}.mlp.up_proj.weight"),
            &[i, h],
            Init::Linear,
        )?;
        push(
            &mut writer,
            format!("{p}.mlp.down_proj.weight"),
            &[h, i],
            Init::Linear,
        )?;
    }
    push(&mut writer, "model.norm.weight".into(), &[h], Init::Norm)?;
    push(&mut writer, "lm_head.weight".into(), &[v, h], Init::Linear)?;
    writer.finish()?;

    config.write(&config_path)?;
    GenerationConfig {
        bos_token_id: config.bos_token_id,
        eos_token_id: config.eos_token_id.clone(),
        ..Default::default()
    }
    .write(&out.join("generation_config.json"))?;
    if let Some(dir) = &options.tokenizer_dir {
        copy_tokenizer(dir, out)?;
    }
    Ok(params)
}

fn copy_tokenizer(from: &Path, to: &Path) -> Result<()> {
    for (name, required) in [("tokenizer.json", true), ("tokenizer_config.json", false)] {
        let src = from.join(name);
        if !src.exists() {
            if required {
                return Err(EngineError::file(
                    src,
                    "missing: --tokenizer must name a folder with tokenizer.json",
                ));
            }
            continue;
        }
        let bytes = std::fs::read(&src).map_err(|e| EngineError::io(&src, "cannot read", e))?;
        crate::fsutil::write_atomic(&to.join(name), &bytes)?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Init {
    /// Unit-variance rows, like a trained embedding after norm.
    Embedding,
    /// Variance 1/fan_in, so activations keep their scale through the layers.
    Linear,
    /// Around 1, like trained RMSNorm scales.
    Norm,
}

fn random_tensor(seed: u64, shape: &[usize], kind: Init, dtype: DType) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    // Uniform in [-a, a] has variance a^2/3.
    let (center, a) = match kind {
        Init::Embedding => (0.0, 3f32.sqrt()),
        Init::Linear => (0.0, (3.0 / *shape.last().unwrap_or(&1) as f32).sqrt()),
        Init::Norm => (1.0, 0.1),
    };
    let mut data = vec![0f32; n];
    kernels::cpu::random::fill_uniform(&mut data, seed, center, a);
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?.to_dtype(dtype)?)
}

/// FNV-1a hash: a stable per-tensor seed from its name.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
