//! A run's folder and what it was started with: `results/run_<timestamp>/` holds the jobs'
//! state, shards, scripts and outputs, the run's baseline table and the report;
//! `results/run_<timestamp>.parquet` is the master table. `run.json` records the config file,
//! its `--set` overrides and the prompt IDs, so `driver run --resume` runs the same experiment.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;

/// The paths of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFolder {
    /// `run_<timestamp>`.
    pub name: String,
    pub dir: PathBuf,
    /// The master table, beside the folder.
    pub table: PathBuf,
}

/// What a run was started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunManifest {
    pub name: String,
    pub created: String,
    /// The config file (none: the built-in defaults).
    pub config: Option<PathBuf>,
    /// `--set` overrides, applied after the file.
    #[serde(default)]
    pub sets: Vec<String>,
    /// The prompt IDs the run sends (both variants of each).
    pub prompt_ids: Vec<String>,
}

/// A run folder that cannot be made, found or read.
#[derive(Debug, thiserror::Error)]
pub enum RunFolderError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("no run `{run}`: neither a folder nor a run in {results}")]
    NotFound { run: String, results: PathBuf },
}

impl RunFolder {
    /// A new run in `results`, named after the current UTC time.
    pub fn create(results: &Path) -> Result<Self, RunFolderError> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let mut name = format!("run_{stamp}");
        let mut n = 1;
        while results.join(&name).exists() {
            n += 1;
            name = format!("run_{stamp}_{n}");
        }
        let folder = Self::named(results, &name);
        std::fs::create_dir_all(&folder.dir).map_err(|e| RunFolderError::Io {
            path: folder.dir.clone(),
            message: format!("cannot create: {e}"),
        })?;
        Ok(folder)
    }

    fn named(results: &Path, name: &str) -> Self {
        Self {
            name: name.to_string(),
            dir: results.join(name),
            table: results.join(format!("{name}.parquet")),
        }
    }

    /// An existing run: a folder path, or a run name in `results`.
    pub fn open(results: &Path, run: &str) -> Result<Self, RunFolderError> {
        let as_path = PathBuf::from(run.trim_end_matches('/'));
        let candidates = [as_path.clone(), results.join(run)];
        for dir in candidates {
            if dir.is_dir() {
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| run.to_string());
                let parent = dir.parent().unwrap_or(Path::new(".")).to_path_buf();
                return Ok(Self::named(&parent, &name));
            }
        }
        Err(RunFolderError::NotFound {
            run: run.to_string(),
            results: results.to_path_buf(),
        })
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join("run.json")
    }

    /// The baseline's answers to this run's prompts.
    pub fn baseline_table(&self) -> PathBuf {
        self.dir.join("baseline.parquet")
    }

    pub fn save_manifest(&self, manifest: &RunManifest) -> Result<(), RunFolderError> {
        let path = self.manifest_path();
        let text = serde_json::to_string_pretty(manifest).unwrap_or_default();
        write_atomic(&path, text.as_bytes()).map_err(|e| RunFolderError::Io {
            path,
            message: format!("cannot write: {e}"),
        })
    }

    pub fn load_manifest(&self) -> Result<RunManifest, RunFolderError> {
        let path = self.manifest_path();
        let text = std::fs::read_to_string(&path).map_err(|e| RunFolderError::Io {
            path: path.clone(),
            message: format!("cannot read (is this a `driver run` folder?): {e}"),
        })?;
        serde_json::from_str(&text).map_err(|e| RunFolderError::Io {
            path,
            message: format!("not a run manifest: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_found_by_name_or_path_with_its_table_beside_it() {
        let results = tempfile::tempdir().unwrap();
        let run = RunFolder::create(results.path()).unwrap();
        assert!(run.name.starts_with("run_"));
        assert_eq!(
            run.table,
            results.path().join(format!("{}.parquet", run.name))
        );
        let manifest = RunManifest {
            name: run.name.clone(),
            created: "now".into(),
            config: Some("configs/demo.toml".into()),
            sets: vec!["baseline.max_tokens=8".into()],
            prompt_ids: vec!["p01".into()],
        };
        run.save_manifest(&manifest).unwrap();
        let by_name = RunFolder::open(results.path(), &run.name).unwrap();
        assert_eq!(by_name, run);
        let by_path =
            RunFolder::open(Path::new("elsewhere"), &run.dir.display().to_string()).unwrap();
        assert_eq!(by_path, run);
        assert_eq!(by_path.load_manifest().unwrap(), manifest);
        let err = RunFolder::open(results.path(), "run_nope")
            .unwrap_err()
            .to_string();
        assert!(err.contains("run_nope"), "{err}");
    }
}
