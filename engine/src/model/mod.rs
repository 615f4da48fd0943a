//! The Llama model, written once and unaware of how it is launched: embedding, decoder blocks
//! (attention + SwiGLU MLP with pre-RMSNorm and residuals), final norm and lm_head.
//!
//! Sequences of different lengths are packed along the token dimension ("varlen" batching, as in
//! vLLM): every linear runs on all tokens of all sequences at once, and attention runs per sequence
//! against that sequence's own KV cache. A batch therefore needs no padding, and a sequence's
//! result does not depend on what else is in the batch.

pub mod attention;
pub mod block;
pub mod layers;
pub mod llama;
pub mod mlp;
pub mod parallel;
pub mod rope;

pub use llama::{split_layers, Llama, SequenceBatch, ShardPlan, ShardedLogits, StageOutput};
