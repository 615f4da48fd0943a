//! The collective and point-to-point operations the engine needs, over a group of ranks.
//!
//! Buffers are host `f32` slices (and bytes for the control plane): on CPU that is the tensor's
//! own storage; device tensors are staged through the host by the MPI backend (NCCL, later, works
//! on device buffers directly).

use std::time::Duration;

/// A communication failure: which operation, on which group, and why.
#[derive(Debug, thiserror::Error)]
#[error("{op} on {group} (rank {rank} of {size}): {message}")]
pub struct DistError {
    pub op: &'static str,
    pub group: String,
    pub rank: usize,
    pub size: usize,
    pub message: String,
}

/// A group of ranks (the world, the TP group of a stage, ...). Ranks are indices in the group.
pub trait Communicator {
    /// This rank's index in the group.
    fn rank(&self) -> usize;
    /// Number of ranks in the group.
    fn size(&self) -> usize;
    /// Element-wise sum over the group, in place on every rank.
    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), DistError>;
    /// Every rank's `data` (equal lengths), concatenated in rank order, on every rank.
    fn all_gather(&self, data: &[f32]) -> Result<Vec<f32>, DistError>;
    /// `root`'s bytes on every rank (other ranks' `data` is replaced, whatever its length).
    fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>) -> Result<(), DistError>;
    /// Blocking send of `data` to `dest`.
    fn send(&self, dest: usize, data: &[f32]) -> Result<(), DistError>;
    /// Blocking receive from `src` into `data` (the length must match what was sent).
    fn recv(&self, src: usize, data: &mut [f32]) -> Result<(), DistError>;
    /// Bytes to `dest` (any length).
    fn send_bytes(&self, dest: usize, data: &[u8]) -> Result<(), DistError>;
    /// Bytes from `src` (any length).
    fn recv_bytes(&self, src: usize) -> Result<Vec<u8>, DistError>;
    fn barrier(&self) -> Result<(), DistError>;
    /// Name for errors and traces ("world", "tp[stage 1]").
    fn name(&self) -> &str;
}

/// How long a blocking collective may take before the job is brought down.
pub const DEFAULT_COMM_TIMEOUT: Duration = Duration::from_secs(300);
