//! CPU kernels: the reference implementations of the fused operations (their CUDA twins are
//! tested against them) and the CPU engine's hot loops.

pub mod attention;
pub mod element;
pub mod gemv;
pub mod norm;
pub mod random;
pub mod rope;
pub mod swiglu;
