use std::collections::BTreeMap;

use super::*;
use crate::data::answers::{Answer, AnswerEntry, AnswerSet};
use crate::metrics::correctness::CorrectnessEvaluator;
use crate::metrics::test_table::{byte_tokenizer, master_table, Row};

/// Two strategies, tp (2k and 4k) and pp (2k only), scored against answers for p01 and p02 at 2k.
fn scored_table() -> DataFrame {
    let timed = |mut row: Row, latency: f64, ttft: f64, tokens_per_s: f64, attempt: i64| {
        row.cluster_latency_ms = Some(latency);
        row.ttft_ms = Some(ttft);
        row.tokens_per_s = Some(tokens_per_s);
        row.attempt = attempt;
        row
    };
    let mut tp_failed = Row::ok("p03", "2k", "tp", "x", "").failed();
    tp_failed.attempt = 3;
    let rows = [
        timed(Row::ok("p01", "2k", "tp", "42", "42"), 100.0, 10.0, 50.0, 1),
        timed(Row::ok("p01", "2k", "pp", "42", "42"), 400.0, 10.0, 80.0, 1),
        timed(
            Row::ok("p02", "2k", "tp", "abc", "abd"),
            300.0,
            30.0,
            70.0,
            2,
        ),
        timed(
            Row::ok("p02", "2k", "pp", "abc", "abc"),
            200.0,
            10.0,
            80.0,
            1,
        ),
        tp_failed,
        timed(Row::ok("p01", "4k", "tp", "42", "42"), 500.0, 50.0, 40.0, 1),
    ];
    let answers = AnswerSet {
        seed: 1,
        prompts: vec![
            AnswerEntry {
                prompt_id: "p01".into(),
                task: "aggregate".into(),
                answers: BTreeMap::from([("2k".to_string(), Answer::Number(42))]),
            },
            AnswerEntry {
                prompt_id: "p02".into(),
                task: "record-lookup".into(),
                answers: BTreeMap::from([("2k".to_string(), Answer::Text("abc".into()))]),
            },
        ],
    };
    CorrectnessEvaluator::new(Some(answers), byte_tokenizer())
        .evaluate(&master_table(&rows))
        .unwrap()
}

fn close(actual: Option<f64>, expected: f64) -> bool {
    actual.is_some_and(|a| (a - expected).abs() < 1e-12)
}

