//! The fused CPU kernels against the unfused candle operations they replace: within 1e-5 in f32
//! (the bar), and within bf16's rounding in bf16.

use candle_core::{DType, Device, Tensor, D};

const F32_TOLERANCE: f32 = 1e-5;

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// `max |a - b| / max(1, |b|)`.
fn max_relative_diff(a: &Tensor, b: &Tensor) -> f32 {
    let b = b.to_dtype(DType::F32).unwrap();
    let scale = b.abs().unwrap().maximum(1f32).unwrap();
    ((a.to_dtype(DType::F32).unwrap() - &b)
        .unwrap()
        .abs()
        .unwrap()
        / scale)
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    // Seeded, so a failure reproduces: uniform in [-1, 1).
    let mut data = vec![0f32; shape.iter().product()];
    kernels::cpu::random::fill_uniform(&mut data, seed, 0.0, 1.0);
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// The shapes the engine meets: one decode row, a handful, and prefill-sized blocks (which take
/// the parallel path), at SmolLM2's and Llama-70B-per-rank widths.
const ROW_CASES: [(usize, usize); 5] = [(1, 576), (3, 64), (16, 1024), (40, 576), (200, 8192)];

#[test]
fn add_rms_norm_matches_add_then_candle_rms_norm() {
    for (seed, &(rows, dim)) in ROW_CASES.iter().enumerate() {
        let seed = seed as u64;
        let (x, delta) = (randn(&[rows, dim], seed), randn(&[rows, dim], seed + 100));
        let weight = (randn(&[dim], seed + 200) + 1.0).unwrap();
        let (sum, normed) = kernels::add_rms_norm(&x, &delta, &weight, 1e-5).unwrap();
        let want_sum = (&x + &delta).unwrap();
        let want_normed = candle_nn::ops::rms_norm(&want_sum, &weight, 1e-5).unwrap();
        assert_eq!(sum.dims(), &[rows, dim]);
        assert_eq!(normed.dims(), &[rows, dim]);
        let ds = max_diff(&sum, &want_sum);
        assert!(ds == 0.0, "({rows}, {dim}): sum differs by {ds}");
        // Relative to the value: at 8192 wide, f32 sums of squares taken in different orders
        // (candle one running sum, ours eight lanes) differ by a few parts in 1e6.
        let dn = max_relative_diff(&normed, &want_normed);
        assert!(
            dn < F32_TOLERANCE,
            "({rows}, {dim}): normed differs by {dn}"
        );
        // And ours is as close to the exact result as candle's (up to a rounding or two).
        let exact = {
            let s = want_sum.to_dtype(DType::F64).unwrap();
            let mean_square = s.sqr().unwrap().mean_keepdim(1).unwrap();
            let scale = (mean_square + 1e-5)
                .unwrap()
                .sqrt()
                .unwrap()
                .recip()
                .unwrap();
            s.broadcast_mul(&scale)
                .unwrap()
                .broadcast_mul(&weight.to_dtype(DType::F64).unwrap())
                .unwrap()
        };
        let (ours, theirs) = (max_diff(&normed, &exact), max_diff(&want_normed, &exact));
        assert!(
            ours <= theirs * 1.5 + 5e-7,
            "({rows}, {dim}): ours {ours}, candle {theirs}"
        );
    }
}

#[test]
fn add_rms_norm_in_bf16_is_within_rounding() {
    let (rows, dim) = (5, 576);
    let x = randn(&[rows, dim], 7).to_dtype(DType::BF16).unwrap();
    let delta = randn(&[rows, dim], 8).to_dtype(DType::BF16).unwrap();
    let weight = randn(&[dim], 9).to_dtype(DType::BF16).unwrap();
    let (sum, normed) = kernels::add_rms_norm(&x, &delta, &weight, 1e-5).unwrap();
    assert_eq!(sum.dtype(), DType::BF16);
    let want_sum = (&x + &delta).unwrap();
    let want = candle_nn::ops::rms_norm(
        &want_sum.to_dtype(DType::F32).unwrap(),
        &weight.to_dtype(DType::F32).unwrap(),
        1e-5,
    )
    .unwrap();
    assert_eq!(max_diff(&sum, &want_sum), 0.0);
    // bf16 keeps 8 bits of mantissa: relative error 2^-8 of values of order 1-3.
    assert!(max_diff(&normed, &want) < 3.0 / 128.0);
}

#[test]
fn swiglu_matches_silu_times_up() {
    for (seed, &(rows, dim)) in ROW_CASES.iter().enumerate() {
        let seed = seed as u64;
        let gate = (randn(&[rows, dim], seed) * 6.0).unwrap();
        let up = randn(&[rows, dim], seed + 50);
        let ours = kernels::swiglu(&gate, &up).unwrap();
        let want = (candle_nn::ops::silu(&gate).unwrap() * &up).unwrap();
        let d = max_diff(&ours, &want);
        assert!(d < F32_TOLERANCE, "({rows}, {dim}): {d}");
    }
}

#[test]
fn rope_in_place_matches_candle_rope_thd() {
    for &(tokens, heads, head_dim) in &[(1, 9, 64), (7, 3, 64), (40, 8, 128), (2, 2, 2)] {
        let x = randn(&[1, tokens, heads, head_dim], tokens as u64);
        let angles = (randn(&[tokens, head_dim / 2], 3) * 40.0).unwrap();
        let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
        let want = candle_nn::rotary_emb::rope_thd(&x, &cos, &sin).unwrap();
        let ours = x.copy().unwrap();
        kernels::rope_in_place(&ours, &cos, &sin).unwrap();
        let d = max_diff(&ours, &want);
        assert!(d < F32_TOLERANCE, "({tokens}, {heads}, {head_dim}): {d}");
        // The input was rotated where it lies, and x itself is untouched.
        assert!(max_diff(&x, &want) > 1e-3);
    }
}

#[test]
fn rope_in_place_rejects_mismatched_tables() {
    let x = randn(&[4, 2, 8], 1);
    let cos = randn(&[3, 4], 2);
    let err = kernels::rope_in_place(&x, &cos, &cos)
        .unwrap_err()
        .to_string();
    assert!(err.contains("rope-in-place"), "{err}");
}

#[test]
fn decode_attention_matches_repeat_kv_softmax_matmul() {
    // (heads, kv_heads, head_dim, capacity, len): MHA, GQA as SmolLM2 (9/3) and Llama 70B at
    // tp=8 (8 query heads on 1 KV head), and a long cache.
    for &(nh, nkv, hd, cap, len) in &[
        (4, 4, 32, 8, 8),
        (9, 3, 64, 64, 37),
        (8, 1, 128, 256, 200),
        (4, 2, 64, 4096, 3000),
    ] {
        let q = randn(&[nh, hd], nh as u64);
        let keys = randn(&[nkv, cap, hd], 11);
        let values = randn(&[nkv, cap, hd], 12);
        let scale = 1.0 / (hd as f64).sqrt();
        let ours = kernels::decode_attention(&q, &keys, &values, len, scale as f32).unwrap();
        // Unfused: repeat each KV head for its group, scores, softmax, weighted values.
        let group = nh / nkv;
        let expand = |t: &Tensor| {
            t.narrow(1, 0, len)
                .unwrap()
                .unsqueeze(1)
                .unwrap()
                .expand((nkv, group, len, hd))
                .unwrap()
                .reshape((nh, len, hd))
                .unwrap()
        };
        let (k, v) = (expand(&keys), expand(&values));
        let scores = (q.unsqueeze(1).unwrap().matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
        let probs = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
        let want = probs.matmul(&v).unwrap().reshape((1, nh * hd)).unwrap();
        let d = max_diff(&ours, &want);
        assert!(d < F32_TOLERANCE, "({nh}, {nkv}, {hd}, {cap}, {len}): {d}");
    }
}
