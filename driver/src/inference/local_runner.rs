//! [`LocalInferenceRunner`]: sends every row of the prompt table that is not `ok` yet to the
//! baseline endpoint and records the answer (or the error) in the row, persisting the table
//! atomically after each row, so a run that is killed resumes where it stopped.

use std::path::{Path, PathBuf};

use futures_util::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use tracing::Instrument;

use super::openai_client::{ClientError, Completion, OpenAICompletionClient};
use crate::data::table::{PromptTable, RowStatus, TableError, TableRow};

/// How a run went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunSummary {
    /// Rows that were already `ok` and were not sent again.
    pub already_ok: usize,
    /// Rows sent in this run.
    pub sent: usize,
    pub ok: usize,
    pub failed: usize,
}

/// The table on disk does not match the prompts, or cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(
        "{path}: {message}; it was built from other prompts. Move it away (or pass --restart) to start over"
    )]
    Mismatch { path: PathBuf, message: String },
}

/// Fills `local_completion`, `local_latency_ms`, `status` (and the other `local_*` columns) of a
/// prompt table through an [`OpenAICompletionClient`].
pub struct LocalInferenceRunner<'a> {
    client: &'a OpenAICompletionClient,
    table_path: PathBuf,
    progress: bool,
    max_prompt_chars: Option<usize>,
}

impl<'a> LocalInferenceRunner<'a> {
    pub fn new(client: &'a OpenAICompletionClient, table_path: impl Into<PathBuf>) -> Self {
        Self {
            client,
            table_path: table_path.into(),
            progress: true,
            max_prompt_chars: None,
        }
    }

    /// Smoke runs on slow endpoints: send only the start and the end of each prompt, `limit`
    /// characters in all. The table keeps the whole prompt.
    pub fn with_max_prompt_chars(mut self, limit: Option<usize>) -> Self {
        self.max_prompt_chars = limit;
        self
    }

    /// Shows a progress bar on stderr (when it is a terminal); on by default.
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// The table to run: the one on disk when it holds the same prompts (resuming), else `fresh`,
    /// written to disk before any request. `restart` discards the one on disk.
    pub fn prepare(
        table_path: &Path,
        fresh: PromptTable,
        restart: bool,
    ) -> Result<PromptTable, RunnerError> {
        crate::fsutil::remove_stale_temps(table_path);
        if table_path.exists() && !restart {
            let existing = PromptTable::read_parquet(table_path)?;
            existing
                .check_same_prompts(&fresh)
                .map_err(|message| RunnerError::Mismatch {
                    path: table_path.to_path_buf(),
                    message,
                })?;
            tracing::info!(
                path = %table_path.display(),
                ok = existing.count(RowStatus::Ok),
                rows = existing.rows.len(),
                "resuming"
            );
            return Ok(existing);
        }
        fresh.write_parquet(table_path)?;
        Ok(fresh)
    }

    /// Sends every row not `ok` yet; rows finish in any order, each persisted as it finishes.
    pub async fn run(
        &self,
        mut table: PromptTable,
    ) -> Result<(PromptTable, RunSummary), RunnerError> {
        let todo: Vec<usize> = (0..table.rows.len())
            .filter(|&i| table.rows[i].status != RowStatus::Ok)
            .collect();
        let mut summary = RunSummary {
            already_ok: table.rows.len() - todo.len(),
            sent: todo.len(),
            ..RunSummary::default()
        };
        let bar = self.progress_bar(todo.len() as u64);
        let mut in_flight: FuturesUnordered<_> = todo
            .iter()
            .map(|&i| {
                let row = &table.rows[i];
                let prompt = match self.max_prompt_chars {
                    Some(limit) => shorten(&row.prompt, limit),
                    None => row.prompt.clone(),
                };
                let tokens = u32::try_from(row.prompt_tokens).unwrap_or(u32::MAX);
                // The client's retry warnings then name the row.
                let span = tracing::info_span!("row", key = %row.key());
                async move { (i, self.client.complete(&prompt, tokens).await) }.instrument(span)
            })
            .collect();
        while let Some((i, result)) = in_flight.next().await {
            let row = &mut table.rows[i];
            record(row, result);
            match row.status {
                RowStatus::Ok => {
                    summary.ok += 1;
                    tracing::info!(row = %row.key(), latency_ms = row.local_latency_ms, "ok");
                }
                _ => {
                    summary.failed += 1;
                    tracing::warn!(row = %row.key(), error = row.local_error.as_deref().unwrap_or(""), "failed");
                }
            }
            table.write_parquet(&self.table_path)?;
            bar.set_message(format!("{} failed", summary.failed));
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok((table, summary))
    }

    fn progress_bar(&self, len: u64) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        if let Ok(style) =
            ProgressStyle::with_template("baseline {bar:30} {pos}/{len} rows, {msg} [{elapsed}]")
        {
            bar.set_style(style);
        }
        bar.set_message("0 failed");
        bar
    }
}

/// The first and last `limit / 2` characters of `prompt`, with an elision line between them.
fn shorten(prompt: &str, limit: usize) -> String {
    let chars = prompt.chars().count();
    if chars <= limit {
        return prompt.to_string();
    }
    let head: String = prompt.chars().take(limit / 2).collect();
    let tail: String = prompt.chars().skip(chars - limit / 2).collect();
    format!("{head}\n[...]\n{tail}")
}

/// Writes one result into its row: `ok` with the completion, or `failed` with the error.
fn record(row: &mut TableRow, result: Result<Completion, ClientError>) {
    match result {
        Ok(c) => {
            row.status = RowStatus::Ok;
            row.local_completion = Some(c.text);
            row.local_latency_ms = Some(c.latency.as_secs_f64() * 1000.0);
            row.local_ttft_ms = c.ttft.map(|t| t.as_secs_f64() * 1000.0);
            row.local_completion_tokens = c
                .usage
                .map(|u| i64::try_from(u.completion_tokens).unwrap_or(i64::MAX));
            row.local_error = None;
            row.local_logprobs = c
                .logprobs
                .map(|l| l.iter().map(|t| f64::from(t.logprob)).collect());
        }
        Err(e) => {
            row.status = RowStatus::Failed;
            row.local_completion = None;
            row.local_latency_ms = None;
            row.local_ttft_ms = None;
            row.local_completion_tokens = None;
            row.local_error = Some(e.to_string());
            row.local_logprobs = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortened_prompts_keep_their_start_and_their_question() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("0123456789é-question?", 8), "0123\n[...]\nion?");
    }
}
