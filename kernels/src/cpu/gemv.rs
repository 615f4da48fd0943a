//! `y = x W^T` for a few rows of `x`: the decode-time linear layer.
//!
//! Decode multiplies one token (or a handful, one per sequence) by every weight matrix, so it is
//! bound by reading the weights from memory. General GEMM libraries pack the weight matrix into a
//! scratch buffer on every call, reading and writing it again; this kernel streams each weight row
//! once, straight from where it lies, and computes the dot products of that row with every row of
//! `x` while it is in L1.

/// Rows of `W` processed together: four independent streams keep the memory system busy.
const ROW_BLOCK: usize = 4;
/// Columns of `W` per pass over the rows of `x`: 4 rows x 1024 f32 = 16 KiB, fits in L1.
const K_CHUNK: usize = 1024;

/// `y[m, n] = sum_k x[m, k] * w[n, k]`; `x` is `(m, k)`, `w` is `(n, k)`, `y` is `(m, n)`, all
/// row-major. Splits the rows of `w` over `threads` rayon tasks.
pub fn matmul_xwt(
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    threads: usize,
) {
    assert_eq!(x.len(), m * k, "x must be (m, k)");
    assert_eq!(w.len(), n * k, "w must be (n, k)");
    assert_eq!(y.len(), m * n, "y must be (m, n)");
    if m == 0 || n == 0 {
        return;
    }
    let threads = threads.max(1).min(n.div_ceil(ROW_BLOCK * 8).max(1));
    if threads == 1 {
        rows(x, w, YPtr(y.as_mut_ptr()), m, k, n, 0, n);
        return;
    }
    // Each task owns a disjoint range of output columns; rows of y are strided, so tasks share
    // the buffer through a raw pointer instead of split slices.
    let per = n.div_ceil(threads).next_multiple_of(ROW_BLOCK);
    let out = YPtr(y.as_mut_ptr());
    rayon::scope(|s| {
        for start in (0..n).step_by(per) {
            let end = (start + per).min(n);
            s.spawn(move |_| rows(x, w, out, m, k, n, start, end));
        }
    });
}

#[derive(Clone, Copy)]
struct YPtr(*mut f32);
// SAFETY: tasks write disjoint columns of y (see `matmul_xwt`).
unsafe impl Send for YPtr {}
unsafe impl Sync for YPtr {}

/// Output columns `start..end` (rows of `w`).
#[allow(clippy::too_many_arguments)]
fn rows(x: &[f32], w: &[f32], y: YPtr, m: usize, k: usize, n: usize, start: usize, end: usize) {
    let mut acc = vec![[0f32; ROW_BLOCK]; m];
    let mut r = start;
    while r < end {
        let block = ROW_BLOCK.min(end - r);
        acc.iter_mut().for_each(|a| *a = [0.0; ROW_BLOCK]);
        let mut k0 = 0;
        while k0 < k {
            let len = K_CHUNK.min(k - k0);
            let wrows: [&[f32]; ROW_BLOCK] = std::array::from_fn(|i| {
                if i < block {
                    &w[(r + i) * k + k0..(r + i) * k + k0 + len]
                } else {
                    &[]
                }
            });
            for (mi, a) in acc.iter_mut().enumerate() {
                let xs = &x[mi * k + k0..mi * k + k0 + len];
                let partial = dot_rows(xs, &wrows, block);
                for i in 0..block {
                    a[i] += partial[i];
                }
            }
            k0 += len;
        }
        for (mi, a) in acc.iter().enumerate() {
            for (i, value) in a.iter().take(block).enumerate() {
                // SAFETY: (mi, r + i) is inside y and inside this task's column range.
                unsafe { *y.0.add(mi * n + r + i) = *value };
            }
        }
        r += block;
    }
}

/// Dot products of `x` with up to four equally long rows.
fn dot_rows(x: &[f32], w: &[&[f32]; ROW_BLOCK], block: usize) -> [f32; ROW_BLOCK] {
    #[cfg(target_arch = "x86_64")]
    {
        if block == ROW_BLOCK
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked above); slices have x.len() elements.
            return unsafe { x86::dot4(x, w) };
        }
    }
    let mut out = [0f32; ROW_BLOCK];
    for i in 0..block {
        out[i] = dot_portable(x, w[i]);
    }
    out
}

/// Eight independent partial sums, which the compiler vectorises.
pub(crate) fn dot_portable(x: &[f32], w: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = x.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            lanes[l] += x[c * 8 + l] * w[c * 8 + l];
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for i in chunks * 8..x.len() {
        sum += x[i] * w[i];
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::ROW_BLOCK;

    /// Four dot products, 16 floats per step with two accumulators per row to hide FMA latency.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4(x: &[f32], w: &[&[f32]; ROW_BLOCK]) -> [f32; ROW_BLOCK] {
        let len = x.len();
        let steps = len / 16;
        let xp = x.as_ptr();
        let wp: [*const f32; ROW_BLOCK] =
            [w[0].as_ptr(), w[1].as_ptr(), w[2].as_ptr(), w[3].as_ptr()];
        let mut a = [_mm256_setzero_ps(); ROW_BLOCK];
        let mut b = [_mm256_setzero_ps(); ROW_BLOCK];
        for s in 0..steps {
            let o = s * 16;
            let x0 = _mm256_loadu_ps(xp.add(o));
            let x1 = _mm256_loadu_ps(xp.add(o + 8));
            for i in 0..ROW_BLOCK {
                a[i] = _mm256_fmadd_ps(_mm256_loadu_ps(wp[i].add(o)), x0, a[i]);
                b[i] = _mm256_fmadd_ps(_mm256_loadu_ps(wp[i].add(o + 8)), x1, b[i]);
            }
        }
        let mut out = [0f32; ROW_BLOCK];
        for i in 0..ROW_BLOCK {
            let v = _mm256_add_ps(a[i], b[i]);
            let hi = _mm256_extractf128_ps(v, 1);
            let lo = _mm256_castps256_ps128(v);
            let s = _mm_add_ps(hi, lo);
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
            let mut sum = _mm_cvtss_f32(s);
            for j in steps * 16..len {
                sum += *xp.add(j) * *wp[i].add(j);
            }
            out[i] = sum;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = (0..k)
                    .map(|t| x[i * k + t] as f64 * w[j * k + t] as f64)
                    .sum::<f64>() as f32;
            }
        }
        y
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32
                    / 1000.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_reference_for_odd_shapes_and_threads() {
        for &(m, k, n) in &[
            (1, 576, 1536),
            (3, 1037, 13),
            (5, 2100, 70),
            (1, 7, 5),
            (16, 64, 33),
        ] {
            let (x, w) = (data(m * k, 1), data(n * k, 2));
            let expected = reference(&x, &w, m, k, n);
            for threads in [1, 3] {
                let mut y = vec![f32::NAN; m * n];
                matmul_xwt(&x, &w, &mut y, m, k, n, threads);
                for (a, b) in y.iter().zip(&expected) {
                    assert!(
                        (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                        "{m}x{k}x{n} t{threads}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
