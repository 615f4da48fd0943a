//! shardlab's inference engine: Llama checkpoints on candle tensors, CPU or CUDA.
//!
//! The engine loads a Hugging Face Llama folder (config.json, safetensors, tokenizer.json, chat
//! template), runs batched prefill and incremental decode with a KV cache, and samples tokens with
//! per-token logprobs, in batch jobs or behind an OpenAI-compatible HTTP server with continuous
//! batching (`serve`). It also converts GGUF files into HF folders and writes synthetic models at
//! real shapes, and measures its kernels' and communicator's rates for the driver's performance model
//! (`calibrate`). Not for: orchestration, Slurm or scoring; those live in the `driver` crate.

pub mod calibrate;
pub mod chat_template;
pub mod checkpoint;
pub mod config;
pub mod dist;
pub mod error;
pub mod fsutil;
pub mod model;
pub mod runtime;
pub mod serve;
pub mod tokenizer;

pub use error::{EngineError, Result};