#[test]
fn summary_numbers_by_hand() {
    let summary = RunSummary::from_table(&scored_table()).unwrap();
    let keys: Vec<_> = summary
        .rows
        .iter()
        .map(|r| (r.strategy.as_str(), r.variant.as_str()))
        .collect();
    assert_eq!(keys, [("tp", "2k"), ("tp", "4k"), ("pp", "2k")]);

    // tp 2k: p01 identical (1.0); p02 "abc" vs "abd": token agreement 2/3, ROUGE-L 0 (one word
    // each, different), chrF (2/3 + 1/2 + 0) / 3 = 7/18, so (2/3 + 0 + 7/18) / 3 = 19/54;
    // p03 failed: 0.0. Mean (1 + 19/54 + 0) / 3 = 73/162, min 0.
    let tp = &summary.rows[0];
    assert_eq!(tp.prompts, 3);
    assert!(close(tp.correctness_mean, 73.0 / 162.0), "{tp:?}");
    assert_eq!(tp.correctness_min, Some(0.0));
    // Exact: p01 only, of 3 compared rows (the failed one counts as no match).
    assert!(close(tp.exact_match_share, 1.0 / 3.0));
    // Answers: p01 right, p02 "abd" wrong, p03 has none: 1/2; the baseline got both: 1.
    assert_eq!(tp.answer_accuracy, Some(0.5));
    assert_eq!(tp.baseline_answer_accuracy, Some(1.0));
    // Latencies [100, 300] (p03 has none): nearest rank p50 = ceil(1.0) = 1st = 100,
    // p90 = ceil(1.8) = 2nd = 300, p99 = 300. TTFT [10, 30]: p50 = 10.
    assert_eq!(
        (tp.latency_p50_ms, tp.latency_p90_ms, tp.latency_p99_ms),
        (Some(100.0), Some(300.0), Some(300.0))
    );
    assert_eq!(tp.ttft_p50_ms, Some(10.0));
    // tokens/s (50 + 70) / 2 = 60; one failure; retries (1-1) + (2-1) + (3-1) = 3.
    assert_eq!(tp.tokens_per_s_mean, Some(60.0));
    assert_eq!((tp.failures, tp.retries), (1, 3));

    // tp 4k: one identical row, no answers for 4k.
    let tp4 = &summary.rows[1];
    assert_eq!((tp4.prompts, tp4.correctness_mean), (1, Some(1.0)));
    assert_eq!(
        (tp4.answer_accuracy, tp4.baseline_answer_accuracy),
        (None, None)
    );
    assert_eq!(tp4.latency_p99_ms, Some(500.0));

    // pp 2k: both identical; latencies [400, 200] -> sorted [200, 400]: p50 200, p90 400.
    let pp = &summary.rows[2];
    assert_eq!(pp.correctness_mean, Some(1.0));
    assert_eq!(pp.exact_match_share, Some(1.0));
    assert_eq!(pp.answer_accuracy, Some(1.0));
    assert_eq!(
        (pp.latency_p50_ms, pp.latency_p90_ms),
        (Some(200.0), Some(400.0))
    );
    assert_eq!((pp.failures, pp.retries), (0, 0));

    // Over all variants: tp [100, 300, 500] -> p50 = ceil(1.5) = 2nd = 300; its correctness
    // (1 + 19/54 + 0 + 1) / 4 = 127/216.
    let tp_all = &summary.overall[0];
    assert_eq!((tp_all.variant.as_str(), tp_all.prompts), ("all", 4));
    assert_eq!(tp_all.latency_p50_ms, Some(300.0));
    assert!(close(tp_all.correctness_mean, 127.0 / 216.0));
}

#[test]
fn the_recommendation_is_the_fastest_faithful_strategy() {
    let summary = RunSummary::from_table(&scored_table()).unwrap();
    let text = summary.recommendation();
    // pp: correctness 1.0 at p50 200 ms; tp (0.588) is below the 0.99 bar.
    assert!(text.starts_with("Run **pp**"), "{text}");
    assert!(text.contains("p50 latency 200.0 ms"), "{text}");
    assert!(text.contains("1 other strategy fell below"), "{text}");
}

fn overall(strategy: &str, correctness: f64, p50: f64) -> SummaryRow {
    let mut rows = RunSummary::from_table(&scored_table()).unwrap().overall;
    let mut row = rows.remove(0);
    row.strategy = strategy.into();
    row.correctness_mean = Some(correctness);
    row.latency_p50_ms = Some(p50);
    row.failures = 0;
    row
}

#[test]
fn the_recommendation_compares_the_runner_up_and_admits_when_none_qualifies() {
    let two = markdown::recommendation(&[
        overall("hybrid", 1.0, 300.0),
        overall("tp-single-node", 0.995, 200.0),
        overall("pp", 0.5, 50.0),
    ]);
    // Fastest at >= 0.99 is tp-single-node (200 ms); hybrid is 300 / 200 = 1.50x slower.
    assert!(two.starts_with("Run **tp-single-node**"), "{two}");
    assert!(
        two.contains("**hybrid** at 300.0 ms (1.50x slower)"),
        "{two}"
    );

    let none = markdown::recommendation(&[overall("a", 0.9, 100.0), overall("b", 0.95, 200.0)]);
    assert!(none.starts_with("No strategy reached"), "{none}");
    assert!(none.contains("most faithful is **b**"), "{none}");
    assert!(none.contains("fastest is **a**"), "{none}");
}

