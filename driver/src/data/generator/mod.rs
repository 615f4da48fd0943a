//! `driver prompts build`: the seeded generator of both prompt sets and their answers.
//!
//! Twenty long-context tasks whose answers can be checked, four of each family: facts in long
//! records, aggregation over a table or a log, reading generated code, following a chain of
//! relations, and summarising a generated report into named points. A task's context is a stream
//! of units (records, rows, functions, statements, paragraphs) drawn from its own PCG32 stream; each
//! variant takes as many units as bring the prompt closest to its Llama 3 token budget, so the 4k
//! prompt holds about twice the context of the 2k one and the same question.

mod chains;
mod code;
mod records;
mod reports;
pub mod rng;
mod tables;
mod vocab;

use std::collections::BTreeMap;
use std::path::Path;

use rng::Pcg32;

use super::answers::{Answer, AnswerEntry, AnswerSet};
use super::prompt_file;
use super::prompts::{Variant, PROMPTS_PER_FILE};
use super::tokens::{TokenCounter, TokenizerError};

/// The seed of the committed prompt files.
pub const DEFAULT_SEED: u64 = 20_250_101;

/// A task rendered with a given amount of context.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub prompt: String,
    pub answer: Answer,
}

/// A task family: renders task `flavour` (0..4) from its stream with `units` of context. Rendering
/// must be deterministic in (stream, flavour, units).
struct Family {
    name: &'static str,
    render: fn(rng: Pcg32, flavour: usize, units: usize) -> Rendered,
}

const FAMILIES: [Family; 5] = [
    Family {
        name: "record-lookup",
        render: records::render,
    },
    Family {
        name: "aggregate",
        render: tables::render,
    },
    Family {
        name: "code-trace",
        render: code::render,
    },
    Family {
        name: "relation-chain",
        render: chains::render,
    },
    Family {
        name: "report-summary",
        render: reports::render,
    },
];

