//! Cluster profiles: one TOML file per cluster under `slurm/profiles/` saying what the cluster has
//! (nodes, GPUs per node), how to ask Slurm for it (partition, account, walltime, modules,
//! container), NCCL settings, the model to run and per-strategy overrides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::parallelism::model::ModelFacts;
use crate::parallelism::strategy::StrategyError;
use crate::perf::HardwareSpec;

/// A cluster and the model it runs, as read from `slurm/profiles/<name>.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterProfile {
    /// Short name, used in job names.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub cluster: ClusterShape,
    #[serde(default)]
    pub slurm: SlurmDefaults,
    #[serde(default)]
    pub nccl: NcclSettings,
    /// Extra environment variables exported by every job script.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub model: ModelSpec,
    pub engine: EngineSettings,
    /// What each GPU and link can do, for `driver plan --predict` only (no effect on jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<HardwareSpec>,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Per-strategy overrides, keyed by strategy name (`pp-across-nodes`, ...).
    #[serde(default)]
    pub strategies: BTreeMap<String, StrategyOverrides>,
}

/// What the cluster has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterShape {
    pub nodes: usize,
    pub gpus_per_node: usize,
    /// Every node is the one machine the driver runs on (the local demo's fake nodes): `driver
    /// run` then runs one job at a time, since jobs running together would share its cores and
    /// time each other, and the performance model has all of a job's ranks share its cores.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_host: bool,
}

/// How to ask Slurm for resources; every field becomes an `#SBATCH` option or a script line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmDefaults {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub constraint: Option<String>,
    #[serde(default)]
    pub exclusive: bool,
    #[serde(default = "one")]
    pub cpus_per_task: usize,
    /// `--mem` per node (`64G`, `0` for all of it); none: the partition's default.
    pub memory: Option<String>,
    /// `--time`: `MM`, `HH:MM:SS`, `D-HH:MM:SS`, ...
    #[serde(default = "default_walltime")]
    pub walltime: String,
    /// Ask for the GPUs with `--gpus-per-node` (off: ranks are placed by task count only).
    #[serde(default = "yes")]
    pub request_gpus: bool,
    /// Environment modules loaded before the job runs.
    #[serde(default)]
    pub modules: Vec<String>,
    /// pyxis/enroot container image (`--container-image`), and its mounts (`SRC:DST[:FLAGS]`).
    pub container_image: Option<String>,
    #[serde(default)]
    pub container_mounts: Vec<String>,
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn default_walltime() -> String {
    "01:00:00".into()
}

impl Default for SlurmDefaults {
    fn default() -> Self {
        Self {
            partition: None,
            account: None,
            qos: None,
            constraint: None,
            exclusive: false,
            cpus_per_task: 1,
            memory: None,
            walltime: default_walltime(),
            request_gpus: true,
            modules: Vec::new(),
            container_image: None,
            container_mounts: Vec::new(),
        }
    }
}

/// NCCL settings exported by every job (`NCCL_SOCKET_IFNAME`, `NCCL_DEBUG`, and any other).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NcclSettings {
    pub socket_ifname: Option<String>,
    pub debug: Option<String>,
    /// Further `NCCL_*` variables, by full name.
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

impl NcclSettings {
    /// The variables to export, by name.
    pub fn env(&self) -> BTreeMap<String, String> {
        let mut env = self.extra.clone();
        if let Some(v) = &self.socket_ifname {
            env.insert("NCCL_SOCKET_IFNAME".into(), v.clone());
        }
        if let Some(v) = &self.debug {
            env.insert("NCCL_DEBUG".into(), v.clone());
        }
        env
    }
}

/// The model: where the jobs find it, and its shape (stated here, or read from its config.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The model folder as the compute nodes see it.
    pub path: PathBuf,
    pub heads: Option<usize>,
    pub kv_heads: Option<usize>,
    pub layers: Option<usize>,
    pub intermediate_size: Option<usize>,
    /// The widths only the performance model needs (`driver plan --predict`), as in config.json.
    pub hidden_size: Option<usize>,
    pub head_dim: Option<usize>,
    pub vocab_size: Option<usize>,
    pub tie_word_embeddings: Option<bool>,
}

