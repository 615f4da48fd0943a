//! Communication rates over the engine's communicator: ping-pong latency and bandwidth between
//! ranks 0 and 1 (Hockney's α–β model), and the time of a small all-reduce over every rank, the
//! operation tensor parallelism makes twice per layer.

use std::time::Instant;

use serde::Serialize;

use super::median;
use crate::dist::Communicator;
use crate::error::{EngineError, Result};

/// What to measure, and how big.
#[derive(Debug, Clone, Copy)]
pub struct CommOptions {
    /// f32 values of the small messages and of the all-reduce (about one token's activation).
    pub small_values: usize,
    /// f32 values of the large ping-pong message, which sets the bandwidth.
    pub large_values: usize,
    /// Timed round trips or all-reduces (the median is kept).
    pub repeats: usize,
}

impl Default for CommOptions {
    fn default() -> Self {
        Self {
            small_values: 1024,
            large_values: 1 << 22,
            repeats: 200,
        }
    }
}

/// The rates of one world, as rank 0 measured them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommRates {
    pub ranks: usize,
    /// Half a round trip of a small message between ranks 0 and 1.
    pub latency_s: f64,
    /// Bytes of a large message over (half its round trip minus the latency).
    pub bytes_per_s: f64,
    /// One all-reduce of `small_values` f32 over every rank.
    pub all_reduce_s: f64,
    pub small_values: usize,
    pub large_values: usize,
}

/// Measures on `world` (at least two ranks); every rank must call it, rank 0's figures count.
pub fn measure(world: &dyn Communicator, options: CommOptions) -> Result<CommRates> {
    if world.size() < 2 {
        return Err(EngineError::Request(
            "engine calibrate --part comm needs at least two ranks (mpirun -n 2 or more)".into(),
        ));
    }
    let small = ping_pong(world, options.small_values, options.repeats)?;
    let large = ping_pong(world, options.large_values, (options.repeats / 20).max(3))?;
    let large_bytes = (options.large_values * 4) as f64;
    let bytes_per_s = large_bytes / (large - small).max(f64::MIN_POSITIVE);

    let mut data = vec![1f32; options.small_values];
    world.barrier()?;
    let mut times = Vec::with_capacity(options.repeats);
    for _ in 0..options.repeats {
        let start = Instant::now();
        world.all_reduce_sum(&mut data)?;
        times.push(start.elapsed().as_secs_f64());
        // Keep the values finite: the sum grows by the world size every time.
        data.iter_mut().for_each(|v| *v = 1.0);
    }
    world.barrier()?;
    Ok(CommRates {
        ranks: world.size(),
        latency_s: small,
        bytes_per_s,
        all_reduce_s: median(&mut times),
        small_values: options.small_values,
        large_values: options.large_values,
    })
}

/// Half the median round trip of `values` f32 between ranks 0 and 1; the others wait.
fn ping_pong(world: &dyn Communicator, values: usize, repeats: usize) -> Result<f64> {
    let mut buffer = vec![0f32; values];
    world.barrier()?;
    let mut times = Vec::with_capacity(repeats);
    for i in 0..repeats + 1 {
        match world.rank() {
            0 => {
                let start = Instant::now();
                world.send(1, &buffer)?;
                world.recv(1, &mut buffer)?;
                // The first round trip sets up the connection: not timed.
                if i > 0 {
                    times.push(start.elapsed().as_secs_f64() / 2.0);
                }
            }
            1 => {
                world.recv(0, &mut buffer)?;
                world.send(0, &buffer)?;
            }
            _ => {}
        }
    }
    world.barrier()?;
    Ok(median(&mut times))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::local::LocalJob;

    #[test]
    fn threads_as_ranks_measure_positive_figures() {
        let rates = LocalJob::new(3, 1).run(|ctx| {
            measure(
                ctx.world.as_ref(),
                CommOptions {
                    small_values: 16,
                    large_values: 1 << 16,
                    repeats: 20,
                },
            )
            .unwrap()
        });
        let r = &rates[0];
        assert_eq!(r.ranks, 3);
        assert!(
            r.latency_s > 0.0 && r.bytes_per_s > 0.0 && r.all_reduce_s > 0.0,
            "{r:?}"
        );
    }
}
