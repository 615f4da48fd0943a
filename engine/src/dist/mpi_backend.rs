//! MPI backend (helper in progress).
