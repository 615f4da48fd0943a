//! CPU kernels.

pub mod attention;
pub mod gemv;
pub mod random;
