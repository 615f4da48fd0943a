//! The two prompt sets (`prompts_2k.txt`, `prompts_4k.txt`): [`PromptRecord`]s, the checks a set
//! must pass ([`PromptFileSet`]), and [`PromptRepository`], which loads them once with their token
//! counts.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::prompt_file::{self, FilePrompt};
use super::tokens::{TokenCounter, TokenizerError};

/// Prompts in each file.
pub const PROMPTS_PER_FILE: usize = 20;

/// A prompt's length variant: its file and its token budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    K2,
    K4,
}

impl Variant {
    pub const ALL: [Variant; 2] = [Variant::K2, Variant::K4];

    /// The name used in files and tables: `2k` or `4k`.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::K2 => "2k",
            Variant::K4 => "4k",
        }
    }

    /// The budget in Llama 3 tokens; a prompt may be 10% off either way.
    pub fn token_budget(self) -> usize {
        match self {
            Variant::K2 => 2048,
            Variant::K4 => 4096,
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            Variant::K2 => "prompts_2k.txt",
            Variant::K4 => "prompts_4k.txt",
        }
    }

    /// The accepted token counts: the budget +-10%.
    pub fn token_range(self) -> std::ops::RangeInclusive<usize> {
        let budget = self.token_budget();
        budget - budget / 10..=budget + budget / 10
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One prompt of one variant, the unit every table row and every request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRecord {
    pub prompt_id: String,
    pub variant: Variant,
    pub prompt: String,
    pub token_budget: usize,
}

/// What the repository knows about a prompt beyond its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptMetadata {
    /// Llama 3 tokens of the prompt text (no special tokens).
    pub token_count: usize,
    pub source_file: PathBuf,
    /// The line of the prompt's `=== ID ===` header.
    pub line: usize,
}

/// One problem with a prompt set, located by file, line and prompt ID where they apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptIssue {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub prompt_id: Option<String>,
    pub message: String,
}

