//! In-process backend (helper in progress).