impl ModelSpec {
    /// Points the spec at another model folder, whose shape is then read from its config.json
    /// (the shape stated for the old model no longer holds).
    pub fn use_config_json_at(&mut self, path: PathBuf) {
        *self = Self {
            path,
            heads: None,
            kv_heads: None,
            layers: None,
            intermediate_size: None,
            hidden_size: None,
            head_dim: None,
            vocab_size: None,
            tie_word_embeddings: None,
        };
    }

    /// The model's facts: as stated when heads, KV heads and layers are all given, otherwise
    /// from `<path>/config.json` on this machine.
    pub fn facts(&self) -> Result<ModelFacts, StrategyError> {
        match (self.heads, self.kv_heads, self.layers) {
            (Some(heads), Some(kv_heads), Some(layers)) => {
                let facts = ModelFacts {
                    heads,
                    kv_heads,
                    layers,
                    intermediate_size: self.intermediate_size,
                    hidden_size: self.hidden_size,
                    head_dim: self.head_dim,
                    vocab_size: self.vocab_size,
                    tie_word_embeddings: self.tie_word_embeddings.unwrap_or(false),
                };
                facts.check().map_err(|reason| StrategyError::ModelConfig {
                    path: self.path.clone(),
                    reason: format!("[model] in the profile: {reason}"),
                })?;
                Ok(facts)
            }
            (None, None, None) if self.states_no_width() => {
                ModelFacts::from_config_json(&self.path.join("config.json"))
            }
            _ => Err(StrategyError::ModelConfig {
                path: self.path.clone(),
                reason: "[model] in the profile: give all of heads, kv_heads and layers (widths optional), or none of them nor any width (all read from config.json)".into(),
            }),
        }
    }

    fn states_no_width(&self) -> bool {
        self.intermediate_size.is_none()
            && self.hidden_size.is_none()
            && self.head_dim.is_none()
            && self.vocab_size.is_none()
            && self.tie_word_embeddings.is_none()
    }
}

/// How the engine is run: its path on the compute nodes and the generation settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// The `engine` binary as the compute nodes see it.
    pub binary: PathBuf,
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// `--dtype` (f32, bf16, f16); none: the engine's default.
    pub dtype: Option<String>,
    /// `--comm-timeout` in seconds; none: the engine's default.
    pub comm_timeout: Option<u64>,
    /// How the prompt shards give each prompt to the engine: `raw` text, or `chat` (one user
    /// message, rendered with the model's chat template, as a chat-completions baseline does).
    #[serde(default)]
    pub prompt_format: PromptFormat,
}

/// How a job's prompts reach the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptFormat {
    #[default]
    Raw,
    Chat,
}

fn default_max_new_tokens() -> usize {
    128
}
fn default_batch_size() -> usize {
    8
}

/// When a finished job is run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts a job may take when it fails (FAILED, OUT_OF_MEMORY), the first one included.
    #[serde(default = "default_max_tries")]
    pub max_tries: u32,
    /// Times a job is submitted again after NODE_FAIL or PREEMPTED (not its own fault).
    #[serde(default = "default_max_requeues")]
    pub max_requeues: u32,
}

fn default_max_tries() -> u32 {
    2
}
fn default_max_requeues() -> u32 {
    3
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_tries: default_max_tries(),
            max_requeues: default_max_requeues(),
        }
    }
}

/// A strategy's settings where the profile departs from what the strategy derives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyOverrides {
    /// Run this strategy at all (default yes).
    pub enabled: Option<bool>,
    pub tp: Option<usize>,
    pub pp: Option<usize>,
    pub nodes: Option<usize>,
    /// Layers per pipeline stage, e.g. `[40, 40]`.
    pub layer_split: Option<Vec<usize>>,
    pub micro_batches: Option<usize>,
    pub batch_size: Option<usize>,
    /// Run again after a success with each of these micro-batch counts (a parameter sweep).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep_micro_batches: Vec<usize>,
    /// `--time` for this strategy's jobs.
    pub walltime: Option<String>,
}

