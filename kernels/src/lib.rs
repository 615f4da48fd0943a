//! Fused compute kernels for the shardlab engine.
//!
//! Each kernel is a plain function on slices (`cpu`) plus a candle custom op that applies it to
//! tensors (`ops`); with the `cuda` feature the ops also run on CUDA tensors (`cuda`, PTX from
//! `src/cuda/fused.cu`), and the CPU functions are the reference the CUDA kernels are tested
//! against. Not for: model structure or parallelism, which live in the engine.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod ops;
pub mod selfcheck;

pub use ops::{
    add_rms_norm, decode_attention, decode_attention_supported, linear_small_batch, rope_in_place,
    swiglu,
};
