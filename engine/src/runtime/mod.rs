//! Running the model: KV caches, sampling and the generation loop.

pub mod batch_job;
pub mod batcher;
pub mod bench;
pub mod generate;
pub mod kv_cache;
pub mod loaded_model;
pub mod memory;
pub mod pipeline;
pub mod sampling;
pub mod token_choice;

pub use generate::{FinishReason, GenerationOutput, GenerationRequest, Generator, TokenLogprob};
pub use loaded_model::LoadedModel;
pub use sampling::SamplingParams;
