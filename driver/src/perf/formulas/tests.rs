use super::*;

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs().max(1e-12)
}

const WHOLE_MODEL: StageSlice = StageSlice {
    layers: 80,
    embedding: true,
    lm_head: true,
};

#[test]
fn llama_70b_holds_70_55_billion_parameters() {
    // Per layer: q, o 8192·8192 = 67,108,864 each; k, v 8192·1024 = 8,388,608 each;
    // gate, up, down 8192·28672 = 234,881,024 each; norms 2·8192.
    // 134,217,728 + 16,777,216 + 704,643,072 + 16,384 = 855,654,400; x 80 = 68,452,352,000.
    // Embedding and LM head 128,256·8192 = 1,050,673,152 each; final norm 8192.
    // 68,452,352,000 + 2,101,346,304 + 8192 = 70,553,706,496 parameters, x 2 bytes.
    let m = ModelShape::llama_3_3_70b_bf16();
    assert_eq!(layer_params_per_rank(&m, 1), 855_654_400.0);
    assert_eq!(
        stage_weight_bytes(&m, 1, WHOLE_MODEL),
        2.0 * 70_553_706_496.0
    );
}

#[test]
fn llama_70b_reads_17_4_gb_per_decode_token_at_tp8_in_bf16() {
    // One rank of tp=8, per layer: q, o 8,388,608 each; k, v one KV head 8192·128 = 1,048,576
    // each; MLP 3·8192·3584 = 88,080,384; norms 16,384: 106,971,136; x 80 = 8,557,690,880.
    // LM head 128,256·8192 / 8 = 131,334,144 (the embedding reads one row, not counted).
    // (8,557,690,880 + 131,334,144) x 2 bytes = 17,378,050,048 bytes.
    // KV cache at 4096 positions: 2 (K, V) x 1 head x 128 x 4096 x 2 bytes = 2,097,152 per
    // layer, x 80 = 167,772,160 bytes.
    let m = ModelShape::llama_3_3_70b_bf16();
    let token = |kv_read| Pass {
        rows: 1.0,
        attended: kv_read,
        kv_read,
        logits_rows: 1.0,
    };
    let weights_only = stage_pass_work(&m, 8, WHOLE_MODEL, token(0.0));
    assert_eq!(weights_only.total().hbm_bytes, 17_378_050_048.0);
    let at_4k = stage_pass_work(&m, 8, WHOLE_MODEL, token(4096.0));
    assert_eq!(at_4k.matmul.hbm_bytes, 17_378_050_048.0);
    assert_eq!(at_4k.attention.hbm_bytes, 167_772_160.0);
    // FLOPs: 2 per weight read (8,689,025,024 weights) plus attention
    // 80 x 4 x 4096 x 8 heads x 128 = 1,342,177,280.
    assert_eq!(at_4k.matmul.flops, 2.0 * 8_689_025_024.0);
    assert_eq!(at_4k.attention.flops, 1_342_177_280.0);
}

#[test]
fn tp16_replicates_the_70b_kv_heads() {
    // 8 KV heads over 16 ranks: each rank still holds one whole KV head.
    let m = ModelShape::llama_3_3_70b_bf16();
    assert_eq!(kv_heads_per_rank(&m, 16), 1.0);
    assert_eq!(kv_heads_per_rank(&m, 4), 2.0);
    assert_eq!(kv_cache_bytes_per_layer(&m, 16, 1.0), 512.0);
}

#[test]
fn all_reduce_of_a_2k_x_8192_bf16_activation_over_16_ranks_on_a_50_gb_s_link() {
    // bytes = 2048 x 8192 x 2 = 33,554,432.
    // bandwidth term: 2 x 15/16 x 33,554,432 / 50e9 = 62,914,560 / 50e9 = 1.2582912 ms.
    // latency term: 2 x 15 x 5 us = 0.15 ms.  Total 1.4082912 ms.
    let link = Link {
        bytes_per_s: 50e9,
        latency_s: 5e-6,
    };
    let got = ring_all_reduce_seconds(2048.0 * 8192.0 * 2.0, 16, link);
    assert!(close(got, 1.4082912e-3), "{got}");
    assert_eq!(ring_all_reduce_seconds(1e9, 1, link), 0.0);
}

