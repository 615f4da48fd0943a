//! Rotary position embedding (RoFormer, arXiv:2104.09864) applied in place, in HF's rotate-half
//! layout: the first and second halves of each head are the pairs that rotate together.

use rayon::prelude::*;

use super::element::{Element, PARALLEL_ROWS};

/// Rotates `x` of shape `(tokens, heads, head_dim)` in place by each token's angles:
/// `x1' = x1 cos - x2 sin`, `x2' = x2 cos + x1 sin` for the halves `x1 = x[..d/2]`,
/// `x2 = x[d/2..]`. `cos` and `sin` are `(tokens, head_dim / 2)`.
pub fn rope_in_place<T: Element>(x: &mut [T], cos: &[T], sin: &[T], heads: usize, head_dim: usize) {
    assert!(
        head_dim.is_multiple_of(2) && heads > 0,
        "rope: head_dim {head_dim} must be even"
    );
    let half = head_dim / 2;
    let token_len = heads * head_dim;
    assert_eq!(
        x.len() % token_len,
        0,
        "rope: x is not (tokens, {heads}, {head_dim})"
    );
    let tokens = x.len() / token_len;
    assert_eq!(
        cos.len(),
        tokens * half,
        "rope: cos is not ({tokens}, {half})"
    );
    assert_eq!(sin.len(), cos.len(), "rope: sin differs from cos");
    let token = |(t, x): (usize, &mut [T])| {
        let (c, s) = (&cos[t * half..][..half], &sin[t * half..][..half]);
        for head in x.chunks_mut(head_dim) {
            let (x1, x2) = head.split_at_mut(half);
            for i in 0..half {
                let (a, b) = (x1[i].to_f32(), x2[i].to_f32());
                let (c, s) = (c[i].to_f32(), s[i].to_f32());
                x1[i] = T::from_f32(a * c - b * s);
                x2[i] = T::from_f32(b * c + a * s);
            }
        }
    };
    if tokens >= PARALLEL_ROWS {
        x.par_chunks_mut(token_len).enumerate().for_each(token);
    } else {
        x.chunks_mut(token_len).enumerate().for_each(token);
    }
}
