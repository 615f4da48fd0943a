//! Shared helpers for the shardlab benchmarks.
