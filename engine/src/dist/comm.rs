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

/// The group of one rank: every collective is the identity. What a single-rank run reduces over.
#[derive(Debug, Default, Clone, Copy)]
pub struct SoloCommunicator;

impl Communicator for SoloCommunicator {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _data: &mut [f32]) -> Result<(), DistError> {
        Ok(())
    }
    fn all_gather(&self, data: &[f32]) -> Result<Vec<f32>, DistError> {
        Ok(data.to_vec())
    }
    fn broadcast_bytes(&self, _root: usize, _data: &mut Vec<u8>) -> Result<(), DistError> {
        Ok(())
    }
    fn send(&self, dest: usize, _data: &[f32]) -> Result<(), DistError> {
        Err(self.no_peer("send", dest))
    }
    fn recv(&self, src: usize, _data: &mut [f32]) -> Result<(), DistError> {
        Err(self.no_peer("recv", src))
    }
    fn send_bytes(&self, dest: usize, _data: &[u8]) -> Result<(), DistError> {
        Err(self.no_peer("send_bytes", dest))
    }
    fn recv_bytes(&self, src: usize) -> Result<Vec<u8>, DistError> {
        Err(self.no_peer("recv_bytes", src))
    }
    fn barrier(&self) -> Result<(), DistError> {
        Ok(())
    }
    fn name(&self) -> &str {
        "solo"
    }
}

impl SoloCommunicator {
    fn no_peer(&self, op: &'static str, peer: usize) -> DistError {
        DistError {
            op,
            group: "solo".into(),
            rank: 0,
            size: 1,
            message: format!("no rank {peer} in a group of one"),
        }
    }
}
