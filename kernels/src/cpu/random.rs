//! Fast, reproducible pseudo-random fills for synthetic weights: SplitMix64 streams, one per
//! fixed-size chunk, so the result does not depend on how many threads fill it.

use rayon::prelude::*;

const CHUNK: usize = 1 << 16;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` with values uniform in `[center - half_width, center + half_width)`, determined by
/// `seed` alone.
pub fn fill_uniform(out: &mut [f32], seed: u64, center: f32, half_width: f32) {
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(chunk, values)| {
            let mut state = seed ^ (chunk as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
            for v in values {
                // 24 random bits -> [0, 1).
                let unit = (splitmix64(&mut state) >> 40) as f32 / (1u32 << 24) as f32;
                *v = center + half_width * (2.0 * unit - 1.0);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_within_bounds() {
        let mut a = vec![0f32; 200_000];
        let mut b = vec![0f32; 200_000];
        fill_uniform(&mut a, 7, 1.0, 0.5);
        fill_uniform(&mut b, 7, 1.0, 0.5);
        assert_eq!(a, b);
        assert!(a.iter().all(|&v| (0.5..1.5).contains(&v)));
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        assert!((mean - 1.0).abs() < 0.01, "{mean}");
        fill_uniform(&mut b, 8, 1.0, 0.5);
        assert_ne!(a, b);
    }
}