impl fmt::Display for PromptIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(id) = &self.prompt_id {
            write!(f, ": prompt {id}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A prompt set that failed its checks, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum PromptSetError {
    #[error("{} problem(s) in the prompt set:\n{}", .0.len(), join_issues(.0))]
    Invalid(Vec<PromptIssue>),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

fn join_issues(issues: &[PromptIssue]) -> String {
    let lines: Vec<String> = issues.iter().map(|i| format!("  {i}")).collect();
    lines.join("\n")
}

/// One prompt file as read, with each prompt's token count.
#[derive(Debug, Clone)]
pub struct PromptFile {
    pub path: PathBuf,
    pub variant: Variant,
    pub prompts: Vec<FilePrompt>,
    pub token_counts: Vec<usize>,
}

/// Both prompt files of a folder, checked: both exist, each holds exactly
/// [`PROMPTS_PER_FILE`] prompts with unique IDs, both hold the same IDs, no prompt is empty and
/// every prompt is within its variant's token budget +-10%.
#[derive(Debug, Clone)]
pub struct PromptFileSet {
    pub files: Vec<PromptFile>,
}

impl PromptFileSet {
    /// Reads and checks `dir/prompts_2k.txt` and `dir/prompts_4k.txt`, reporting every problem.
    pub fn load(dir: &Path, counter: &TokenCounter) -> Result<Self, PromptSetError> {
        let mut issues = Vec::new();
        let mut files = Vec::new();
        for variant in Variant::ALL {
            let path = dir.join(variant.file_name());
            match std::fs::read_to_string(&path) {
                Ok(text) => files.push(check_file(path, variant, &text, counter, &mut issues)?),
                Err(e) => issues.push(PromptIssue {
                    file: path,
                    line: None,
                    prompt_id: None,
                    message: format!("cannot read the {variant} prompt set: {e}"),
                }),
            }
        }
        if let [a, b] = files.as_slice() {
            check_same_ids(a, b, &mut issues);
            check_same_ids(b, a, &mut issues);
        }
        if issues.is_empty() {
            Ok(Self { files })
        } else {
            Err(PromptSetError::Invalid(issues))
        }
    }

    pub fn file(&self, variant: Variant) -> Option<&PromptFile> {
        self.files.iter().find(|f| f.variant == variant)
    }
}

fn check_file(
    path: PathBuf,
    variant: Variant,
    text: &str,
    counter: &TokenCounter,
    issues: &mut Vec<PromptIssue>,
) -> Result<PromptFile, TokenizerError> {
    let parsed = prompt_file::parse(text);
    let issue = |line: usize, id: Option<&str>, message: String| PromptIssue {
        file: path.clone(),
        line: Some(line),
        prompt_id: id.map(str::to_string),
        message,
    };
    for problem in &parsed.issues {
        issues.push(issue(problem.line, None, problem.message.clone()));
    }
    if parsed.prompts.len() != PROMPTS_PER_FILE {
        issues.push(issue(
            parsed.lines.max(1),
            None,
            format!(
                "holds {} prompts, expected {PROMPTS_PER_FILE}",
                parsed.prompts.len()
            ),
        ));
    }
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    let mut token_counts = Vec::with_capacity(parsed.prompts.len());
    let range = variant.token_range();
    for prompt in &parsed.prompts {
        let id = Some(prompt.id.as_str());
        if let Some(first) = first_seen.insert(&prompt.id, prompt.line) {
            issues.push(issue(
                prompt.line,
                id,
                format!("duplicate ID (first defined at line {first})"),
            ));
            first_seen.insert(&prompt.id, first);
        }
        let tokens = counter.count(&prompt.text)?;
        token_counts.push(tokens);
        if prompt.text.trim().is_empty() {
            issues.push(issue(prompt.line, id, "empty prompt".to_string()));
        } else if !range.contains(&tokens) {
            issues.push(issue(
                prompt.line,
                id,
                format!(
                    "{tokens} Llama 3 tokens, outside the {variant} budget {} +-10% ({}..={})",
                    variant.token_budget(),
                    range.start(),
                    range.end()
                ),
            ));
        }
    }
    Ok(PromptFile {
        path,
        variant,
        prompts: parsed.prompts,
        token_counts,
    })
}

/// Every ID of `a` must also be in `b`; a missing one is reported where `a` defines it.
fn check_same_ids(a: &PromptFile, b: &PromptFile, issues: &mut Vec<PromptIssue>) {
    let in_b: HashSet<&str> = b.prompts.iter().map(|p| p.id.as_str()).collect();
    let mut reported = HashSet::new();
    for prompt in &a.prompts {
        if !in_b.contains(prompt.id.as_str()) && reported.insert(prompt.id.as_str()) {
            issues.push(PromptIssue {
                file: a.path.clone(),
                line: Some(prompt.line),
                prompt_id: Some(prompt.id.clone()),
                message: format!(
                    "has no {} variant: the ID is missing from {}",
                    b.variant,
                    b.path.display()
                ),
            });
        }
    }
}

/// The prompt sets of a folder, loaded and checked once, with each prompt's metadata cached.
pub struct PromptRepository {
    dir: PathBuf,
    counter: TokenCounter,
    loaded: OnceLock<Loaded>,
}

struct Loaded {
    records: Vec<PromptRecord>,
    metadata: HashMap<(String, Variant), PromptMetadata>,
}

impl PromptRepository {
    /// `dir` holds the prompt files; `counter` measures their budgets.
    pub fn new(dir: impl Into<PathBuf>, counter: TokenCounter) -> Self {
        Self {
            dir: dir.into(),
            counter,
            loaded: OnceLock::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every prompt of both variants, checked: the 2k ones, then the 4k ones, each in the order
    /// of the 2k file, so rows line up across variants and runs.
    pub fn load_all(&self) -> Result<Vec<PromptRecord>, PromptSetError> {
        if let Some(loaded) = self.loaded.get() {
            return Ok(loaded.records.clone());
        }
        let set = PromptFileSet::load(&self.dir, &self.counter)?;
        let loaded = self.loaded.get_or_init(|| index(&set));
        Ok(loaded.records.clone())
    }

    /// The token count, file and line of a prompt loaded by [`Self::load_all`].
    pub fn metadata(&self, prompt_id: &str, variant: Variant) -> Option<&PromptMetadata> {
        self.loaded
            .get()?
            .metadata
            .get(&(prompt_id.to_string(), variant))
    }
}

fn index(set: &PromptFileSet) -> Loaded {
    let order: Vec<&str> = set
        .file(Variant::K2)
        .map(|f| f.prompts.iter().map(|p| p.id.as_str()).collect())
        .unwrap_or_default();
    let mut records = Vec::new();
    let mut metadata = HashMap::new();
    for file in &set.files {
        let mut rows: Vec<(usize, &FilePrompt, usize)> = file
            .prompts
            .iter()
            .zip(&file.token_counts)
            .map(|(p, &tokens)| {
                let rank = order
                    .iter()
                    .position(|id| *id == p.id)
                    .unwrap_or(usize::MAX);
                (rank, p, tokens)
            })
            .collect();
        rows.sort_by_key(|(rank, _, _)| *rank);
        for (_, prompt, tokens) in rows {
            records.push(PromptRecord {
                prompt_id: prompt.id.clone(),
                variant: file.variant,
                prompt: prompt.text.clone(),
                token_budget: file.variant.token_budget(),
            });
            metadata.insert(
                (prompt.id.clone(), file.variant),
                PromptMetadata {
                    token_count: tokens,
                    source_file: file.path.clone(),
                    line: prompt.line,
                },
            );
        }
    }
    Loaded { records, metadata }
}

impl crate::slurm::job_factory::JobPrompt for PromptRecord {
    fn prompt_id(&self) -> &str {
        &self.prompt_id
    }
    fn variant(&self) -> &str {
        self.variant.as_str()
    }
    fn prompt(&self) -> &str {
        &self.prompt
    }
    fn token_budget(&self) -> Option<usize> {
        Some(self.token_budget)
    }
}
