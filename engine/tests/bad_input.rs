//! Bad input through the real `engine` binary: each case exits non-zero with one message that
//! names the file and the field or tensor at fault, and nothing panics.

mod common;

use std::path::Path;
use std::process::Command;

use candle_core::quantized::gguf_file;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// Runs the engine and returns its stderr, asserting a clean failure.
fn engine_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .output()
        .expect("run engine");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "engine {args:?} should fail; stderr: {stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code for {args:?}; stderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "engine {args:?} panicked: {stderr}"
    );
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one message, got: {stderr}");
    stderr
}

fn generate(dir: &Path) -> String {
    engine_fails(&["generate", "--model", dir.to_str().unwrap(), "hello"])
}

fn assert_names(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "message should name {part:?}: {message}"
        );
    }
}

#[test]
fn folder_without_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let msg = generate(dir.path());
    assert_names(
        &msg,
        &[&dir.path().join("config.json").display().to_string()],
    );
}

#[test]
fn config_with_unknown_rope_type() {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_model(dir.path(), None, usize::MAX);
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"llama3\"", "\"dynamic-ntk\"");
    std::fs::write(&path, text).unwrap();
    let msg = generate(dir.path());
    assert_names(
        &msg,
        &[
            &path.display().to_string(),
            "rope_scaling.rope_type",
            "dynamic-ntk",
        ],
    );
}

#[test]
fn safetensors_truncated_mid_tensor() {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_model(dir.path(), None, usize::MAX);
    let path = dir.path().join("model.safetensors");
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let msg = generate(dir.path());
    assert_names(
        &msg,
        &[&path.display().to_string(), "truncated", "tensor `"],
    );
}

#[test]
fn tensor_of_the_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_model(dir.path(), None, usize::MAX);
    // Claim a wider model than the weights: the first linear that disagrees is named.
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"intermediate_size\": 384", "\"intermediate_size\": 512");
    std::fs::write(&path, text).unwrap();
    let msg = generate(dir.path());
    assert_names(
        &msg,
        &[
            "model.safetensors",
            "tensor `model.layers.0.mlp.gate_proj.weight`",
            "[512, 128]",
            "[384, 128]",
        ],
    );
}

#[test]
fn index_naming_a_missing_shard() {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_model(dir.path(), None, 8 << 20);
    let shards: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".safetensors"))
        .collect();
    assert!(
        shards.len() > 1,
        "the tiny model at 8 MiB per shard should have several shards"
    );
    let victim = shards.iter().max().unwrap();
    std::fs::remove_file(victim).unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap();
    let msg = generate(dir.path());
    assert_names(
        &msg,
        &["model.safetensors.index.json", name, "does not exist"],
    );
}

#[test]
fn gguf_of_an_unsupported_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpt2.gguf");
    let weight = QTensor::quantize(
        &Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let mut file = std::fs::File::create(&path).unwrap();
    gguf_file::write(
        &mut file,
        &[(
            "general.architecture",
            &gguf_file::Value::String("gpt2".into()),
        )],
        &[("token_embd.weight", &weight)],
    )
    .unwrap();
    drop(file);
    let out = dir.path().join("out");
    let msg = engine_fails(&[
        "import-gguf",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_names(
        &msg,
        &[&path.display().to_string(), "general.architecture", "gpt2"],
    );
}
