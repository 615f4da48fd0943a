use std::path::Path;

use super::*;
use crate::parallelism::enabled_strategies;
use crate::parallelism::rules::even_layer_split;
use crate::perf::formulas::bubble_fraction;
use crate::perf::recommend::{for_latency, for_throughput};
use crate::perf::{predict_strategies, HardwareSpec, Predictions};

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs()
}

/// H100 figures at their peak, so hand arithmetic needs no achievable fraction.
fn h100_at_peak() -> Hardware {
    HardwareSpec {
        achievable_fraction: Some(1.0),
        ..HardwareSpec::preset("h100-sxm")
    }
    .resolve()
    .unwrap()
}

fn one_2k_prompt() -> Workload {
    Workload {
        prompts: vec![PromptLength {
            variant: "2k".into(),
            tokens: 2048,
        }],
        new_tokens: 256,
        activation_bytes: 4,
    }
}

/// One 1000-token prompt, nothing generated (decode at a context of 1000).
fn a_1000_token_prompt() -> Workload {
    Workload {
        prompts: vec![PromptLength {
            variant: "2k".into(),
            tokens: 1000,
        }],
        new_tokens: 0,
        activation_bytes: 4,
    }
}

fn layout(tp: usize, pp: usize, nodes: usize) -> EngineArgs {
    EngineArgs {
        tp,
        pp,
        nodes,
        gpus_per_node: tp * pp / nodes,
        ranks_per_node: tp * pp / nodes,
        layer_split: even_layer_split(80, pp),
        micro_batches: None,
        batch_size: 8,
    }
}

/// The example cluster's four strategies (2 nodes x 8 H100, Llama 3.3 70B in bf16).
fn example_cluster() -> Predictions {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../slurm/profiles/example-cluster.toml");
    let profile = ClusterProfile::load(&path).unwrap();
    let strategies = enabled_strategies(&profile, &profile.model.facts().unwrap()).unwrap();
    predict_strategies(&profile, &strategies).unwrap()
}

fn strategy<'a>(p: &'a Predictions, name: &str) -> &'a StrategyPrediction {
    p.strategies.iter().find(|s| s.strategy == name).unwrap()
}

#[test]
fn tp8_decode_at_batch_1_is_its_weights_over_hbm_plus_161_nvlink_all_reduces() {
    // Context: 2048 prompt + 256/2 new tokens = 2176 positions.
    // HBM: 17,378,050,048 weight bytes (formulas' tp=8 test) + KV 80 layers x 512 B x 2176
    // = 89,128,960; 17,467,179,008 B / 3.35e12 B/s = 5.2141 ms. Compute is 18.1 GFLOP at
    // 989 TFLOP/s = 0.018 ms: HBM-bound.
    // All-reduces: 2 x 80 layers + 1 (embedding) = 161, each of 8192 x 4 B = 32,768 B over 8
    // NVLink ranks: 2 x 7/8 x 32,768 / 450e9 + 14 x 2 us = 28.127 us; x 161 = 4.5285 ms.
    let p = predict(
        "tp-single-node",
        &layout(8, 1, 1),
        &ModelShape::llama_3_3_70b_bf16(),
        &h100_at_peak(),
        &one_2k_prompt(),
    );
    let d = p.variants[0].decode_batch1;
    assert!(close(d.hbm_s, 17_467_179_008.0 / 3.35e12), "{d:?}");
    let all_reduces = 161.0 * (1.75 * 32768.0 / 450e9 + 14.0 * 2e-6);
    assert!(close(d.intra_node_comm_s, all_reduces), "{d:?}");
    assert_eq!(
        (d.compute_s, d.inter_node_comm_s, d.pipeline_bubble_s),
        (0.0, 0.0, 0.0)
    );
    assert_eq!(d.dominant(), Term::Hbm);
}