#[test]
fn the_markdown_has_a_row_per_strategy_and_variant() {
    let md = RunSummary::from_table(&scored_table())
        .unwrap()
        .to_markdown();
    let table_rows = md
        .lines()
        .filter(|l| l.starts_with("| tp ") || l.starts_with("| pp "));
    assert_eq!(table_rows.count(), 3, "{md}");
    assert!(
        md.contains("| tp | 2k | 3 | 0.451 | 0.000 | 0.33 | 0.50 | 1.00 | 100.0 |"),
        "{md}"
    );
    assert!(md.contains("## Which strategy"), "{md}");
}

#[test]
fn write_produces_valid_files_atomically() {
    let df = scored_table();
    let summary = RunSummary::from_table(&df).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let written = summary.write(&df, dir.path()).unwrap();
    if let Some(keep) = std::env::var_os("SHARDLAB_KEEP_REPORT") {
        // For looking at the plots by eye.
        for file in &written {
            std::fs::copy(
                file,
                std::path::Path::new(&keep).join(file.file_name().unwrap()),
            )
            .unwrap();
        }
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let expected = [
        "latency_distribution.png",
        "latency_distribution.svg",
        "latency_vs_correctness.png",
        "latency_vs_correctness.svg",
        "summary.csv",
        "summary.md",
        "throughput_vs_prompt_length.png",
        "throughput_vs_prompt_length.svg",
    ];
    // No temp files left behind, and `write` reports exactly what it wrote.
    assert_eq!(names, expected);
    assert_eq!(written.len(), expected.len());

    for plot in [
        "latency_distribution",
        "latency_vs_correctness",
        "throughput_vs_prompt_length",
    ] {
        let png = std::fs::File::open(dir.path().join(format!("{plot}.png"))).unwrap();
        let mut reader = png::Decoder::new(png).read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut pixels).unwrap();
        assert!(frame.width >= 960 && frame.height == 640, "{plot}");
        // Something besides the white background was drawn.
        let drawn = pixels[..frame.buffer_size()]
            .iter()
            .filter(|b| **b < 128)
            .count();
        assert!(drawn > 1000, "{plot}: only {drawn} dark bytes");

        let svg = std::fs::read_to_string(dir.path().join(format!("{plot}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{plot}: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(str::trim))
            .collect();
        let labels = if plot == "latency_distribution" {
            ["tp 2k", "pp 2k"]
        } else {
            ["tp", "pp"]
        };
        for label in labels {
            assert!(
                texts.contains(&label),
                "{plot}: no label {label} in {texts:?}"
            );
        }
    }

    let csv = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(dir.path().join("summary.csv")))
        .unwrap()
        .finish()
        .unwrap();
    let columns: Vec<&str> = csv.columns().iter().map(|c| c.name().as_str()).collect();
    assert_eq!(columns, SUMMARY_COLUMNS);
    assert_eq!(csv.height(), 3);
    let floats = |name: &str| -> Vec<Option<f64>> {
        csv.column(name).unwrap().f64().unwrap().iter().collect()
    };
    assert!(close(floats("correctness_mean")[0], 73.0 / 162.0));
    assert_eq!(
        floats("latency_p90_ms"),
        [Some(300.0), Some(500.0), Some(400.0)]
    );
    // tp 4k has no answers: an empty field, read back as null.
    assert_eq!(floats("answer_accuracy"), [Some(0.5), None, Some(1.0)]);
    let ints: Vec<Option<i64>> = csv
        .column("retries")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(ints, [Some(3), Some(0), Some(0)]);
}

#[test]
fn an_unscored_table_is_refused_by_column_name() {
    let df = master_table(&[Row::ok("p01", "2k", "tp", "a", "a")]);
    let message = RunSummary::from_table(&df).unwrap_err().to_string();
    assert!(message.contains("`correctness`"), "{message}");
}
