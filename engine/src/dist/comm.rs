//! The collective and point-to-point operations the engine needs, over a group of ranks.
//!
//! Buffers are host `f32` slices (and bytes for the control plane): on CPU that is the tensor's
//! own storage; device tensors are staged through the host by the MPI backend. A backend that
//! can work on device buffers directly (NCCL) also offers [`DeviceCollectives`], which
//! `dist::transfer` prefers for tensors on a GPU.

use std::time::Duration;

use candle_core::{DType, Device, Tensor};

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
    /// Element-wise sum of 16-bit floats (bit patterns in `format`) over the group, in place on
    /// every rank, accumulated in that format: every partial sum is rounded to it, as NCCL's
    /// half-precision ring all-reduce does, and the wire carries two bytes a value. Every rank
    /// gets the same bits.
    fn all_reduce_sum_half(&self, data: &mut [u16], format: HalfFormat) -> Result<(), DistError>;
    /// True when the parallel layers should all-reduce activations in the model's dtype
    /// (`--allreduce-dtype model`) rather than in f32. See [`ModelDtypeReduce`].
    fn reduces_in_model_dtype(&self) -> bool {
        false
    }
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
    /// Collectives on device tensors with no copy through the host, when the backend has them
    /// (NCCL); `None` for host-only backends.
    fn device_collectives(&self) -> Option<&dyn DeviceCollectives> {
        None
    }
}

/// Collectives on tensors where they lie (GPU memory), ordered on the device's stream. Ranks
/// are those of the [`Communicator`] that offers them.
pub trait DeviceCollectives {
    /// The element-wise sum over the group, in `x`'s dtype.
    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor, DistError>;
    /// Sends `x` (contiguous) to `dest`.
    fn send(&self, dest: usize, x: &Tensor) -> Result<(), DistError>;
    /// Receives a tensor of `shape` and `dtype` from `src` onto `device`.
    fn recv(
        &self,
        src: usize,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, DistError>;
}

/// A 16-bit float format on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HalfFormat {
    Bf16,
    F16,
}

impl HalfFormat {
    /// The format's bits of `x`, rounded to nearest even.
    pub fn encode(self, x: f32) -> u16 {
        match self {
            HalfFormat::Bf16 => half::bf16::from_f32(x).to_bits(),
            HalfFormat::F16 => half::f16::from_f32(x).to_bits(),
        }
    }

    pub fn decode(self, bits: u16) -> f32 {
        match self {
            HalfFormat::Bf16 => half::bf16::from_bits(bits).to_f32(),
            HalfFormat::F16 => half::f16::from_bits(bits).to_f32(),
        }
    }

    /// `a + b` computed in f32 and rounded to the format (round to nearest even).
    pub fn add(self, a: u16, b: u16) -> u16 {
        self.encode(self.decode(a) + self.decode(b))
    }

    /// Adds `incoming` into `acc`, element by element.
    pub fn accumulate(self, acc: &mut [u16], incoming: &[u16]) {
        for (a, &x) in acc.iter_mut().zip(incoming) {
            *a = self.add(*a, x);
        }
    }
}

/// A TP group that asks the parallel layers to all-reduce in the model's dtype
/// (`--allreduce-dtype model`): half the bytes of f32 for bf16 models, and the rounding of
/// NCCL's bf16 all-reduce. Every operation goes to the wrapped group.
pub struct ModelDtypeReduce(pub Box<dyn Communicator>);

impl Communicator for ModelDtypeReduce {
    fn rank(&self) -> usize {
        self.0.rank()
    }
    fn size(&self) -> usize {
        self.0.size()
    }
    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), DistError> {
        self.0.all_reduce_sum(data)
    }
    fn all_reduce_sum_half(&self, data: &mut [u16], format: HalfFormat) -> Result<(), DistError> {
        self.0.all_reduce_sum_half(data, format)
    }
    fn reduces_in_model_dtype(&self) -> bool {
        true
    }
    fn all_gather(&self, data: &[f32]) -> Result<Vec<f32>, DistError> {
        self.0.all_gather(data)
    }
    fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>) -> Result<(), DistError> {
        self.0.broadcast_bytes(root, data)
    }
    fn send(&self, dest: usize, data: &[f32]) -> Result<(), DistError> {
        self.0.send(dest, data)
    }
    fn recv(&self, src: usize, data: &mut [f32]) -> Result<(), DistError> {
        self.0.recv(src, data)
    }
    fn send_bytes(&self, dest: usize, data: &[u8]) -> Result<(), DistError> {
        self.0.send_bytes(dest, data)
    }
    fn recv_bytes(&self, src: usize) -> Result<Vec<u8>, DistError> {
        self.0.recv_bytes(src)
    }
    fn barrier(&self) -> Result<(), DistError> {
        self.0.barrier()
    }
    fn name(&self) -> &str {
        self.0.name()
    }
    fn device_collectives(&self) -> Option<&dyn DeviceCollectives> {
        self.0.device_collectives()
    }
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
    fn all_reduce_sum_half(&self, _data: &mut [u16], _format: HalfFormat) -> Result<(), DistError> {
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

#[cfg(test)]
mod tests {
    use super::HalfFormat;

    #[test]
    fn half_adds_round_to_the_format() {
        let bf = |x: f32| half::bf16::from_f32(x).to_bits();
        // 1 + 2^-9 is below bf16's resolution at 1 (2^-7): it rounds back to 1.
        assert_eq!(HalfFormat::Bf16.add(bf(1.0), bf(1.0 / 512.0)), bf(1.0));
        assert_eq!(HalfFormat::Bf16.add(bf(1.5), bf(2.25)), bf(3.75));
        let f = |x: f32| half::f16::from_f32(x).to_bits();
        // f16 resolves 2^-10 at 1.
        assert_eq!(
            HalfFormat::F16.add(f(1.0), f(1.0 / 512.0)),
            f(1.0 + 1.0 / 512.0)
        );
    }
}