#[test]
fn tp8_memory_is_a_one_eighth_shard_and_the_batchs_kv_cache() {
    // Weights: 80 layers x 106,971,136 + embedding and LM head 2 x 131,334,144 + final norm 8192
    // = 8,820,367,360 parameters x 2 B = 17,640,734,720 B.
    // KV: batch 8 x (2048 + 256) = 18,432 positions x 80 layers x 512 B = 754,974,720 B.
    let p = predict(
        "tp-single-node",
        &layout(8, 1, 1),
        &ModelShape::llama_3_3_70b_bf16(),
        &h100_at_peak(),
        &one_2k_prompt(),
    );
    let m = p.variants[0].memory;
    assert_eq!(m.weights_bytes, 17_640_734_720.0);
    assert_eq!(m.kv_cache_bytes, 754_974_720.0);
    assert!(m.fits);
}

#[test]
fn a_lone_micro_batch_through_equal_stages_idles_pp_minus_1_of_pp() {
    let stage = Estimate {
        hbm_s: 1.0,
        intra_node_comm_s: 0.5,
        ..Estimate::default()
    };
    let stages = [stage; 4];
    let e = pipeline_estimate(&stages, 1, pipeline_seconds(&totals(&stages), 1));
    assert_eq!(e.seconds(), 6.0);
    assert_eq!((e.hbm_s, e.intra_node_comm_s), (1.0, 0.5));
    assert!(close(
        e.pipeline_bubble_s / e.seconds(),
        bubble_fraction(4, 1)
    ));
    // Four groups keep all four stages busy: no bubble.
    let full = pipeline_estimate(&stages, 4, decode_round_seconds(&totals(&stages), 4));
    assert_eq!((full.seconds(), full.pipeline_bubble_s), (6.0, 0.0));
}

#[test]
fn llama_70b_on_2x8_h100_tp_inside_a_node_beats_tp_across_nodes_for_latency() {
    let p = example_cluster();
    let inside = strategy(&p, "tp-single-node");
    let across = strategy(&p, "tp-across-nodes");
    assert_eq!((inside.tp, across.tp), (8, 16));
    for (i, a) in inside.variants.iter().zip(&across.variants) {
        assert!(
            i.decode_batch1.seconds() < a.decode_batch1.seconds(),
            "{}: tp=8 {:?} vs tp=16 {:?}",
            i.variant,
            i.decode_batch1,
            a.decode_batch1
        );
        assert!(i.ttft.seconds() < a.ttft.seconds(), "{}", i.variant);
        assert_eq!(a.decode_batch1.dominant(), Term::InterNodeComm);
        assert_eq!(a.ttft.dominant(), Term::InterNodeComm);
        assert_eq!(i.decode_batch1.inter_node_comm_s, 0.0);
    }
    let pick = for_latency(&p.strategies, p.workload.new_tokens).unwrap();
    assert_eq!(pick.strategy, "tp-single-node", "{}", pick.reason);
}

#[test]
fn on_the_example_cluster_pp16_waits_in_its_bubble_and_the_hybrid_reduces_over_nvlink() {
    let p = example_cluster();
    let pp16 = &strategy(&p, "pp-across-nodes").variants[0];
    assert_eq!(pp16.decode_batch1.dominant(), Term::PipelineBubble);
    assert_eq!(pp16.ttft.dominant(), Term::PipelineBubble);
    let hybrid = &strategy(&p, "hybrid-tp-pp").variants[0];
    let d = hybrid.decode_batch1;
    // Only the stage-to-stage sends cross the network: far less than the NVLink all-reduces.
    assert!(d.inter_node_comm_s > 0.0 && d.inter_node_comm_s < d.intra_node_comm_s / 10.0);
    // Half the layers per GPU: about half tp=8's weights.
    let tp8 = &strategy(&p, "tp-single-node").variants[0];
    let ratio = hybrid.memory.weights_bytes / tp8.memory.weights_bytes;
    assert!((0.49..0.52).contains(&ratio), "{ratio}");
}

