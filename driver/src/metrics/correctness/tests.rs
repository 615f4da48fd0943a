use std::collections::BTreeMap;

use super::*;
use crate::data::answers::AnswerEntry;
use crate::metrics::test_table::{byte_tokenizer, master_table, Row};

fn evaluator(answers: Option<AnswerSet>) -> CorrectnessEvaluator {
    CorrectnessEvaluator::new(answers, byte_tokenizer())
}

fn answers(prompt_id: &str, variant: &str, answer: Answer) -> AnswerSet {
    AnswerSet {
        seed: 1,
        prompts: vec![AnswerEntry {
            prompt_id: prompt_id.into(),
            task: "aggregate".into(),
            answers: BTreeMap::from([(variant.to_string(), answer)]),
        }],
    }
}

fn f64s(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    df.column(name).unwrap().f64().unwrap().iter().collect()
}

fn bools(df: &DataFrame, name: &str) -> Vec<Option<bool>> {
    df.column(name).unwrap().bool().unwrap().iter().collect()
}

fn i64s(df: &DataFrame, name: &str) -> Vec<Option<i64>> {
    df.column(name).unwrap().i64().unwrap().iter().collect()
}

#[test]
fn identical_completions_score_one_everywhere() {
    let df = master_table(&[Row::ok(
        "p01",
        "2k",
        "tp",
        "The answer is 42.",
        "The answer is 42.",
    )]);
    let scored = evaluator(None).evaluate(&df).unwrap();
    assert_eq!(bools(&scored, "exact_match"), vec![Some(true)]);
    assert_eq!(i64s(&scored, "first_diff_token"), vec![None]);
    for name in ["token_agreement", "rouge_l_f1", "chrf", "correctness"] {
        assert_eq!(f64s(&scored, name), vec![Some(1.0)], "{name}");
    }
    // No answers given: the answer columns are null.
    assert_eq!(bools(&scored, "answer_correct"), vec![None]);
    assert_eq!(f64s(&scored, "logprob_mad"), vec![None]);
}

#[test]
fn a_diverging_completion_is_scored_by_hand() {
    // baseline "the cat sat", strategy "the cat ran"; the test tokenizer has one token per byte.
    // token agreement: bytes differ first at index 8 ('s' vs 'r'), 8 of 11 agree: 8/11.
    // ROUGE-L: LCS "the cat" = 2 of 3 words each side: P = R = 2/3, F1 = 2/3.
    // chrF ("thecatsat" vs "thecatran"): per order n = 1..6, matches / n-grams (same count on
    // both sides, so P = R): 7/9, 5/8, 4/7, 3/6, 2/5, 1/4; their mean = 7873/15120 = chrF
    // (sacrebleu: 52.070105820105816).
    // correctness = (8/11 + 2/3 + 7873/15120) / 3.
    let df = master_table(&[Row::ok("p01", "2k", "tp", "the cat sat", "the cat ran")]);
    let scored = evaluator(None).evaluate(&df).unwrap();
    let close = |name: &str, expected: f64| {
        let value = f64s(&scored, name)[0].unwrap();
        assert!(
            (value - expected).abs() < 1e-12,
            "{name}: {value} vs {expected}"
        );
    };
    close("token_agreement", 8.0 / 11.0);
    close("rouge_l_f1", 2.0 / 3.0);
    close("chrf", 7873.0 / 15120.0);
    close(
        "correctness",
        (8.0 / 11.0 + 2.0 / 3.0 + 7873.0 / 15120.0) / 3.0,
    );
    assert_eq!(i64s(&scored, "first_diff_token"), vec![Some(8)]);
    assert_eq!(bools(&scored, "exact_match"), vec![Some(false)]);
}

#[test]
fn failed_rows_follow_the_null_rules() {
    let mut baseline_failed = Row::ok("p01", "2k", "tp", "", "42");
    baseline_failed.local_completion = None;
    baseline_failed.status = "failed".into();
    let strategy_failed = Row::ok("p01", "2k", "pp", "42", "").failed();
    let df = master_table(&[baseline_failed, strategy_failed]);
    let scored = evaluator(Some(answers("p01", "2k", Answer::Number(42))))
        .evaluate(&df)
        .unwrap();
    // Baseline failed: nothing to compare, null correctness; the strategy's answer still counts.
    // Strategy failed: null metrics, correctness 0.0, a wrong answer.
    assert_eq!(f64s(&scored, "correctness"), vec![None, Some(0.0)]);
    assert_eq!(f64s(&scored, "token_agreement"), vec![None, None]);
    assert_eq!(bools(&scored, "exact_match"), vec![None, None]);
    assert_eq!(
        bools(&scored, "answer_correct"),
        vec![Some(true), Some(false)]
    );
    assert_eq!(
        bools(&scored, "baseline_answer_correct"),
        vec![None, Some(true)]
    );
}

