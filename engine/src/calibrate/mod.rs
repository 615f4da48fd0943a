//! `engine calibrate`: what this machine's ranks can do, measured with the engine's own kernels
//! and communicator, for the driver's performance model (`driver calibrate` runs it and writes a
//! `[hardware]` preset).
//!
//! - [`compute`]: the prefill GEMM rate (candle's matmul, FLOP/s), the decode GEMV's weight
//!   streaming rate (the engine's streaming kernel over weights far larger than the caches,
//!   bytes/s) and the decode-attention kernel's rate (FLOP/s), on the threads this process has.
//! - [`layers`]: the fixed cost of a decoder layer in decode beyond reading its weights.
//! - [`comm`]: MPI point-to-point latency and bandwidth between ranks 0 and 1, and the latency of
//!   a small all-reduce over the whole world, as the tensor-parallel layers make it.
//!
//! Every figure is a median over repeats, so a brief disturbance does not set it. Not for:
//! benchmarking the engine end to end (`benches/`), or deciding anything at run time.

pub mod comm;
pub mod compute;
pub mod layers;

use std::time::Instant;

/// Seconds `f` takes, the median of `repeats` runs after one warm-up run.
pub fn median_seconds(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    median(&mut times)
}

/// The median (the upper middle value for an even count); 0 for no values.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(median(&mut []), 0.0);
    }
}