/// The generator failed: the tokenizer, or a task that cannot reach its budget.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("prompt {prompt_id} ({variant}): {message}")]
    Budget {
        prompt_id: String,
        variant: Variant,
        message: String,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Both prompt files' contents and the answers, ready to write.
#[derive(Debug, Clone)]
pub struct GeneratedSet {
    pub files: BTreeMap<Variant, String>,
    pub answers: AnswerSet,
    /// Token counts per prompt, in order: (ID, 2k, 4k).
    pub token_counts: Vec<(String, usize, usize)>,
}

/// Builds both prompt sets from `seed`, fitting every prompt to its budget with `counter`.
pub fn build(seed: u64, counter: &TokenCounter) -> Result<GeneratedSet, GeneratorError> {
    let mut prompts: BTreeMap<Variant, Vec<(String, String)>> = BTreeMap::new();
    let mut entries = Vec::new();
    let mut token_counts = Vec::new();
    for index in 0..PROMPTS_PER_FILE {
        let family = &FAMILIES[index / 4];
        let flavour = index % 4;
        let prompt_id = format!("p{:02}", index + 1);
        let stream = Pcg32::new(seed, index as u64 + 1);
        let mut answers = BTreeMap::new();
        let mut counts = Vec::new();
        for variant in Variant::ALL {
            let (rendered, tokens) =
                fit(family, &stream, flavour, variant, counter).map_err(|e| match e {
                    FitError::Tokenizer(e) => GeneratorError::Tokenizer(e),
                    FitError::Unreachable(message) => GeneratorError::Budget {
                        prompt_id: prompt_id.clone(),
                        variant,
                        message,
                    },
                })?;
            prompts
                .entry(variant)
                .or_default()
                .push((prompt_id.clone(), rendered.prompt));
            answers.insert(variant.as_str().to_string(), rendered.answer);
            counts.push(tokens);
        }
        token_counts.push((prompt_id.clone(), counts[0], counts[1]));
        entries.push(AnswerEntry {
            prompt_id,
            task: family.name.to_string(),
            answers,
        });
    }
    let files = prompts
        .into_iter()
        .map(|(variant, list)| (variant, prompt_file::format(&header(seed, variant), &list)))
        .collect();
    Ok(GeneratedSet {
        files,
        answers: AnswerSet {
            seed,
            prompts: entries,
        },
        token_counts,
    })
}

impl GeneratedSet {
    /// Writes `prompts_2k.txt`, `prompts_4k.txt` and `answers.json` into `dir`, atomically each.
    pub fn write(&self, dir: &Path) -> Result<(), GeneratorError> {
        let mut outputs: Vec<(std::path::PathBuf, &str)> = self
            .files
            .iter()
            .map(|(variant, text)| (dir.join(variant.file_name()), text.as_str()))
            .collect();
        let answers = self.answers.to_json();
        outputs.push((dir.join("answers.json"), &answers));
        for (path, text) in outputs {
            crate::fsutil::write_atomic(&path, text.as_bytes())
                .map_err(|source| GeneratorError::Write { path, source })?;
        }
        Ok(())
    }
}

fn header(seed: u64, variant: Variant) -> Vec<String> {
    vec![
        format!(
            "shardlab prompt set, variant {variant}: {PROMPTS_PER_FILE} prompts of {} Llama 3 tokens (+-10%) each.",
            variant.token_budget()
        ),
        format!("Built by `driver prompts build --seed {seed}`; do not edit by hand (rebuild instead)."),
        "Format: `=== ID ===` opens a prompt, which runs to the next header (see data/README.md)."
            .to_string(),
    ]
}

enum FitError {
    Tokenizer(TokenizerError),
    Unreachable(String),
}

/// The rendering with the number of units whose token count is closest to the variant's budget.
fn fit(
    family: &Family,
    stream: &Pcg32,
    flavour: usize,
    variant: Variant,
    counter: &TokenCounter,
) -> Result<(Rendered, usize), FitError> {
    const MAX_UNITS: usize = 4096;
    let target = variant.token_budget();
    let render = |units: usize| -> Result<(Rendered, usize), FitError> {
        let rendered = (family.render)(stream.clone(), flavour, units);
        let tokens = counter
            .count(&rendered.prompt)
            .map_err(FitError::Tokenizer)?;
        Ok((rendered, tokens))
    };
    // Gallop to a unit count over the target, then bisect for the first one at or over it.
    let mut lo = 1;
    let mut hi = 2;
    loop {
        let (_, tokens) = render(hi)?;
        if tokens >= target {
            break;
        }
        lo = hi;
        hi *= 2;
        if hi > MAX_UNITS {
            return Err(FitError::Unreachable(format!(
                "{MAX_UNITS} units stay under {target} tokens"
            )));
        }
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if render(mid)?.1 >= target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let over = render(hi)?;
    let under = render(lo)?;
    let best = if over.1 - target <= target.saturating_sub(under.1) {
        over
    } else {
        under
    };
    if !variant.token_range().contains(&best.1) {
        return Err(FitError::Unreachable(format!(
            "the closest fit has {} tokens, outside {:?}",
            best.1,
            variant.token_range()
        )));
    }
    Ok(best)
}

/// A stream of unique names drawn from `a` x `b`, numbered once the combinations run out.
struct UniqueNames<'a> {
    a: &'a [&'a str],
    b: &'a [&'a str],
    separator: &'a str,
    used: std::collections::HashSet<String>,
}

impl<'a> UniqueNames<'a> {
    fn new(a: &'a [&'a str], b: &'a [&'a str], separator: &'a str) -> Self {
        Self {
            a,
            b,
            separator,
            used: Default::default(),
        }
    }

    fn next(&mut self, rng: &mut Pcg32) -> String {
        for attempt in 0.. {
            let mut name = format!("{}{}{}", rng.pick(self.a), self.separator, rng.pick(self.b));
            if attempt >= 20 {
                name = format!("{name} {}", attempt - 18);
            }
            if self.used.insert(name.clone()) {
                return name;
            }
        }
        unreachable!("the numbered names never run out")
    }

    /// Marks a name as taken without drawing it.
    fn reserve(&mut self, name: &str) {
        self.used.insert(name.to_string());
    }
}

/// Where in a context of `len` units an item drawn at fraction `per_mille` goes.
fn position(per_mille: u32, len: usize) -> usize {
    (per_mille as usize * len) / 1000
}