/// A profile that cannot be read or is inconsistent; names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read cluster profile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cluster profile {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("cluster profile {name}: field {field}: {reason}")]
    Field {
        name: String,
        field: String,
        reason: String,
    },
}

impl ClusterProfile {
    /// Reads and checks a profile file.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut profile: Self = toml::from_str(&text).map_err(|source| ProfileError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        // A hardware preset file is read once, here, relative to the profile: the loaded
        // profile then stands alone (as a run folder's copy must).
        if let Some(spec) = profile.hardware.take() {
            let base = path.parent().unwrap_or(Path::new("."));
            profile.hardware =
                Some(
                    spec.inline_preset_file(base)
                        .map_err(|e| ProfileError::Field {
                            name: profile.name.clone(),
                            field: format!("hardware.{}", e.field),
                            reason: e.reason,
                        })?,
                );
        }
        profile.check()?;
        Ok(profile)
    }

    /// The overrides for one strategy (empty when the profile has none).
    pub fn overrides(&self, strategy: &str) -> StrategyOverrides {
        self.strategies.get(strategy).cloned().unwrap_or_default()
    }

    /// Checks the fields that do not depend on a strategy.
    pub fn check(&self) -> Result<(), ProfileError> {
        let field = |field: &str, reason: String| ProfileError::Field {
            name: self.name.clone(),
            field: field.into(),
            reason,
        };
        if self.cluster.nodes == 0 {
            return Err(field("cluster.nodes", "must be at least 1".into()));
        }
        parse_walltime(&self.slurm.walltime).map_err(|r| field("slurm.walltime", r))?;
        for (name, o) in &self.strategies {
            if let Some(w) = &o.walltime {
                parse_walltime(w).map_err(|r| field(&format!("strategies.{name}.walltime"), r))?;
            }
        }
        if let Some(memory) = &self.slurm.memory {
            check_memory(memory).map_err(|r| field("slurm.memory", r))?;
        }
        if self.slurm.cpus_per_task == 0 {
            return Err(field("slurm.cpus_per_task", "must be at least 1".into()));
        }
        if self.engine.batch_size == 0 {
            return Err(field("engine.batch_size", "must be at least 1".into()));
        }
        if self.retry.max_tries == 0 {
            return Err(field("retry.max_tries", "must be at least 1".into()));
        }
        if let Some(hardware) = &self.hardware {
            hardware
                .resolve()
                .map_err(|e| field(&format!("hardware.{}", e.field), e.reason))?;
        }
        Ok(())
    }
}

/// Parses a Slurm `--time` value (`MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`).
pub fn parse_walltime(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("`{text}` is not a Slurm time (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)")
    };
    let number = |s: &str| -> Result<u64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 9 {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (days, rest) = match text.split_once('-') {
        Some((d, rest)) => (Some(number(d)?), rest),
        None => (None, text),
    };
    let parts = rest.split(':').map(number).collect::<Result<Vec<_>, _>>()?;
    let seconds = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(d), [h]) => d * 86400 + h * 3600,
        (Some(d), [h, m]) => d * 86400 + h * 3600 + m * 60,
        (Some(d), [h, m, s]) => d * 86400 + h * 3600 + m * 60 + s,
        _ => return Err(bad()),
    };
    if seconds == 0 {
        return Err(format!("`{text}` is a walltime of zero"));
    }
    Ok(Duration::from_secs(seconds))
}

