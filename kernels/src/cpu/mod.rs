//! CPU kernels.

pub mod attention;
pub mod gemv;
