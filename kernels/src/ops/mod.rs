//! The kernels as candle operations: each checks its tensors, then runs the CPU kernel
//! (`crate::cpu`) or, with the `cuda` feature, its CUDA twin (`crate::cuda`).

pub mod attention;
pub mod linear;
pub mod norm;
pub mod rope;
pub mod swiglu;

use candle_core::{bail, Layout, Result};

pub use attention::{decode_attention, decode_attention_supported};
pub use linear::{linear_small_batch, SMALL_BATCH_ROWS};
pub use norm::add_rms_norm;
pub use rope::rope_in_place;
pub use swiglu::swiglu;

/// The elements a contiguous layout covers, or an error naming the operation and operand.
pub(crate) fn contiguous<'a, T>(
    data: &'a [T],
    layout: &Layout,
    op: &str,
    operand: &str,
) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: {operand} must be contiguous"),
    }
}

/// Mutable twin of [`contiguous`].
pub(crate) fn contiguous_mut<'a, T>(
    data: &'a mut [T],
    layout: &Layout,
    op: &str,
    operand: &str,
) -> Result<&'a mut [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&mut data[start..end]),
        None => bail!("{op}: {operand} must be contiguous"),
    }
}