/// A `--mem` value: digits with an optional K, M, G or T.
fn check_memory(text: &str) -> Result<(), String> {
    let digits = text.trim_end_matches(['K', 'M', 'G', 'T']);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || text.len() - digits.len() > 1
    {
        return Err(format!(
            "`{text}` is not a Slurm memory size (digits, then K, M, G or T)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../slurm/profiles")
    }

    #[test]
    fn the_checked_in_profiles_load() {
        let example = ClusterProfile::load(&profiles_dir().join("example-cluster.toml")).unwrap();
        assert_eq!(
            (example.cluster.nodes, example.cluster.gpus_per_node),
            (2, 8)
        );
        assert_eq!(example.model.facts().unwrap(), ModelFacts::llama_3_3_70b());
        assert_eq!(
            example.hardware,
            Some(crate::perf::HardwareSpec::preset("h100-sxm"))
        );
        let local = ClusterProfile::load(&profiles_dir().join("local-ci.toml")).unwrap();
        assert_eq!((local.cluster.nodes, local.cluster.gpus_per_node), (2, 2));
        assert_eq!(local.hardware, None);
        // The demo's hardware is the committed calibration of this machine, read in on load.
        let demo = ClusterProfile::load(&profiles_dir().join("local-demo.toml")).unwrap();
        assert!(demo.cluster.one_host);
        let spec = demo.hardware.unwrap();
        assert_eq!(spec.preset_file, None);
        assert_eq!(spec.preset.as_deref(), Some("cpu-local"));
        let host = spec.resolve().unwrap().host.unwrap();
        assert_eq!((host.cores, host.threads_per_rank), (2, 1));
    }

    #[test]
    fn a_bad_hardware_figure_names_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        let text = std::fs::read_to_string(profiles_dir().join("example-cluster.toml")).unwrap();
        let with = |line: &str| {
            text.replace(
                "preset = \"h100-sxm\"",
                &format!("preset = \"h100-sxm\"\n{line}"),
            )
        };
        std::fs::write(&path, with("inter_node_bytes_per_s = 100e9")).unwrap();
        let p = ClusterProfile::load(&path).unwrap();
        let spec = p.hardware.unwrap();
        assert_eq!(spec.inter_node_bytes_per_s, Some(100e9));
        std::fs::write(&path, with("achievable_fraction = 0")).unwrap();
        let err = ClusterProfile::load(&path).unwrap_err().to_string();
        assert!(err.contains("hardware.achievable_fraction"), "{err}");
        std::fs::write(&path, with("nvlink = 1")).unwrap();
        let err = ClusterProfile::load(&path).unwrap_err().to_string();
        assert!(err.contains("nvlink"), "{err}");
    }

    #[test]
    fn widths_without_heads_kv_heads_and_layers_are_refused() {
        let mut p = ClusterProfile::load(&profiles_dir().join("example-cluster.toml")).unwrap();
        p.model.heads = None;
        p.model.kv_heads = None;
        p.model.layers = None;
        let err = p.model.facts().unwrap_err().to_string();
        assert!(err.contains("nor any width"), "{err}");
        p.model.use_config_json_at(PathBuf::from("/nowhere"));
        let err = p.model.facts().unwrap_err().to_string();
        assert!(err.contains("/nowhere/config.json"), "{err}");
    }

    #[test]
    fn walltimes_parse_in_every_slurm_form() {
        let secs = |t| parse_walltime(t).map(|d| d.as_secs());
        assert_eq!(secs("1"), Ok(60));
        assert_eq!(secs("1:30"), Ok(90));
        assert_eq!(secs("01:00:00"), Ok(3600));
        assert_eq!(secs("2-0"), Ok(2 * 86400));
        assert_eq!(secs("1-02:03"), Ok(86400 + 2 * 3600 + 180));
        assert_eq!(secs("1-00:00:01"), Ok(86401));
        for bad in ["", "x", "1:2:3:4", "-1", "1h", "0", "1-2:3:4:5", "1 ; rm"] {
            assert!(parse_walltime(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn an_unknown_field_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        let text = std::fs::read_to_string(profiles_dir().join("local-ci.toml")).unwrap();
        std::fs::write(&path, text.replace("[cluster]", "[cluster]\ngpus = 3")).unwrap();
        let err = ClusterProfile::load(&path).unwrap_err().to_string();
        assert!(err.contains("gpus") && err.contains("p.toml"), "{err}");
    }

    #[test]
    fn a_bad_memory_size_names_the_field() {
        let mut p = ClusterProfile::load(&profiles_dir().join("local-ci.toml")).unwrap();
        p.slurm.memory = Some("4 GB".into());
        let err = p.check().unwrap_err().to_string();
        assert!(err.contains("slurm.memory"), "{err}");
    }
}
