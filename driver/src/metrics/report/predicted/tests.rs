use super::*;
use crate::metrics::correctness::CorrectnessEvaluator;
use crate::metrics::report::RunSummary;
use crate::metrics::test_table::{byte_tokenizer, master_table, Row};
use crate::parallelism::strategy::EngineArgs;
use crate::perf::{HardwareSpec, ModelShape, StrategyLayout};

/// One layer of 1000 wide, 10 heads of 100, a tied 1000-word vocabulary, in f32, on a device of
/// 1 GFLOP/s and 1 GB/s: figures a hand can work out.
fn inputs() -> PerfInputs {
    let hardware = HardwareSpec {
        preset: Some("slow".into()),
        flops_per_s: Some(1e9),
        hbm_bytes_per_s: Some(1e9),
        decode_attention_flops_per_s: Some(1e9),
        memory_gb: Some(100.0),
        intra_node_bytes_per_s: Some(1e9),
        intra_node_latency_us: Some(1.0),
        inter_node_bytes_per_s: Some(1e9),
        inter_node_latency_us: Some(1.0),
        achievable_fraction: Some(1.0),
        ..HardwareSpec::default()
    }
    .resolve()
    .unwrap();
    PerfInputs {
        hardware,
        model: ModelShape {
            hidden_size: 1000,
            heads: 10,
            kv_heads: 10,
            head_dim: 100,
            layers: 1,
            intermediate_size: 1000,
            vocab_size: 1000,
            tie_word_embeddings: true,
            value_bytes: 4,
        },
        activation_bytes: 4,
        strategies: vec![StrategyLayout {
            strategy: "tp".into(),
            args: EngineArgs {
                tp: 1,
                pp: 1,
                nodes: 1,
                gpus_per_node: 1,
                ranks_per_node: 1,
                layer_split: vec![1],
                micro_batches: None,
                batch_size: 4,
            },
        }],
    }
}

/// `tp` answers p01 at 2k in `latency` ms, its first token at `ttft`, 9 tokens of a 1000-token
/// prompt; `other` (a strategy the inputs do not know) answers too.
fn table(latency: f64, ttft: f64) -> DataFrame {
    let timed = |strategy: &str| {
        let mut row = Row::ok("p01", "2k", strategy, "42", "42");
        row.cluster_latency_ms = Some(latency);
        row.ttft_ms = Some(ttft);
        row.completion_tokens = Some(9);
        row.prompt_tokens = Some(1000);
        row.tokens_per_s = Some(9.0 * 1000.0 / latency);
        row
    };
    CorrectnessEvaluator::new(None, byte_tokenizer())
        .evaluate(&master_table(&[timed("tp"), timed("other")]))
        .unwrap()
}

#[test]
fn decode_and_ttft_are_predicted_by_hand_at_the_groups_own_lengths() {
    // Decode at the mean context 1000 + 9/2 = 1004.5 positions:
    // weights 1 layer x 7,002,000 + tied head 1,000,000 = 8,002,000 x 4 B = 32.008 ms at 1 GB/s
    // (16.004 MFLOP: memory-bound); attention 4 x 1004.5 x 10 x 100 = 4.018 MFLOP (4.018 ms)
    // against its KV read 2 x 10 x 100 x 1004.5 x 4 B = 8.036 ms: memory-bound.
    // Decode = 40.044 ms, mostly memory.
    // Prefill of 1000 tokens: 2 x 7,002,000 x 1000 + 2 x 1,000,000 (the last row's logits)
    // = 14.006 GFLOP (14.006 s) against 32.008 MB of weights: compute; attention
    // 4 x 500,500 x 1000 = 2.002 GFLOP (2.002 s) against 8 MB of cache: compute. TTFT 16.008 s.
    let c = Comparison::of(
        &rows::read(&table(16_008.0 + 8.0 * 80.088, 16_008.0)).unwrap(),
        &inputs(),
    );
    assert_eq!(c.rows.len(), 1, "only the strategy the inputs know");
    let r = &c.rows[0];
    assert_eq!(
        (r.batch, r.prompt_tokens, r.completion_tokens),
        (1, 1000, 9)
    );
    assert!(
        (r.decode_ms_per_token.predicted - 40.044).abs() < 1e-9,
        "{r:?}"
    );
    assert_eq!(r.decode_ms_per_token.bound, "memory");
    assert!((r.ttft_ms.predicted - 16_008.0).abs() < 1e-6, "{r:?}");
    assert_eq!(r.ttft_ms.bound, "compute");
    // Measured: TTFT as predicted, decode twice the prediction.
    assert!((r.ttft_ms.ratio().unwrap() - 1.0).abs() < 1e-12);
    assert!((r.decode_ms_per_token.ratio().unwrap() - 2.0).abs() < 1e-12);
    assert_eq!(r.decode_rows, 1);
    // Tokens/s: 9 tokens over 16.008 s + 8 x 40.044 ms predicted.
    let predicted_tps = 9.0 / (16.008 + 8.0 * 0.040044);
    assert!((r.tokens_per_s.predicted - predicted_tps).abs() < 1e-9);
    assert_eq!(r.flags(), "SLOWER THAN MODEL: decode 2.0x");
}

