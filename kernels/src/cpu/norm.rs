//! RMSNorm with the residual add fused in: one pass over each row instead of three (add, square
//! and sum, scale), for the pre-norm decoder's `h = x + sublayer(x); norm(h)`.

use rayon::prelude::*;

use super::element::{Element, PARALLEL_ROWS};

/// For each row of width `dim`: `sum = x + delta` (rounded to `T`, as the unfused add would
/// store it) and `normed = sum / sqrt(mean(sum^2) + eps) * weight`.
///
/// `x`, `delta`, `sum` and `normed` are `(rows, dim)`; `weight` is `(dim)`.
pub fn add_rms_norm<T: Element>(
    x: &[T],
    delta: &[T],
    weight: &[T],
    eps: f32,
    sum: &mut [T],
    normed: &mut [T],
) {
    let dim = weight.len();
    assert!(dim > 0, "add_rms_norm: empty rows");
    assert_eq!(x.len() % dim, 0, "add_rms_norm: x is not (rows, {dim})");
    assert_eq!(delta.len(), x.len(), "add_rms_norm: delta differs from x");
    assert_eq!(sum.len(), x.len(), "add_rms_norm: sum differs from x");
    assert_eq!(normed.len(), x.len(), "add_rms_norm: normed differs from x");
    let row = |(((x, d), s), n): RowParts<'_, T>| add_rms_norm_row(x, d, weight, eps, s, n);
    if x.len() / dim >= PARALLEL_ROWS {
        x.par_chunks(dim)
            .zip(delta.par_chunks(dim))
            .zip(sum.par_chunks_mut(dim))
            .zip(normed.par_chunks_mut(dim))
            .for_each(row);
    } else {
        x.chunks(dim)
            .zip(delta.chunks(dim))
            .zip(sum.chunks_mut(dim))
            .zip(normed.chunks_mut(dim))
            .for_each(row);
    }
}

/// One row's x, delta, sum and normed, as the zipped row iterators yield them.
type RowParts<'a, T> = (((&'a [T], &'a [T]), &'a mut [T]), &'a mut [T]);

/// RMSNorm alone (no residual): `normed = x / sqrt(mean(x^2) + eps) * weight`, row by row.
pub fn rms_norm<T: Element>(x: &[T], weight: &[T], eps: f32, normed: &mut [T]) {
    let dim = weight.len();
    assert!(dim > 0, "rms_norm: empty rows");
    assert_eq!(x.len() % dim, 0, "rms_norm: x is not (rows, {dim})");
    assert_eq!(normed.len(), x.len(), "rms_norm: normed differs from x");
    for (x, n) in x.chunks(dim).zip(normed.chunks_mut(dim)) {
        let rms = (sum_of_squares(x) / dim as f32 + eps).sqrt();
        scale_row(x, weight, rms, n);
    }
}

#[inline]
fn add_rms_norm_row<T: Element>(
    x: &[T],
    delta: &[T],
    weight: &[T],
    eps: f32,
    sum: &mut [T],
    normed: &mut [T],
) {
    // One pass adds and accumulates the squares, in eight lanes over exact chunks so it
    // vectorises (a single running f32 sum cannot be reordered, so it would not).
    let mut lanes = [0f32; LANES];
    let mut tail = 0f32;
    let split = x.len() - x.len() % LANES;
    for ((s, a), b) in sum[..split]
        .chunks_exact_mut(LANES)
        .zip(x[..split].chunks_exact(LANES))
        .zip(delta[..split].chunks_exact(LANES))
    {
        for j in 0..LANES {
            let v = T::from_f32(a[j].to_f32() + b[j].to_f32());
            s[j] = v;
            let v = v.to_f32();
            lanes[j] += v * v;
        }
    }
    for ((s, a), b) in sum[split..]
        .iter_mut()
        .zip(&x[split..])
        .zip(&delta[split..])
    {
        let v = T::from_f32(a.to_f32() + b.to_f32());
        *s = v;
        tail += v.to_f32() * v.to_f32();
    }
    let total = lanes.iter().sum::<f32>() + tail;
    let rms = (total / sum.len() as f32 + eps).sqrt();
    scale_row(sum, weight, rms, normed);
}

/// Lanes of the vectorised sums: eight f32 (one AVX register).
const LANES: usize = 8;

/// `sum(v^2)` in eight lanes.
#[inline]
fn sum_of_squares<T: Element>(values: &[T]) -> f32 {
    let mut lanes = [0f32; LANES];
    let split = values.len() - values.len() % LANES;
    for chunk in values[..split].chunks_exact(LANES) {
        for j in 0..LANES {
            let v = chunk[j].to_f32();
            lanes[j] += v * v;
        }
    }
    let tail: f32 = values[split..]
        .iter()
        .map(|v| v.to_f32() * v.to_f32())
        .sum();
    lanes.iter().sum::<f32>() + tail
}

/// `normed = x / rms * weight`: divided, as candle does, rather than multiplied by the inverse
/// (one rounding fewer); the loop vectorises either way.
#[inline]
fn scale_row<T: Element>(x: &[T], weight: &[T], rms: f32, normed: &mut [T]) {
    for ((n, &v), &w) in normed.iter_mut().zip(x).zip(weight) {
        *n = T::from_f32(v.to_f32() / rms * w.to_f32());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition_in_f64() {
        let dim = 13;
        let x: Vec<f32> = (0..3 * dim).map(|i| (i as f32 * 0.37).sin()).collect();
        let d: Vec<f32> = (0..3 * dim).map(|i| (i as f32 * 0.11).cos()).collect();
        let w: Vec<f32> = (0..dim).map(|i| 0.5 + i as f32 * 0.1).collect();
        let (mut s, mut n) = (vec![0f32; x.len()], vec![0f32; x.len()]);
        add_rms_norm(&x, &d, &w, 1e-5, &mut s, &mut n);
        for r in 0..3 {
            let row: Vec<f64> = (0..dim)
                .map(|i| x[r * dim + i] as f64 + d[r * dim + i] as f64)
                .collect();
            let ms = row.iter().map(|v| v * v).sum::<f64>() / dim as f64;
            for i in 0..dim {
                let want = row[i] / (ms + 1e-5).sqrt() * w[i] as f64;
                assert!(
                    (n[r * dim + i] as f64 - want).abs() < 1e-5,
                    "row {r} col {i}"
                );
                assert!((s[r * dim + i] as f64 - row[i]).abs() < 1e-6);
            }
        }
    }
}
