//! Reading safetensors checkpoints: `model.safetensors`, or `model.safetensors.index.json` with
//! its shards. Files are memory-mapped; a tensor's bytes are read only when it is loaded, and
//! headers are checked up front so a truncated file or a missing shard fails at open time with the
//! file and tensor named.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use serde::Deserialize;

use crate::config::ModelFiles;
use crate::error::{EngineError, Result};

/// One memory-mapped safetensors file.
struct MappedFile {
    path: PathBuf,
    mmap: Mmap,
}

/// Where a tensor lives and what it is.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    file: usize,
    pub dtype: DType,
    pub shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A checkpoint's tensors across one or more memory-mapped safetensors files.
pub struct Checkpoint {
    files: Vec<MappedFile>,
    tensors: HashMap<String, TensorEntry>,
    /// Bytes of every tensor loaded so far, in the dtype it was loaded as: a rank's shard size.
    loaded_bytes: std::cell::Cell<usize>,
}

#[derive(Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

#[derive(Deserialize)]
struct WeightIndex {
    weight_map: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Opens the weights of a HF model folder: the index and its shards when an index exists,
    /// else `model.safetensors`.
    pub fn open(files: &ModelFiles) -> Result<Self> {
        let index = files.weights_index();
        if index.exists() {
            return Self::open_index(&index);
        }
        let single = files.single_weights();
        if !single.exists() {
            return Err(EngineError::file(
                &files.dir,
                "no weights: expected model.safetensors or model.safetensors.index.json",
            ));
        }
        Self::open_files(&[single])
    }

