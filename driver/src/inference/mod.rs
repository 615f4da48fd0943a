//! The inference side of the driver: the OpenAI-compatible client, the embedded `engine serve`,
//! and the baseline run over the prompt table.

mod api_types;
pub mod baseline;
pub mod embedded;
pub mod limits;
pub mod local_runner;
pub mod openai_client;
mod sse;

pub use api_types::{TokenLogprob, Usage};
