//! Scores every row of the master table: the strategy's completion against the baseline's (exact
//! match, token agreement, ROUGE-L, chrF, logprob drift) and both against the expected answer.
//!
//! The primary score, `correctness`, is the mean of token agreement, ROUGE-L F1 and chrF, each in
//! 0..=1: 1.0 means the strategy wrote what the baseline wrote. It measures fidelity to the
//! baseline, not truth; answer accuracy is reported beside it because the baseline can be wrong.
//! The README's "Correctness score" section explains the choice.
//!
//! Null rules: a row whose baseline has no completion gets null comparison scores and a null
//! `correctness` (nothing to compare to), and a null `baseline_answer_correct`; a row whose
//! strategy has no completion gets null comparison scores, `correctness` 0.0, `answer_correct`
//! false and `answer_points_share` 0.0 (a failed job gave no answer). The answer columns are null
//! where `data/answers.json` has no answer for the prompt and variant.

pub mod answer;
pub mod chrf;
pub mod exact_match;
pub mod logprobs;
pub mod rouge_l;
pub mod token_agreement;

use polars::prelude::*;
use tokenizers::Tokenizer;

use self::answer::check_answer;
use self::token_agreement::token_agreement;
use super::{table, MetricsError};
use crate::data::answers::{Answer, AnswerSet};

/// The columns [`CorrectnessEvaluator::evaluate`] adds (or replaces), in order.
pub const SCORE_COLUMNS: [&str; 10] = [
    "exact_match",
    "first_diff_token",
    "token_agreement",
    "rouge_l_f1",
    "chrf",
    "baseline_answer_correct",
    "answer_correct",
    "answer_points_share",
    "logprob_mad",
    "correctness",
];

/// The primary score: the mean of token agreement, ROUGE-L F1 and chrF (each 0..=1).
pub fn correctness_score(token_agreement: f64, rouge_l_f1: f64, chrf: f64) -> f64 {
    (token_agreement + rouge_l_f1 + chrf) / 3.0
}

/// The scores of one row, one field per column of [`SCORE_COLUMNS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowScores {
    pub exact_match: Option<bool>,
    pub first_diff_token: Option<i64>,
    pub token_agreement: Option<f64>,
    pub rouge_l_f1: Option<f64>,
    pub chrf: Option<f64>,
    pub baseline_answer_correct: Option<bool>,
    pub answer_correct: Option<bool>,
    pub answer_points_share: Option<f64>,
    pub logprob_mad: Option<f64>,
    pub correctness: Option<f64>,
}

/// Scores a master table against its baseline and, where given, the expected answers.
pub struct CorrectnessEvaluator {
    answers: Option<AnswerSet>,
    /// Tokenizes both sides of every comparison, so identical texts always agree fully.
    tokenizer: Tokenizer,
}

/// The master table's columns that scoring reads.
struct Inputs {
    prompt_id: Vec<String>,
    variant: Vec<String>,
    baseline: Vec<Option<String>>,
    cluster: Vec<Option<String>>,
    baseline_logprobs: Vec<Option<Vec<f64>>>,
    cluster_logprobs: Vec<Option<Vec<f64>>>,
}

impl Inputs {
    fn read(df: &DataFrame) -> Result<Self, MetricsError> {
        Ok(Self {
            prompt_id: table::required_strings(df, "prompt_id")?,
            variant: table::required_strings(df, "variant")?,
            baseline: table::strings(df, "local_completion")?,
            cluster: table::strings(df, "cluster_completion")?,
            baseline_logprobs: table::float_lists(df, "local_logprobs")?,
            cluster_logprobs: table::float_lists(df, "cluster_logprobs")?,
        })
    }
}

impl CorrectnessEvaluator {
    pub fn new(answers: Option<AnswerSet>, tokenizer: Tokenizer) -> Self {
        Self { answers, tokenizer }
    }

    /// `df` with the [`SCORE_COLUMNS`] appended; scoring a scored table replaces its scores.
    pub fn evaluate(&self, df: &DataFrame) -> Result<DataFrame, MetricsError> {
        let inputs = Inputs::read(df)?;
        let scores = (0..df.height())
            .map(|row| self.score_row(&inputs, row))
            .collect::<Result<Vec<_>, _>>()?;
        let compared = scores.iter().filter(|s| s.correctness.is_some()).count();
        tracing::info!(rows = scores.len(), compared, "scored the master table");
        let mut scored = df.clone();
        for column in score_columns(&scores) {
            scored.with_column(column)?;
        }
        Ok(scored)
    }

    fn score_row(&self, inputs: &Inputs, row: usize) -> Result<RowScores, MetricsError> {
        let answer = self.answer(&inputs.prompt_id[row], &inputs.variant[row]);
        let baseline = inputs.baseline[row].as_deref();
        let cluster = inputs.cluster[row].as_deref();
        let mut scores = RowScores::default();
        if let Some(answer) = answer {
            scores.baseline_answer_correct = baseline.map(|b| check_answer(answer, b).correct);
            let check = cluster.map(|c| check_answer(answer, c));
            scores.answer_correct = Some(check.is_some_and(|c| c.correct));
            scores.answer_points_share = match (answer, check) {
                (Answer::Points(_), None) => Some(0.0),
                (_, check) => check.and_then(|c| c.points_share),
            };
        }
        let Some(baseline) = baseline else {
            return Ok(scores);
        };
        let Some(cluster) = cluster else {
            scores.correctness = Some(0.0);
            return Ok(scores);
        };
        let key = || format!("{}/{}", inputs.prompt_id[row], inputs.variant[row]);
        let encode = |text: &str, side: &'static str| {
            self.tokenizer
                .encode_fast(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| MetricsError::Tokenize {
                    row,
                    key: key(),
                    side,
                    message: e.to_string(),
                })
        };
        let tokens = token_agreement(&encode(baseline, "baseline")?, &encode(cluster, "cluster")?);
        let rouge = rouge_l::rouge_l_f1(baseline, cluster);
        let chrf = chrf::chrf(baseline, cluster);
        scores.exact_match = Some(exact_match::exact_match(baseline, cluster));
        scores.first_diff_token = tokens.first_diff.map(|i| i as i64);
        scores.token_agreement = Some(tokens.share);
        scores.rouge_l_f1 = Some(rouge);
        scores.chrf = Some(chrf);
        scores.logprob_mad = match (
            &inputs.baseline_logprobs[row],
            &inputs.cluster_logprobs[row],
        ) {
            (Some(b), Some(c)) => logprobs::logprob_mad(b, c, tokens.agreed),
            _ => None,
        };
        scores.correctness = Some(correctness_score(tokens.share, rouge, chrf));
        Ok(scores)
    }

    fn answer(&self, prompt_id: &str, variant: &str) -> Option<&Answer> {
        self.answers.as_ref()?.get(prompt_id)?.answers.get(variant)
    }
}

fn score_columns(scores: &[RowScores]) -> Vec<Column> {
    macro_rules! column {
        ($field:ident) => {
            Column::new(
                stringify!($field).into(),
                scores.iter().map(|s| s.$field).collect::<Vec<_>>(),
            )
        };
    }
    let columns = vec![
        column!(exact_match),
        column!(first_diff_token),
        column!(token_agreement),
        column!(rouge_l_f1),
        column!(chrf),
        column!(baseline_answer_correct),
        column!(answer_correct),
        column!(answer_points_share),
        column!(logprob_mad),
        column!(correctness),
    ];
    debug_assert!(columns.iter().map(|c| c.name().as_str()).eq(SCORE_COLUMNS));
    columns
}

#[cfg(test)]
mod tests;
