//! Shared test helpers: the project's files, the driver and engine binaries, configs.
#![allow(dead_code)]

pub mod fault_server;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use driver::data::prompts::PromptRepository;
use driver::data::tokens::TokenCounter;

/// The workspace root (the folder above the driver crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("driver has a parent")
        .to_path_buf()
}

/// The committed prompt sets.
pub fn data_dir() -> PathBuf {
    workspace_root().join("data")
}

/// A file or folder under `models/` (fetched by `make model`); fails loudly when it is missing.
pub fn model_path(relative: &str) -> PathBuf {
    let base = std::env::var_os("SHARDLAB_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("models"));
    let path = base.join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `make model` first",
        path.display()
    );
    path
}

pub fn llama3_tokenizer() -> PathBuf {
    model_path("llama3-tokenizer/tokenizer.json")
}

pub fn counter() -> TokenCounter {
    TokenCounter::from_file(&llama3_tokenizer()).expect("load the Llama 3 tokenizer")
}

pub fn driver_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_driver"))
}

/// The engine binary next to the driver's, where `cargo build --workspace` (and `make test`)
/// puts it; fails loudly, never skips, when it is not there.
pub fn engine_bin() -> PathBuf {
    let bin = driver_bin().with_file_name(format!("engine{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p shardlab-engine --bin engine` \
         (`make test` builds every binary first)",
        bin.display()
    );
    bin
}

/// `driver` with logs at `info` unless the test says otherwise.
pub fn driver() -> Command {
    let mut command = Command::new(driver_bin());
    command.env("RUST_LOG", "info").env_remove("ENGINE_BIN");
    command
}

/// Maps each prompt's text to its row key (`p07/4k`), so a server can tell rows apart.
pub fn prompt_keys() -> HashMap<String, String> {
    let repository = PromptRepository::new(data_dir(), counter());
    repository
        .load_all()
        .expect("the committed prompt sets load")
        .into_iter()
        .map(|r| (r.prompt, format!("{}/{}", r.prompt_id, r.variant)))
        .collect()
}

/// A config for a run against `url`, with results under `results`; `extra` is appended to the
/// `[baseline]` section.
pub fn write_config(dir: &Path, url: &str, results: &Path, extra: &str) -> PathBuf {
    let text = format!(
        "[prompts]\ndir = {:?}\ntokenizer = {:?}\n\n[results]\ndir = {:?}\n\n[baseline]\nurl = {url:?}\n{extra}\n",
        data_dir().display().to_string(),
        llama3_tokenizer().display().to_string(),
        results.display().to_string(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