#[test]
fn decode_is_the_engines_median_gap_between_tokens_when_it_timed_them() {
    // One stalled step of 2 s among eight 40 ms ones moves the mean to 285 ms; the median gap,
    // which the collector stores, stays at 40.044 ms: the prediction.
    let stalled = 16_008.0 + 7.0 * 40.044 + 2_000.0;
    let mut df = table(stalled, 16_008.0);
    let mean = rows::read(&df).unwrap();
    assert!(
        (Comparison::of(&mean, &inputs()).rows[0]
            .decode_ms_per_token
            .ratio()
            .unwrap()
            - 7.118)
            .abs()
            < 0.001
    );
    df.with_column(Column::new("decode_ms_per_token".into(), [40.044, 40.044]))
        .unwrap();
    let c = Comparison::of(&rows::read(&df).unwrap(), &inputs());
    let r = &c.rows[0];
    assert!(
        (r.decode_ms_per_token.ratio().unwrap() - 1.0).abs() < 1e-12,
        "{r:?}"
    );
    assert_eq!(r.flags(), "");
}

#[test]
fn figures_within_half_again_of_the_prediction_are_not_flagged() {
    let c = Comparison::of(
        &rows::read(&table(16_008.0 + 8.0 * 52.0, 16_008.0)).unwrap(),
        &inputs(),
    );
    assert_eq!(c.rows[0].flags(), "");
    assert_eq!(c.flagged(), 0);
    assert!(c
        .to_markdown()
        .contains("Every measured figure is within 1.5x"));
    // A TTFT three times the prediction is flagged, and tokens/s with it.
    let slow = Comparison::of(
        &rows::read(&table(3.0 * 16_008.0 + 400.0, 3.0 * 16_008.0)).unwrap(),
        &inputs(),
    );
    let flags = slow.rows[0].flags();
    assert!(flags.starts_with("SLOWER THAN MODEL: TTFT 3.0x"), "{flags}");
    assert!(flags.ends_with("tokens/s 3.0x"), "{flags}");
    assert!(slow.to_markdown().contains("1 of 1 strategy/variant rows"));
}

#[test]
fn the_report_writes_the_comparison_or_says_there_is_none() {
    let df = table(16_008.0 + 8.0 * 52.0, 16_008.0);
    let dir = tempfile::tempdir().unwrap();
    let with = RunSummary::from_table_predicted(&df, Some(&inputs())).unwrap();
    let written = with.write(&df, dir.path()).unwrap();
    let csv = dir.path().join("predicted_vs_measured.csv");
    assert!(written.contains(&csv));
    let back = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(csv))
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(back.height(), 1);
    let names: Vec<String> = back
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names, PREDICTED_COLUMNS);
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains("## Predicted vs measured"), "{md}");
    assert!(md.contains("| tp | 2k | 1 | 1000 | 9 | 16008.0 |"), "{md}");
    let without = RunSummary::from_table(&df).unwrap().to_markdown();
    assert!(without.contains("No predictions: the run folder has no `perf_inputs.json`"));
}
