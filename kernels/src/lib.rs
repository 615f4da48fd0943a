//! Fused compute kernels for the shardlab engine.
//!
//! Each kernel has a CPU implementation that doubles as the reference for its CUDA twin (behind the
//! `cuda` feature, added with the GPU path). Not for: model structure or parallelism, which live in
//! the engine.
