//! The `driver` subcommands that are more than a few lines.

pub mod baseline;
pub mod calibrate;
pub mod experiment;
pub mod prompts;
