//! The data side: the prompt sets, their answers, their generator and the prompt table.

pub mod answers;
pub mod generator;
pub mod prompt_file;
pub mod prompts;
pub mod table;
pub mod tokens;