#[test]
fn a_strategy_that_does_not_fit_is_never_recommended() {
    // 10 GB GPUs: tp=8 needs 17.6 GB of weights; tp=16 (9.0 GB) and the hybrid (8.8 GB) fit.
    let model = ModelShape::llama_3_3_70b_bf16();
    let small = HardwareSpec {
        memory_gb: Some(10.0),
        ..HardwareSpec::preset("h100-sxm")
    }
    .resolve()
    .unwrap();
    let workload = one_2k_prompt();
    let predictions: Vec<_> = [
        ("tp-single-node", layout(8, 1, 1)),
        ("tp-across-nodes", layout(16, 1, 2)),
        ("hybrid-tp-pp", layout(8, 2, 2)),
    ]
    .iter()
    .map(|(name, args)| predict(name, args, &model, &small, &workload))
    .collect();
    assert!(!predictions[0].fits() && predictions[1].fits() && predictions[2].fits());
    let latency = for_latency(&predictions, 256).unwrap();
    let throughput = for_throughput(&predictions).unwrap();
    assert_ne!(latency.strategy, "tp-single-node");
    assert_ne!(throughput.strategy, "tp-single-node");
}

#[test]
fn the_printed_table_has_a_row_per_strategy_and_prompt_and_both_picks() {
    let p = example_cluster();
    let text = crate::perf::table::render(&p);
    for name in crate::parallelism::STRATEGY_NAMES {
        assert!(text.matches(name).count() >= 2, "{name}:\n{text}");
    }
    let latency = text.lines().find(|l| l.starts_with("latency")).unwrap();
    assert!(latency.contains("tp-single-node"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("throughput")), "{text}");
    assert!(!text.contains("DOES NOT FIT"), "{text}");
}

/// One layer of 1000 wide (10 heads and 10 KV heads of 100), a tied 1000-word vocabulary, f32.
fn slow_model() -> ModelShape {
    ModelShape {
        hidden_size: 1000,
        heads: 10,
        kv_heads: 10,
        head_dim: 100,
        layers: 1,
        intermediate_size: 1000,
        vocab_size: 1000,
        tie_word_embeddings: true,
        value_bytes: 4,
    }
}

/// A 2-core CPU host whose ranks run at 1 GFLOP/s and 1 GB/s alone, `host_rate` together.
fn two_core_host(host_rate: f64) -> Hardware {
    let mut h = HardwareSpec {
        preset: Some("cpu".into()),
        flops_per_s: Some(1e9),
        hbm_bytes_per_s: Some(1e9),
        decode_attention_flops_per_s: Some(1e9),
        memory_gb: Some(24.0),
        intra_node_bytes_per_s: Some(1e9),
        intra_node_latency_us: Some(1.0),
        inter_node_bytes_per_s: Some(1e9),
        inter_node_latency_us: Some(1.0),
        achievable_fraction: Some(1.0),
        host_cores: Some(2),
        host_flops_per_s: Some(host_rate),
        host_memory_bytes_per_s: Some(host_rate),
        ..HardwareSpec::default()
    }
    .resolve()
    .unwrap();
    if let Some(host) = &mut h.host {
        host.single_host = true;
    }
    h
}

