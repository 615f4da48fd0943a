//! SwiGLU's gate (Shazeer, arXiv:2002.05202): `silu(gate) * up` in one pass, instead of a silu
//! pass that writes a temporary and a multiply that reads it back.

use rayon::prelude::*;

use super::element::Element;

/// Elements at or above which the work is split over rayon tasks (prefill's wide activations).
const PARALLEL_ELEMENTS: usize = 1 << 16;
const TASK_ELEMENTS: usize = 1 << 14;

/// `out[i] = gate[i] / (1 + exp(-gate[i])) * up[i]`.
pub fn swiglu<T: Element>(gate: &[T], up: &[T], out: &mut [T]) {
    assert_eq!(gate.len(), up.len(), "swiglu: gate and up differ in length");
    assert_eq!(out.len(), gate.len(), "swiglu: out differs from gate");
    let run = |((g, u), o): ((&[T], &[T]), &mut [T])| {
        for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
            let g = g.to_f32();
            *o = T::from_f32(g / (1.0 + (-g).exp()) * u.to_f32());
        }
    };
    if gate.len() >= PARALLEL_ELEMENTS {
        gate.par_chunks(TASK_ELEMENTS)
            .zip(up.par_chunks(TASK_ELEMENTS))
            .zip(out.par_chunks_mut(TASK_ELEMENTS))
            .for_each(run);
    } else {
        run(((gate, up), out));
    }
}
