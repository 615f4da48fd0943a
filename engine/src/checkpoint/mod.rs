//! Model weights on disk: reading safetensors (one file or an index of shards, memory-mapped),
//! writing them, importing GGUF files and synthesising random-weight models at real shapes.

pub mod gguf;
pub mod reader;
pub mod synth;
pub mod writer;

pub use reader::Checkpoint;