#[test]
fn tp4_on_two_cores_takes_two_turns_or_all_its_work_at_the_hosts_rate() {
    // One rank of tp=4: q, o 2 x 1000 x 1000 / 4 = 500,000; k, v 2 x 1000 x 2.5 heads x 100
    // = 500,000; MLP 750,000; norms 2,000; the tied head 250,000: 2,002,000 x 4 B = 8.008 ms at
    // 1 GB/s (4.004 MFLOP, 4.004 ms: memory-bound). KV at the mean context 1000 + 0/2:
    // 2 x 2.5 x 100 x 1000 x 4 B = 2 ms (1 MFLOP: memory-bound). Alone: 10.008 ms of memory.
    // All-reduces: 2 + 1 (embedding), each 2 x 3/4 x 4000 B / 1 GB/s + 6 x 1 us = 12 us.
    let workload = a_1000_token_prompt();
    let mut args = layout(4, 1, 1);
    args.layer_split = vec![1];
    let decode = |host_rate| {
        predict(
            "t",
            &args,
            &slow_model(),
            &two_core_host(host_rate),
            &workload,
        )
        .variants[0]
            .decode_batch1
    };
    // Cores giving 2 GB/s together: 4 busy ranks take ceil(4 / 2) = 2 turns.
    let d = decode(2e9);
    assert!(close(d.hbm_s, 10.008e-3), "{d:?}");
    assert!(close(d.core_sharing_s, 10.008e-3), "{d:?}");
    assert!(close(d.intra_node_comm_s, 3.0 * 12e-6), "{d:?}");
    assert_eq!(d.dominant(), Term::Hbm);
    // Cores worth one between them: all four ranks' bytes at 1 GB/s, 4x one rank's time.
    let one_core = decode(1e9);
    assert!(
        close(one_core.core_sharing_s, 3.0 * 10.008e-3),
        "{one_core:?}"
    );
    assert_eq!(one_core.dominant(), Term::CoreSharing);
}

#[test]
fn each_layer_adds_its_measured_overhead_to_every_pass() {
    // The slow model's one layer at 100 us, tp=1 on one core of two: nothing shared.
    let mut hw = two_core_host(2e9);
    hw.layer_overhead_s = 100e-6;
    let workload = a_1000_token_prompt();
    let mut args = layout(1, 1, 1);
    args.layer_split = vec![1];
    let with = predict("t", &args, &slow_model(), &hw, &workload).variants[0].decode_batch1;
    hw.layer_overhead_s = 0.0;
    let without = predict("t", &args, &slow_model(), &hw, &workload).variants[0].decode_batch1;
    assert!(
        close(with.compute_s - without.compute_s, 100e-6),
        "{with:?}"
    );
    assert_eq!(with.core_sharing_s, 0.0);
}

#[test]
fn a_waiting_stage_leaves_the_cores_to_the_stage_that_computes() {
    // tp=2 x pp=2 on the 2-core host, one sequence: one stage computes at a time, its 2 ranks on
    // the 2 cores; the other stage's ranks wait in MPI, yielding. No core sharing, while tp=4
    // (4 busy ranks) takes turns.
    let model = ModelShape {
        layers: 2,
        ..slow_model()
    };
    let workload = a_1000_token_prompt();
    let mut hybrid = layout(2, 2, 1);
    hybrid.layer_split = vec![1, 1];
    let d = predict("h", &hybrid, &model, &two_core_host(2e9), &workload).variants[0].decode_batch1;
    assert_eq!(d.core_sharing_s, 0.0, "{d:?}");
    let mut tp4 = layout(4, 1, 1);
    tp4.layer_split = vec![2];
    let d = predict("t", &tp4, &model, &two_core_host(2e9), &workload).variants[0].decode_batch1;
    assert!(d.core_sharing_s > 0.0, "{d:?}");
}

#[test]
fn prefill_attention_runs_at_its_measured_rate_not_the_matmuls() {
    // The slow model's one layer, tp=1, a 1000-token prompt alone: attention is
    // 4 x 1000 x 1001 / 2 x 10 heads x 100 = 2.002 GFLOP. At the matmuls' 1 GFLOP/s 2.002 s;
    // with prefill attention measured at a quarter of that, four times as long. The matmuls
    // (14 GFLOP) do not change.
    let workload = a_1000_token_prompt();
    let mut args = layout(1, 1, 1);
    args.layer_split = vec![1];
    let mut hw = two_core_host(2e9);
    let ttft = |hw: &Hardware| predict("t", &args, &slow_model(), hw, &workload).variants[0].ttft;
    let at_matmul_rate = ttft(&hw);
    hw.prefill_attention_flops_per_s = 0.25e9;
    let slower = ttft(&hw);
    assert!(
        close(slower.compute_s - at_matmul_rate.compute_s, 3.0 * 2.002),
        "{at_matmul_rate:?} {slower:?}"
    );
}