#[test]
fn a_send_costs_its_latency_plus_its_bytes_over_the_bandwidth() {
    // 8192 x 4 bytes over 50 GB/s: 0.65536 us, + 5 us.
    let link = Link {
        bytes_per_s: 50e9,
        latency_s: 5e-6,
    };
    assert!(close(send_seconds(32768.0, link), 5.65536e-6));
}

#[test]
fn ranks_beyond_the_cores_take_turns() {
    // 3 ranks on 2 cores: one core runs two of them, one after the other.
    assert_eq!(time_slicing_turns(3, 2), 2);
    assert_eq!(time_slicing_turns(2, 2), 1);
    assert_eq!(time_slicing_turns(6, 2), 3);
    assert_eq!(time_slicing_turns(1, 2), 1);
    assert_eq!(time_slicing_turns(0, 2), 1);
}

#[test]
fn busy_ranks_wait_for_turns_or_for_the_hosts_rate() {
    // A rank streams 10 GB/s alone. Two cores giving 20 GB/s together: 2 ranks at once lose
    // nothing, 3 take two turns. Two cores giving 16 GB/s: 2 ranks take 2 x 10 / 16 = 1.25x.
    assert_eq!(host_stretch(1, 2, 10e9, 20e9), 1.0);
    assert_eq!(host_stretch(2, 2, 10e9, 20e9), 1.0);
    assert_eq!(host_stretch(3, 2, 10e9, 20e9), 2.0);
    assert_eq!(host_stretch(2, 2, 10e9, 16e9), 1.25);
    // Cores worth one between them (lent out): 3 ranks do all their work at one rank's rate.
    assert_eq!(host_stretch(3, 2, 10e9, 10e9), 3.0);
    assert_eq!(host_stretch(1, 2, 10e9, 10e9), 1.0);
}

#[test]
fn the_bubble_is_pp_minus_1_over_m_plus_pp_minus_1() {
    // pp=2, m=8: 1/9; pp=16, m=1: 15/16; pp=1: no bubble; pp=4, m=4: 3/7.
    assert!(close(bubble_fraction(2, 8), 1.0 / 9.0));
    assert!(close(bubble_fraction(16, 1), 15.0 / 16.0));
    assert_eq!(bubble_fraction(1, 5), 0.0);
    assert!(close(bubble_fraction(4, 4), 3.0 / 7.0));
    // Equal stages of 1 s: m + pp - 1 turns, of which pp - 1 are the bubble.
    let t = pipeline_seconds(&[1.0; 4], 4);
    assert_eq!(t, 7.0);
    assert!(close((t - 4.0) / t, bubble_fraction(4, 4)));
}

#[test]
fn decode_rounds_follow_the_engines_group_schedule() {
    // The engine splits batch 8 over max(pp, micro-batches) groups.
    assert_eq!(decode_groups(8, None, 1), (1, 8));
    assert_eq!(decode_groups(8, None, 2), (2, 4));
    assert_eq!(decode_groups(8, None, 16), (8, 1));
    assert_eq!(decode_groups(8, Some(4), 2), (4, 2));
    assert_eq!(decode_groups(1, None, 2), (1, 1));
    assert_eq!(decode_groups(8, Some(4), 1), (1, 8));
    // One group waits for its round trip; more groups than stages queue at the slowest.
    assert_eq!(decode_round_seconds(&[1.0, 2.0], 1), 3.0);
    assert_eq!(decode_round_seconds(&[1.0, 2.0], 4), 8.0);
}

#[test]
fn a_tied_lm_head_on_the_embeddings_stage_is_not_counted_twice() {
    let tied = ModelShape {
        tie_word_embeddings: true,
        ..ModelShape::llama_3_3_70b_bf16()
    };
    let untied = ModelShape::llama_3_3_70b_bf16();
    let vocab_bytes = 2.0 * 1_050_673_152.0;
    assert_eq!(
        stage_weight_bytes(&untied, 1, WHOLE_MODEL) - stage_weight_bytes(&tied, 1, WHOLE_MODEL),
        vocab_bytes
    );
    let last = StageSlice {
        layers: 40,
        embedding: false,
        lm_head: true,
    };
    assert_eq!(
        stage_weight_bytes(&tied, 1, last),
        stage_weight_bytes(&untied, 1, last)
    );
}
