//! `driver baseline`: the prompt table filled by the baseline endpoint, remote or embedded.

use std::path::PathBuf;
use std::time::Duration;

use super::embedded::{locate_engine, EmbeddedError, EmbeddedOptions, EmbeddedServer};
use super::local_runner::{LocalInferenceRunner, RunSummary, RunnerError};
use super::openai_client::{ClientConfig, ClientError, OpenAICompletionClient};
use crate::config::DriverConfig;
use crate::data::prompts::{PromptRepository, PromptSetError};
use crate::data::table::{PromptDataFrameBuilder, PromptTable, RowStatus, TableError};
use crate::data::tokens::{TokenCounter, TokenizerError};

/// What a baseline run did.
#[derive(Debug, Clone)]
pub struct BaselineReport {
    pub table_path: PathBuf,
    pub summary: RunSummary,
    /// `(row, error)` of every row that ended `failed`.
    pub failed: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Prompts(#[from] PromptSetError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
}

/// Runs (or resumes) the baseline: every row of both prompt sets not `ok` yet is sent.
pub async fn run_baseline(
    config: &DriverConfig,
    restart: bool,
    progress: bool,
) -> Result<BaselineReport, BaselineError> {
    let counter = TokenCounter::from_file(&config.prompts.tokenizer)?;
    let repository = PromptRepository::new(&config.prompts.dir, counter);
    let fresh = PromptDataFrameBuilder::new(&repository).table()?;
    run_baseline_table(
        config,
        fresh,
        config.results.baseline_table(),
        restart,
        progress,
    )
    .await
}

/// Runs (or resumes) the baseline over the rows of `fresh`, kept at `table_path` (a run of a
/// few prompts keeps its own table).
pub async fn run_baseline_table(
    config: &DriverConfig,
    fresh: PromptTable,
    table_path: PathBuf,
    restart: bool,
    progress: bool,
) -> Result<BaselineReport, BaselineError> {
    let table = LocalInferenceRunner::prepare(&table_path, fresh, restart)?;
    let b = &config.baseline;
    let mut client_config = ClientConfig {
        base_url: b.url.clone(),
        model: b.model.clone(),
        api_key_env: b.api_key_env(),
        mode: b.mode,
        stream: b.stream,
        params: b.params(),
        request_timeout: Duration::from_secs_f64(b.request_timeout_s),
        connect_timeout: Duration::from_secs_f64(b.connect_timeout_s),
        retry: b.retry(),
        limits: b.limits(),
    };
    if table.rows.iter().all(|r| r.status == RowStatus::Ok) {
        tracing::info!(path = %table_path.display(), "every row is ok already; nothing to send");
        return Ok(report(
            table_path,
            &table,
            RunSummary {
                already_ok: table.rows.len(),
                ..RunSummary::default()
            },
        ));
    }
    // Fails on a missing API key before a server is started.
    OpenAICompletionClient::new(client_config.clone())?;
    let server = if b.is_embedded() {
        let options = EmbeddedOptions {
            engine_bin: locate_engine(&b.embedded.engine_bin)?,
            model_dir: PathBuf::from(&b.model),
            max_batch: b.embedded.max_batch,
            dtype: b.embedded.dtype.clone(),
            api_key_env: b.api_key_env(),
            startup_timeout: Duration::from_secs_f64(b.embedded.startup_timeout_s),
        };
        let server = EmbeddedServer::start(&options).await?;
        client_config.base_url = server.base_url().to_string();
        client_config.model = server.model_name().to_string();
        Some(server)
    } else {
        None
    };
    let client = OpenAICompletionClient::new(client_config)?;
    tracing::info!(url = client.url(), model = %client.config().model, "baseline endpoint");
    if b.max_prompt_chars > 0 {
        tracing::warn!(
            max_prompt_chars = b.max_prompt_chars,
            "smoke run: prompts are cut short; this table is no baseline to score against"
        );
    }
    let runner = LocalInferenceRunner::new(&client, &table_path)
        .with_progress(progress)
        .with_max_prompt_chars((b.max_prompt_chars > 0).then_some(b.max_prompt_chars));
    let (table, summary) = runner.run(table).await?;
    if let Some(server) = server {
        server.stop();
    }
    Ok(report(table_path, &table, summary))
}

fn report(table_path: PathBuf, table: &PromptTable, summary: RunSummary) -> BaselineReport {
    let failed = table
        .rows
        .iter()
        .filter(|r| r.status == RowStatus::Failed)
        .map(|r| (r.key(), r.local_error.clone().unwrap_or_default()))
        .collect();
    BaselineReport {
        table_path,
        summary,
        failed,
    }
}
