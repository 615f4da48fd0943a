//! The driver's config file (TOML). Every section and key is documented in `configs/demo.toml`;
//! relative paths are taken from the folder the driver runs in (the repository root).
//!
//! The API key is never in the config: `baseline.api_key_env` names the environment variable that
//! holds it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::inference::limits::RateLimits;
use crate::inference::openai_client::{ApiMode, GenerationParams, RetryPolicy};

/// The baseline URL that starts `engine serve` locally instead of calling a remote endpoint.
pub const EMBEDDED: &str = "embedded";

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverConfig {
    #[serde(default)]
    pub prompts: PromptsConfig,
    #[serde(default)]
    pub results: ResultsConfig,
    #[serde(default)]
    pub baseline: BaselineConfig,
    /// The cluster the strategies run on, and how the driver reaches it.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// What `driver run` runs.
    #[serde(default)]
    pub run: RunConfig,
    /// How the strategies' answers are scored against the baseline's.
    #[serde(default)]
    pub scoring: ScoringConfig,
}

/// Which launcher starts the jobs.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum LauncherKind {
    /// `sbatch`, `squeue`, `sacct`, `scancel`.
    #[default]
    Slurm,
    /// The same job scripts on this machine, ranks started by `mpirun`.
    Local,
}

impl LauncherKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slurm => "slurm",
            Self::Local => "local",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The cluster profile (`slurm/profiles/*.toml`): nodes, GPUs, Slurm settings, the model
    /// and the engine as the compute nodes see them.
    pub profile: PathBuf,
    pub launcher: LauncherKind,
    /// The strategies to run; empty: those the profile enables.
    pub strategies: Vec<String>,
    /// The engine binary, overriding the profile's. Empty: the profile's, except with the local
    /// launcher, where it is `$ENGINE_BIN`, else `engine` next to the driver binary.
    pub engine_bin: String,
    /// The model folder, overriding the profile's (its shape then read from its config.json).
    pub model: String,
    /// Shortest and longest interval between two polls of the jobs.
    pub poll_min_ms: u64,
    pub poll_max_ms: u64,
    /// On Ctrl-C, leave the run's jobs running instead of cancelling them.
    pub leave_jobs_on_interrupt: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            profile: PathBuf::from("slurm/profiles/local-demo.toml"),
            launcher: LauncherKind::Local,
            strategies: Vec::new(),
            engine_bin: String::new(),
            model: String::new(),
            poll_min_ms: 500,
            poll_max_ms: 30_000,
            leave_jobs_on_interrupt: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// The prompt IDs a run sends (both variants of each); empty: all 20.
    pub prompt_ids: Vec<String>,
}

