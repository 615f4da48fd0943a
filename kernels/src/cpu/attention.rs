//! Decode attention: one new query token per sequence against its KV cache, with grouped-query
//! heads read straight from the cache (no repeated K/V), scores and softmax in one pass per head.

use super::gemv::dot_portable as dot;

/// Shapes of one decode-attention call.
#[derive(Debug, Clone, Copy)]
pub struct DecodeAttentionShape {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Rows allocated per KV head in the cache buffers.
    pub capacity: usize,
    /// Cached tokens to attend to (the new token's key included).
    pub len: usize,
}

/// `out[h] = softmax(q[h] . K[kv(h)]^T * scale) V[kv(h)]` for every query head `h`, where query
/// heads `h` with `h / group == kv` share KV head `kv`.
///
/// `q` and `out` are `(num_heads, head_dim)`; `keys` and `values` are `(num_kv_heads, capacity,
/// head_dim)` of which the first `len` rows per head are used.
pub fn decode_attention(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    out: &mut [f32],
    shape: DecodeAttentionShape,
    scale: f32,
) {
    let DecodeAttentionShape {
        num_heads,
        num_kv_heads,
        head_dim,
        capacity,
        len,
    } = shape;
    assert!(
        num_kv_heads > 0 && num_heads % num_kv_heads == 0,
        "heads must group evenly"
    );
    assert!(len <= capacity, "len {len} exceeds capacity {capacity}");
    assert_eq!(q.len(), num_heads * head_dim);
    assert_eq!(out.len(), num_heads * head_dim);
    assert_eq!(keys.len(), num_kv_heads * capacity * head_dim);
    assert_eq!(values.len(), keys.len());
    let group = num_heads / num_kv_heads;
    let mut scores = vec![0f32; len];
    for kv in 0..num_kv_heads {
        let k = &keys[kv * capacity * head_dim..][..len * head_dim];
        let v = &values[kv * capacity * head_dim..][..len * head_dim];
        for g in 0..group {
            let h = kv * group + g;
            let qh = &q[h * head_dim..(h + 1) * head_dim];
            let mut max = f32::NEG_INFINITY;
            for (j, s) in scores.iter_mut().enumerate() {
                *s = dot(qh, &k[j * head_dim..(j + 1) * head_dim]) * scale;
                max = max.max(*s);
            }
            let mut total = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                total += *s;
            }
            let oh = &mut out[h * head_dim..(h + 1) * head_dim];
            oh.fill(0.0);
            for (j, s) in scores.iter().enumerate() {
                let p = s / total;
                for (o, &vv) in oh.iter_mut().zip(&v[j * head_dim..(j + 1) * head_dim]) {
                    *o += p * vv;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_attention_with_grouped_heads() {
        let (nh, nkv, hd, cap, len) = (6, 2, 8, 7, 5);
        let f = |i: usize, s: usize| ((i * 37 + s * 11) % 17) as f32 / 8.0 - 1.0;
        let q: Vec<f32> = (0..nh * hd).map(|i| f(i, 1)).collect();
        let keys: Vec<f32> = (0..nkv * cap * hd).map(|i| f(i, 2)).collect();
        let values: Vec<f32> = (0..nkv * cap * hd).map(|i| f(i, 3)).collect();
        let mut out = vec![0f32; nh * hd];
        let shape = DecodeAttentionShape {
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim: hd,
            capacity: cap,
            len,
        };
        decode_attention(&q, &keys, &values, &mut out, shape, 0.3);
        for h in 0..nh {
            let kv = h / (nh / nkv);
            let scores: Vec<f64> = (0..len)
                .map(|j| {
                    (0..hd)
                        .map(|d| (q[h * hd + d] * keys[(kv * cap + j) * hd + d]) as f64)
                        .sum::<f64>()
                        * 0.3
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::MIN, f64::max);
            let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = exps.iter().sum();
            for d in 0..hd {
                let expected: f64 = (0..len)
                    .map(|j| exps[j] / total * values[(kv * cap + j) * hd + d] as f64)
                    .sum();
                assert!(
                    (out[h * hd + d] as f64 - expected).abs() < 1e-5,
                    "head {h} dim {d}"
                );
            }
        }
    }
}
