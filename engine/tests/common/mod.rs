//! Shared test helpers: locating the project's models and writing synthetic ones.
#![allow(dead_code)]

pub mod mpi;
use std::path::{Path, PathBuf};

use candle_core::DType;
use engine::checkpoint::synth::{synthesize, Preset, SynthOptions};

/// The workspace root (the folder above the engine crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("engine has a parent")
        .to_path_buf()
}

/// A model fetched by `make model`; fails loudly (never skips) when it is missing.
pub fn project_model(name: &str) -> PathBuf {
    let base = std::env::var_os("SHARDLAB_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("models"));
    let dir = base.join(name);
    assert!(
        dir.join("config.json").exists() || dir.join("tokenizer.json").exists(),
        "model folder {} is missing: run `make model` first",
        dir.display()
    );
    dir
}

/// Writes the tiny synthetic Llama with the project's Llama 3 tokenizer, so it can generate text.
pub fn tiny_model_with_tokenizer(dir: &Path, kv_heads: Option<usize>) {
    synthesize(
        &SynthOptions {
            preset: Preset::Tiny,
            layers: Some(4),
            kv_heads,
            dtype: DType::F32,
            seed: 11,
            max_shard_bytes: usize::MAX,
            tokenizer_dir: Some(project_model("llama3-tokenizer")),
        },
        dir,
    )
    .expect("synthesize tiny model");
}

/// Writes the tiny synthetic Llama (GQA, llama3 rope scaling) into `dir`.
pub fn tiny_model(dir: &Path, kv_heads: Option<usize>, max_shard_bytes: usize) {
    synthesize(
        &SynthOptions {
            preset: Preset::Tiny,
            layers: Some(3),
            kv_heads,
            dtype: DType::F32,
            seed: 11,
            max_shard_bytes,
            tokenizer_dir: None,
        },
        dir,
    )
    .expect("synthesize tiny model");
}