impl Default for RunConfig {
    /// One prompt ID (its 2k and 4k prompts): on a 2-core laptop the baseline and the four
    /// strategies take SmolLM2 about 6 minutes over them (`make demo`: 5m43s).
    fn default() -> Self {
        Self {
            prompt_ids: vec!["p01".into()],
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    /// The `tokenizer.json` both completions are split into tokens with for token agreement.
    /// Empty: the embedded baseline's model's, else the prompts' (Llama 3) tokenizer.
    pub tokenizer: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptsConfig {
    /// Holds `prompts_2k.txt`, `prompts_4k.txt` and `answers.json`.
    pub dir: PathBuf,
    /// The Llama 3 `tokenizer.json` the budgets are measured with.
    pub tokenizer: PathBuf,
}

impl Default for PromptsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data"),
            tokenizer: PathBuf::from("models/llama3-tokenizer/tokenizer.json"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResultsConfig {
    /// Where `baseline_prompts.parquet` and later run outputs go.
    pub dir: PathBuf,
}

impl Default for ResultsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("results"),
        }
    }
}

impl ResultsConfig {
    pub fn baseline_table(&self) -> PathBuf {
        self.dir.join("baseline_prompts.parquet")
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// `embedded`, or the API base URL (`https://api.openai.com/v1`).
    pub url: String,
    /// Embedded: the model folder to serve. Remote: the model name sent with each request.
    pub model: String,
    /// The environment variable holding the API key; empty: send none.
    pub api_key_env: String,
    pub mode: ApiMode,
    pub stream: bool,
    pub max_tokens: u32,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub seed: Option<u64>,
    /// Ask for logprobs with this many alternatives per token; 0: none.
    pub top_logprobs: u32,
    pub request_timeout_s: f64,
    pub connect_timeout_s: f64,
    pub max_retries: usize,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// 0: no limit.
    pub requests_per_minute: u32,
    /// 0: no limit.
    pub tokens_per_minute: u32,
    pub concurrency: usize,
    /// Smoke runs only: send at most this many characters of each prompt (its start and its end);
    /// 0 sends whole prompts, as a baseline for scoring must.
    pub max_prompt_chars: usize,
    pub embedded: EmbeddedConfig,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            url: EMBEDDED.to_string(),
            model: "models/smollm2-135m-instruct".to_string(),
            api_key_env: String::new(),
            mode: ApiMode::Chat,
            stream: true,
            max_tokens: 48,
            temperature: 0.0,
            top_p: None,
            seed: None,
            top_logprobs: 1,
            request_timeout_s: 600.0,
            connect_timeout_s: 10.0,
            max_retries: 6,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            requests_per_minute: 60,
            tokens_per_minute: 0,
            concurrency: 4,
            max_prompt_chars: 0,
            embedded: EmbeddedConfig::default(),
        }
    }
}

/// How the embedded `engine serve` is started.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// The engine binary; empty: `$ENGINE_BIN`, else `engine` next to the driver binary.
    pub engine_bin: String,
    /// `--max-batch` of `engine serve`.
    pub max_batch: u32,
    /// `--dtype`: f32, bf16 or f16.
    pub dtype: String,
    /// Seconds to wait for `/health` after the start.
    pub startup_timeout_s: f64,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            engine_bin: String::new(),
            max_batch: 4,
            dtype: "f32".to_string(),
            startup_timeout_s: 300.0,
        }
    }
}

/// The config file could not be read or holds a bad value.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

impl DriverConfig {
    /// Reads and checks a config file. TOML errors name the line and column.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(Some(path), &[])
    }

    /// Reads `path` (the defaults without one), then applies `sets`, each `KEY=VALUE` with a
    /// dotted key and a TOML value: `baseline.max_tokens=64`, `baseline.url="https://..."` (a
    /// value that is not TOML is taken as a string).
    pub fn load_with(path: Option<&Path>, sets: &[String]) -> Result<Self, ConfigError> {
        let error = |message: String| ConfigError {
            path: path.map_or_else(|| PathBuf::from("<defaults>"), Path::to_path_buf),
            message,
        };
        let text = match path {
            Some(path) => {
                std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?
            }
            None => String::new(),
        };
        // The file alone first, so that its errors name their line.
        let mut config: DriverConfig = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
        if !sets.is_empty() {
            let mut table: toml::Table = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
            for set in sets {
                apply_set(&mut table, set).map_err(|m| error(format!("--set {set}: {m}")))?;
            }
            config = toml::Value::Table(table)
                .try_into()
                .map_err(|e| error(format!("after --set: {e}")))?;
        }
        config.validate().map_err(error)?;
        Ok(config)
    }

    /// Checks the values TOML types cannot: ranges and consistency.
    pub fn validate(&self) -> Result<(), String> {
        let b = &self.baseline;
        if b.url.trim().is_empty() {
            return Err("baseline.url is empty: `embedded` or an API base URL".into());
        }
        if b.url != EMBEDDED && !(b.url.starts_with("http://") || b.url.starts_with("https://")) {
            return Err(format!(
                "baseline.url `{}`: expected `embedded` or an http(s):// URL",
                b.url
            ));
        }
        if b.model.trim().is_empty() {
            return Err("baseline.model is empty".into());
        }
        if b.concurrency == 0 {
            return Err("baseline.concurrency must be at least 1".into());
        }
        if b.max_tokens == 0 {
            return Err("baseline.max_tokens must be at least 1".into());
        }
        for (name, value) in [
            ("baseline.request_timeout_s", b.request_timeout_s),
            ("baseline.connect_timeout_s", b.connect_timeout_s),
            (
                "baseline.embedded.startup_timeout_s",
                b.embedded.startup_timeout_s,
            ),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(format!("{name} must be a positive number of seconds"));
            }
        }
        if b.initial_backoff_ms > b.max_backoff_ms {
            return Err("baseline.initial_backoff_ms is above baseline.max_backoff_ms".into());
        }
        if !(0.0..=2.0).contains(&b.temperature) {
            return Err(format!(
                "baseline.temperature {} is outside 0..=2",
                b.temperature
            ));
        }
        if !matches!(b.embedded.dtype.as_str(), "f32" | "bf16" | "f16") {
            return Err(format!(
                "baseline.embedded.dtype `{}`: expected f32, bf16 or f16",
                b.embedded.dtype
            ));
        }
        Ok(())
    }
}