    /// Opens the shards named by an HF `model.safetensors.index.json`, checking that each shard
    /// exists and holds every tensor the index assigns to it.
    pub fn open_index(index_path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index_path)
            .map_err(|e| EngineError::io(index_path, "cannot read weights index", e))?;
        let index: WeightIndex = serde_json::from_str(&text).map_err(|e| {
            EngineError::config(index_path, "weight_map", format!("invalid index: {e}"))
        })?;
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let mut shard_names: Vec<&String> = index.weight_map.values().collect();
        shard_names.sort();
        shard_names.dedup();
        for name in &shard_names {
            let path = dir.join(name);
            if !path.exists() {
                let tensor = index
                    .weight_map
                    .iter()
                    .find(|(_, shard)| shard == name)
                    .map(|(t, _)| t.as_str())
                    .unwrap_or("?");
                return Err(EngineError::tensor(
                    index_path,
                    tensor,
                    format!(
                        "the index names shard {name}, which does not exist ({})",
                        path.display()
                    ),
                ));
            }
        }
        let paths: Vec<PathBuf> = shard_names.iter().map(|n| dir.join(n)).collect();
        let checkpoint = Self::open_files(&paths)?;
        for (tensor, shard) in &index.weight_map {
            let found = checkpoint
                .tensors
                .get(tensor)
                .map(|e| &checkpoint.files[e.file].path);
            if found != Some(&dir.join(shard)) {
                return Err(EngineError::tensor(
                    dir.join(shard),
                    tensor,
                    format!("listed in {} but not in this shard", index_path.display()),
                ));
            }
        }
        Ok(checkpoint)
    }

    /// Opens safetensors files directly (tensor names must be unique across them).
    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut tensors = HashMap::new();
        for (file_idx, path) in paths.iter().enumerate() {
            let (mapped, entries) = map_file(path, file_idx)?;
            for (name, entry) in entries {
                if tensors.insert(name.clone(), entry).is_some() {
                    return Err(EngineError::tensor(
                        path,
                        name,
                        "appears in more than one file",
                    ));
                }
            }
            files.push(mapped);
        }
        Ok(Self {
            files,
            tensors,
            loaded_bytes: std::cell::Cell::new(0),
        })
    }

    /// Bytes of all tensors loaded from this checkpoint so far (in their loaded dtype).
    pub fn loaded_bytes(&self) -> usize {
        self.loaded_bytes.get()
    }

    /// The entry of a tensor, if the checkpoint has it.
    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.get(name)
    }

    /// Names of every tensor in the checkpoint.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|s| s.as_str())
    }

    /// The file that holds `name` (or the first file, for errors about a missing tensor).
    pub fn path_of(&self, name: &str) -> &Path {
        let file = self.tensors.get(name).map(|e| e.file).unwrap_or(0);
        &self.files[file].path
    }

    /// Loads a whole tensor, checking its shape, converted to `dtype` on `device`.
    pub fn load(
        &self,
        name: &str,
        expected_shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let entry = self.checked_entry(name, expected_shape)?;
        let bytes = &self.files[entry.file].mmap[entry.start..entry.end];
        self.to_tensor(name, entry, bytes, &entry.shape, dtype, device)
    }

    /// Loads rows `start..start+len` of dimension 0, reading only those bytes: how a rank reads its
    /// slice of a column-parallel weight or of a vocabulary shard.
    pub fn load_rows(
        &self,
        name: &str,
        expected_shape: &[usize],
        start: usize,
        len: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let entry = self.checked_entry(name, expected_shape)?;
        let rows = entry.shape.first().copied().unwrap_or(1);
        if start + len > rows {
            return Err(EngineError::tensor(
                self.path_of(name),
                name,
                format!("rows {start}..{} out of range for {rows} rows", start + len),
            ));
        }
        let row_bytes = (entry.end - entry.start) / rows.max(1);
        let begin = entry.start + start * row_bytes;
        let bytes = &self.files[entry.file].mmap[begin..begin + len * row_bytes];
        let mut shape = entry.shape.clone();
        shape[0] = len;
        self.to_tensor(name, entry, bytes, &shape, dtype, device)
    }

    /// Loads columns `start..start+len` of a 2-D tensor, reading only those bytes of each row: how
    /// a rank reads its slice of a row-parallel weight.
    pub fn load_cols(
        &self,
        name: &str,
        expected_shape: &[usize],
        start: usize,
        len: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let entry = self.checked_entry(name, expected_shape)?;
        let &[rows, cols] = entry.shape.as_slice() else {
            return Err(EngineError::tensor(
                self.path_of(name),
                name,
                "column slices need a 2-D tensor",
            ));
        };
        if start + len > cols {
            return Err(EngineError::tensor(
                self.path_of(name),
                name,
                format!(
                    "columns {start}..{} out of range for {cols} columns",
                    start + len
                ),
            ));
        }
        if start == 0 && len == cols {
            return self.load(name, expected_shape, dtype, device);
        }
        let elem = entry.dtype.size_in_bytes();
        let data = &self.files[entry.file].mmap[entry.start..entry.end];
        let mut bytes = Vec::with_capacity(rows * len * elem);
        for row in data.chunks_exact(cols * elem) {
            bytes.extend_from_slice(&row[start * elem..(start + len) * elem]);
        }
        self.to_tensor(name, entry, &bytes, &[rows, len], dtype, device)
    }

    fn checked_entry(&self, name: &str, expected_shape: &[usize]) -> Result<&TensorEntry> {
        let entry = self.tensors.get(name).ok_or_else(|| {
            let files: Vec<String> = self
                .files
                .iter()
                .map(|f| f.path.display().to_string())
                .collect();
            EngineError::tensor(
                self.files
                    .first()
                    .map(|f| f.path.clone())
                    .unwrap_or_default(),
                name,
                format!(
                    "missing from the checkpoint (searched {})",
                    files.join(", ")
                ),
            )
        })?;
        if entry.shape != expected_shape {
            return Err(EngineError::tensor(
                &self.files[entry.file].path,
                name,
                format!("expected shape {expected_shape:?}, found {:?}", entry.shape),
            ));
        }
        Ok(entry)
    }

    fn to_tensor(
        &self,
        name: &str,
        entry: &TensorEntry,
        bytes: &[u8],
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let tensor = Tensor::from_raw_buffer(bytes, entry.dtype, shape, device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(|e| {
                EngineError::tensor(
                    &self.files[entry.file].path,
                    name,
                    format!("cannot load: {e}"),
                )
            })?;
        self.loaded_bytes
            .set(self.loaded_bytes.get() + tensor.elem_count() * dtype.size_in_bytes());
        Ok(tensor)
    }
}

