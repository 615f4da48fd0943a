//! Shard layouts at Llama 3.3 70B's MLP shapes (scaled by 1/4 to fit memory: hidden 2048,
//! intermediate 7168): per-rank time of a column-parallel slice (gate/up: W is
//! `(intermediate/tp, hidden)`) and a row-parallel slice (down: W is `(hidden, intermediate/tp)`,
//! followed by an all-reduce of `(tokens, hidden)`), for tp = 1, 2, 4, 8, at decode (1 token) and
//! prefill-chunk (256 tokens) sizes, plus the all-reduce itself across tp ranks in one process
//! (threads: the cost of the reduction's memory traffic and synchronisation, not of a network).
//!
//! `RAYON_NUM_THREADS=1 cargo bench -p shardlab-benches --bench shard_layouts`

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use engine::dist::local::LocalJob;

const HIDDEN: usize = 2048;
const INTERMEDIATE: usize = 7168;

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

fn main() -> Result<()> {
    let device = Device::Cpu;
    println!("70B MLP shapes / 4: hidden {HIDDEN}, intermediate {INTERMEDIATE}; per-rank time, speed-up vs tp=1");
    println!(
        "{:>6} {:>4} {:>22} {:>22} {:>22}",
        "tokens", "tp", "column (gate) ms", "row (down) ms", "all-reduce ms"
    );
    for tokens in [1usize, 256] {
        let reps = if tokens == 1 { 20 } else { 5 };
        let mut base: Option<(f64, f64)> = None;
        for tp in [1usize, 2, 4, 8] {
            let local = INTERMEDIATE / tp;
            let w_col = Tensor::randn(0f32, 0.02, (local, HIDDEN), &device)?;
            let x_col = Tensor::randn(0f32, 1.0, (tokens, HIDDEN), &device)?;
            let w_row = Tensor::randn(0f32, 0.02, (HIDDEN, local), &device)?;
            let x_row = Tensor::randn(0f32, 1.0, (tokens, local), &device)?;
            let col = time(reps, || {
                kernels::linear_small_batch(&x_col, &w_col)
                    .map(|_| ())
                    .map_err(Into::into)
            })?;
            let row = time(reps, || {
                kernels::linear_small_batch(&x_row, &w_row)
                    .map(|_| ())
                    .map_err(Into::into)
            })?;
            let reduce = if tp == 1 {
                0.0
            } else {
                let per_rank = LocalJob::new(tp, 1).run(|ctx| {
                    let mut data = vec![1f32; tokens * HIDDEN];
                    time(reps, || Ok(ctx.tp_group.all_reduce_sum(&mut data)?)).unwrap_or(f64::NAN)
                });
                per_rank.into_iter().fold(0.0, f64::max)
            };
            let (c1, r1) = *base.get_or_insert((col, row));
            println!(
                "{tokens:>6} {tp:>4} {:>12.3} ({:>5.2}x) {:>12.3} ({:>5.2}x) {:>22.3}",
                col * 1e3,
                c1 / col,
                row * 1e3,
                r1 / row,
                reduce * 1e3
            );
        }
    }
    Ok(())
}
