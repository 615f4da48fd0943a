//! `engine dist-check` (helper in progress).
