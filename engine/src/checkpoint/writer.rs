//! Writing safetensors checkpoints atomically: one file, or shards plus an HF index.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::error::{EngineError, Result};

/// Writes `tensors` into one safetensors file at `path` (temp file + rename).
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let tmp = crate::fsutil::temp_path_beside(path)?;
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    let views = tensors.iter().map(|(n, t)| (n.as_str(), t));
    safetensors::tensor::serialize_to_file(views, Some(metadata), &tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        EngineError::file(path, format!("cannot write safetensors: {e}"))
    })?;
    // The serializer creates its file owner-only; a checkpoint is as readable as the other files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| EngineError::io(&tmp, "cannot set permissions", e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| EngineError::io(path, "cannot rename into place", e))
}

/// Writes a checkpoint as numbered shards (`model-00001-of-0000N.safetensors`) and
/// `model.safetensors.index.json`, the layout of large HF checkpoints such as Llama 3.3 70B.
///
/// Shards are written as they fill up, so memory holds at most one shard at a time.
pub struct ShardedWriter {
    dir: PathBuf,
    max_shard_bytes: usize,
    pending: Vec<(String, Tensor)>,
    pending_bytes: usize,
    written: Vec<(PathBuf, Vec<String>)>,
    total_bytes: usize,
}

impl ShardedWriter {
    pub fn new(dir: &Path, max_shard_bytes: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            max_shard_bytes,
            pending: Vec::new(),
            pending_bytes: 0,
            written: Vec::new(),
            total_bytes: 0,
        }
    }

    /// Adds a tensor; flushes the current shard first when it would grow past the limit.
    pub fn push(&mut self, name: impl Into<String>, tensor: Tensor) -> Result<()> {
        let bytes = tensor.elem_count() * tensor.dtype().size_in_bytes();
        if !self.pending.is_empty() && self.pending_bytes + bytes > self.max_shard_bytes {
            self.flush()?;
        }
        self.pending_bytes += bytes;
        self.total_bytes += bytes;
        self.pending.push((name.into(), tensor));
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // Final names need the shard count, so shards get provisional names until `finish`.
        let path = self
            .dir
            .join(format!(".shard-{:05}.partial", self.written.len() + 1));
        write_safetensors(&path, &self.pending)?;
        let names = self.pending.drain(..).map(|(n, _)| n).collect();
        self.written.push((path, names));
        self.pending_bytes = 0;
        Ok(())
    }

    /// Writes the last shard, renames all shards to their final names and writes the index.
    /// A checkpoint of a single shard is written as plain `model.safetensors`, as HF does.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        self.flush()?;
        let count = self.written.len();
        let mut weight_map = BTreeMap::new();
        let mut finals = Vec::new();
        for (i, (partial, names)) in self.written.iter().enumerate() {
            let file_name = if count == 1 {
                "model.safetensors".to_string()
            } else {
                format!("model-{:05}-of-{:05}.safetensors", i + 1, count)
            };
            let final_path = self.dir.join(&file_name);
            std::fs::rename(partial, &final_path)
                .map_err(|e| EngineError::io(&final_path, "cannot rename shard into place", e))?;
            for name in names {
                weight_map.insert(name.clone(), file_name.clone());
            }
            finals.push(final_path);
        }
        if count > 1 {
            let index = serde_json::json!({
                "metadata": { "total_size": self.total_bytes },
                "weight_map": weight_map,
            });
            let text = serde_json::to_string_pretty(&index).expect("index JSON is serialisable");
            crate::fsutil::write_atomic(
                &self.dir.join("model.safetensors.index.json"),
                text.as_bytes(),
            )?;
        }
        Ok(finals)
    }
}
