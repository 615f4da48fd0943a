//! The fused element-wise kernels against the unfused candle ops they replace, at SmolLM2's
//! decode (1 row) and prefill (512 rows) widths and at Llama 3.3 70B's per-rank widths at tp=8:
//! add + RMSNorm (hidden), SwiGLU (intermediate), rotary embedding (heads x head_dim). Both sides
//! alternate in one run, so the ratio holds on a busy machine.
//!
//! `RAYON_NUM_THREADS=1 cargo bench -p shardlab-benches --bench fused_ops`

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};

/// Median seconds of `f` over `reps` runs after one warm-up.
fn time(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        samples.push(start.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[reps / 2])
}

fn random(shape: &[usize], seed: u64) -> Result<Tensor> {
    let mut data = vec![0f32; shape.iter().product()];
    kernels::cpu::random::fill_uniform(&mut data, seed, 0.0, 1.0);
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
}

fn report(name: &str, rows: usize, unfused: f64, fused: f64) {
    println!(
        "{name:<14} {rows:>4} rows: unfused {:>9.1} us, fused {:>9.1} us, {:.2}x",
        unfused * 1e6,
        fused * 1e6,
        unfused / fused
    );
}

fn main() -> Result<()> {
    // (label, hidden, intermediate per rank, heads per rank, kv heads per rank, head_dim)
    let shapes = [
        ("SmolLM2", 576, 1536, 9, 3, 64),
        ("70B tp=8", 8192, 3584, 8, 1, 128),
    ];
    for (label, hidden, inter, heads, kv_heads, head_dim) in shapes {
        println!(
            "{label}: hidden {hidden}, intermediate {inter}, heads {heads}/{kv_heads} x {head_dim}"
        );
        for rows in [1usize, 512] {
            let reps = if rows == 1 { 2000 } else { 30 };
            let (x, delta) = (random(&[rows, hidden], 1)?, random(&[rows, hidden], 2)?);
            let weight = random(&[hidden], 3)?;
            let unfused = time(reps, || {
                let sum = (&x + &delta)?;
                candle_nn::ops::rms_norm(&sum, &weight, 1e-5)?;
                Ok(())
            })?;
            let fused = time(reps, || {
                kernels::add_rms_norm(&x, &delta, &weight, 1e-5)?;
                Ok(())
            })?;
            report("add+rms_norm", rows, unfused, fused);

            let (gate, up) = (random(&[rows, inter], 4)?, random(&[rows, inter], 5)?);
            let unfused = time(reps, || {
                (candle_nn::ops::silu(&gate)? * &up)?;
                Ok(())
            })?;
            let fused = time(reps, || {
                kernels::swiglu(&gate, &up)?;
                Ok(())
            })?;
            report("swiglu", rows, unfused, fused);

            let q = random(&[rows, heads + 2 * kv_heads, head_dim], 6)?;
            let angles = random(&[rows, head_dim / 2], 7)?;
            let (cos, sin) = (angles.cos()?, angles.sin()?);
            let q4 = q.unsqueeze(0)?;
            let unfused = time(reps, || {
                candle_nn::rotary_emb::rope_thd(&q4, &cos, &sin)?;
                Ok(())
            })?;
            // In place on a fresh copy each time, as the engine rotates each projection's output
            // once; the copy is timed separately and taken off.
            let copy = time(reps, || {
                q.copy()?;
                Ok(())
            })?;
            let fused = time(reps, || {
                kernels::rope_in_place(&q.copy()?, &cos, &sin)?;
                Ok(())
            })? - copy;
            report("rope", rows, unfused, fused.max(1e-9));
        }
    }
    Ok(())
}