/// Maps a safetensors file and validates its header against the file's length.
fn map_file(path: &Path, file_idx: usize) -> Result<(MappedFile, Vec<(String, TensorEntry)>)> {
    let file =
        std::fs::File::open(path).map_err(|e| EngineError::io(path, "cannot open weights", e))?;
    // SAFETY: the map is read-only; a checkpoint modified while being read is the user's error,
    // the same contract as every mmap-based loader (safetensors, candle, PyTorch).
    let mmap =
        unsafe { Mmap::map(&file) }.map_err(|e| EngineError::io(path, "cannot map weights", e))?;
    let bad = |message: String| EngineError::file(path, message);
    if mmap.len() < 8 {
        return Err(bad(format!(
            "not a safetensors file: {} bytes, no header",
            mmap.len()
        )));
    }
    let header_len = u64::from_le_bytes(mmap[..8].try_into().expect("8 bytes")) as usize;
    let data_start = 8usize
        .checked_add(header_len)
        .filter(|&end| end <= mmap.len())
        .ok_or_else(|| {
            bad(format!(
                "truncated or not safetensors: header of {header_len} bytes but the file has {}",
                mmap.len()
            ))
        })?;
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&mmap[8..data_start])
        .map_err(|e| bad(format!("invalid safetensors header: {e}")))?;
    let data_len = mmap.len() - data_start;
    let mut entries = Vec::with_capacity(header.len());
    for (name, value) in header {
        if name == "__metadata__" {
            continue;
        }
        let h: HeaderEntry = serde_json::from_value(value)
            .map_err(|e| EngineError::tensor(path, &name, format!("invalid header entry: {e}")))?;
        let dtype = match h.dtype.as_str() {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            other => {
                return Err(EngineError::tensor(
                    path,
                    &name,
                    format!("unsupported dtype {other} (supported: F32, F16, BF16)"),
                ))
            }
        };
        let (begin, end) = h.data_offsets;
        let expected = h.shape.iter().product::<usize>() * dtype.size_in_bytes();
        if end < begin || end - begin != expected {
            return Err(EngineError::tensor(
                path,
                &name,
                format!(
                    "data_offsets {begin}..{end} do not fit shape {:?} of {}",
                    h.shape, h.dtype
                ),
            ));
        }
        if end > data_len {
            return Err(EngineError::tensor(
                path,
                &name,
                format!(
                    "file truncated: the tensor needs data bytes {begin}..{end} but the file has only {data_len}"
                ),
            ));
        }
        entries.push((
            name,
            TensorEntry {
                file: file_idx,
                dtype,
                shape: h.shape,
                start: data_start + begin,
                end: data_start + end,
            },
        ));
    }
    Ok((
        MappedFile {
            path: path.to_path_buf(),
            mmap,
        },
        entries,
    ))
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field(
                "files",
                &self.files.iter().map(|m| &m.path).collect::<Vec<_>>(),
            )
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::writer::write_safetensors;

    fn sample(dir: &Path) -> PathBuf {
        let path = dir.join("model.safetensors");
        let a = Tensor::arange(0f32, 12., &Device::Cpu)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        let b = Tensor::ones((2,), DType::F32, &Device::Cpu).unwrap();
        write_safetensors(&path, &[("a".into(), a), ("b".into(), b)]).unwrap();
        path
    }

    #[test]
    fn loads_rows_without_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpoint::open_files(&[sample(dir.path())]).unwrap();
        let rows = ck
            .load_rows("a", &[3, 4], 1, 2, DType::F32, &Device::Cpu)
            .unwrap();
        assert_eq!(
            rows.to_vec2::<f32>().unwrap(),
            vec![vec![4., 5., 6., 7.], vec![8., 9., 10., 11.]]
        );
    }

    #[test]
    fn loads_columns_of_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpoint::open_files(&[sample(dir.path())]).unwrap();
        let cols = ck
            .load_cols("a", &[3, 4], 1, 2, DType::F32, &Device::Cpu)
            .unwrap();
        assert_eq!(
            cols.to_vec2::<f32>().unwrap(),
            vec![vec![1., 2.], vec![5., 6.], vec![9., 10.]]
        );
    }

    #[test]
    fn truncated_file_names_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path());
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 10).unwrap();
        let err = Checkpoint::open_files(std::slice::from_ref(&path))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("truncated"),
            "{err}"
        );
        assert!(err.contains("tensor `"), "{err}");
    }

    #[test]
    fn wrong_shape_names_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpoint::open_files(&[sample(dir.path())]).unwrap();
        let err = ck
            .load("a", &[4, 3], DType::F32, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`a`") && err.contains("[4, 3]") && err.contains("[3, 4]"),
            "{err}"
        );
    }
}