/// Sets one dotted key of a TOML table.
fn apply_set(table: &mut toml::Table, set: &str) -> Result<(), String> {
    let (key, value) = set.split_once('=').ok_or("expected KEY=VALUE")?;
    let value = value.trim();
    let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let parts: Vec<&str> = key.trim().split('.').collect();
    let (last, sections) = parts.split_last().ok_or("empty key")?;
    let mut current = table;
    for section in sections {
        current = current
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or(format!("`{section}` is not a section"))?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

impl BaselineConfig {
    pub fn is_embedded(&self) -> bool {
        self.url == EMBEDDED
    }

    pub fn api_key_env(&self) -> Option<String> {
        let var = self.api_key_env.trim();
        (!var.is_empty()).then(|| var.to_string())
    }

    pub fn params(&self) -> GenerationParams {
        GenerationParams {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            top_logprobs: (self.top_logprobs > 0).then_some(self.top_logprobs),
        }
    }

    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            initial_backoff: Duration::from_millis(self.initial_backoff_ms),
            max_backoff: Duration::from_millis(self.max_backoff_ms),
        }
    }

    pub fn limits(&self) -> RateLimits {
        RateLimits {
            requests_per_minute: self.requests_per_minute,
            tokens_per_minute: self.tokens_per_minute,
            concurrency: self.concurrency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_embedded_default() {
        let config: DriverConfig = toml::from_str("").unwrap();
        assert!(config.baseline.is_embedded());
        assert_eq!(
            config.results.baseline_table(),
            Path::new("results/baseline_prompts.parquet")
        );
        config.validate().unwrap();
    }

    #[test]
    fn a_misspelt_key_is_an_error_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[baseline]\nurl = \"embedded\"\nconcurency = 2\n").unwrap();
        let err = DriverConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("c.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("concurency"), "{err}");
    }

    #[test]
    fn set_overrides_any_key_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[baseline]\nmax_tokens = 5\n").unwrap();
        let sets = [
            "baseline.max_tokens=64".to_string(),
            "baseline.url=https://api.example.com/v1".to_string(),
            "baseline.embedded.max_batch = 2".to_string(),
            "results.dir=\"out\"".to_string(),
        ];
        let config = DriverConfig::load_with(Some(&path), &sets).unwrap();
        assert_eq!(config.baseline.max_tokens, 64);
        assert_eq!(config.baseline.url, "https://api.example.com/v1");
        assert_eq!(config.baseline.embedded.max_batch, 2);
        assert_eq!(config.results.dir, Path::new("out"));
        let bad = DriverConfig::load_with(None, &["baseline.max_tokens=lots".to_string()]);
        assert!(bad.unwrap_err().to_string().contains("max_tokens"));
    }

    #[test]
    fn bad_values_are_named() {
        let mut config = DriverConfig::default();
        config.baseline.url = "ftp://x".into();
        assert!(config.validate().unwrap_err().contains("baseline.url"));
        config.baseline.url = "https://api.example.com/v1".into();
        config.baseline.concurrency = 0;
        assert!(config.validate().unwrap_err().contains("concurrency"));
    }
}
