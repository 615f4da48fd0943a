//! Chat template (in progress).