#[test]
fn answers_are_checked_for_both_sides() {
    let df = master_table(&[
        Row::ok("p05", "2k", "tp", "The sum is 347.", "The sum is 348."),
        Row::ok("p05", "4k", "tp", "The sum is 347.", "The sum is 672."),
    ]);
    let scored = evaluator(Some(answers("p05", "2k", Answer::Number(347))))
        .evaluate(&df)
        .unwrap();
    // Only 2k has an answer in this set; 4k's answer columns stay null.
    assert_eq!(
        bools(&scored, "baseline_answer_correct"),
        vec![Some(true), None]
    );
    assert_eq!(bools(&scored, "answer_correct"), vec![Some(false), None]);
    assert_eq!(f64s(&scored, "answer_points_share"), vec![None, None]);
}

#[test]
fn points_answers_report_their_share_and_zero_for_a_failed_job() {
    let points = Answer::Points(BTreeMap::from([
        ("Owner".to_string(), "Noor Iyer".to_string()),
        ("Duration".to_string(), "47 minutes".to_string()),
    ]));
    let df = master_table(&[
        Row::ok(
            "p17",
            "2k",
            "tp",
            "Noor Iyer, 47 minutes",
            "Owner: Noor Iyer.",
        ),
        Row::ok("p17", "2k", "pp", "Noor Iyer, 47 minutes", "").failed(),
    ]);
    let scored = evaluator(Some(answers("p17", "2k", points)))
        .evaluate(&df)
        .unwrap();
    // 1 of 2 points found: 0.5; the failed job found none.
    assert_eq!(
        f64s(&scored, "answer_points_share"),
        vec![Some(0.5), Some(0.0)]
    );
    assert_eq!(
        bools(&scored, "answer_correct"),
        vec![Some(false), Some(false)]
    );
    assert_eq!(
        bools(&scored, "baseline_answer_correct"),
        vec![Some(true), Some(true)]
    );
}

#[test]
fn logprob_drift_is_measured_over_the_agreed_tokens() {
    // "abc" vs "abd": 2 agreed tokens. |-0.1 - -0.3| + |-0.2 - -0.2| = 0.2, / 2 = 0.1.
    let mut row = Row::ok("p01", "2k", "tp", "abc", "abd");
    row.local_logprobs = Some(vec![-0.1, -0.2, -0.3]);
    row.cluster_logprobs = Some(vec![-0.3, -0.2, -5.0]);
    let mut no_logprobs = row.clone();
    no_logprobs.cluster_logprobs = None;
    let df = master_table(&[row, no_logprobs]);
    let scored = evaluator(None).evaluate(&df).unwrap();
    let mad = f64s(&scored, "logprob_mad");
    assert!((mad[0].unwrap() - 0.1).abs() < 1e-12, "{mad:?}");
    assert_eq!(mad[1], None);
}

#[test]
fn scoring_a_scored_table_replaces_its_scores() {
    let df = master_table(&[Row::ok("p01", "2k", "tp", "a", "a")]);
    let evaluator = evaluator(None);
    let once = evaluator.evaluate(&df).unwrap();
    let twice = evaluator.evaluate(&once).unwrap();
    assert_eq!(once.width(), df.width() + SCORE_COLUMNS.len());
    assert_eq!(twice.width(), once.width());
    assert_eq!(f64s(&twice, "correctness"), vec![Some(1.0)]);
}

#[test]
fn a_table_without_completions_is_refused_by_column_name() {
    let df = master_table(&[Row::ok("p01", "2k", "tp", "a", "a")])
        .drop("cluster_completion")
        .unwrap();
    let message = evaluator(None).evaluate(&df).unwrap_err().to_string();
    assert!(message.contains("`cluster_completion`"), "{message}");
}
