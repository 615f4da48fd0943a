//! The inference side of the driver: the OpenAI-compatible client, the embedded `engine serve`,
//! and the baseline run over the prompt table.

mod api_types;
pub mod baseline;
mod client_error;
pub mod embedded;
pub mod limits;
pub mod local_runner;
pub mod openai_client;
mod retry_after;
mod sse;

pub use api_types::{TokenLogprob, Usage};
