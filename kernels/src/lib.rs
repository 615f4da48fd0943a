//! Fused compute kernels for the shardlab engine.
//!
//! Each kernel is a plain function on slices plus a candle custom op that applies it to tensors.
//! The CPU versions are the reference for their CUDA twins (behind the `cuda` feature, added with
//! the GPU path). Not for: model structure or parallelism, which live in the engine.

pub mod cpu;
pub mod ops;

pub use ops::{decode_attention, decode_attention_supported, linear_small_batch};
