//! NCCL data plane (cudarc, `cuda` feature): the TP all-reduces and the pipeline's activations
//! on GPU memory, on candle's stream, so they order with the model's kernels and never pass
//! through the host. Every other operation (the control plane's bytes, host-side gathers,
//! barriers) stays on the MPI group the NCCL communicator was built over, which also carried
//! its unique id.
//!
//! One NCCL communicator per TP group ([`NcclCommunicator`]) and one per pair of pipeline
//! neighbours ([`NcclPipelineLinks`]: the rank with the same TP rank in the next stage), never one
//! over the whole world: NCCL sizes its buffers and rings to a communicator's members. NCCL
//! refuses two ranks on one GPU; `--data-plane mpi` is for that case.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::DeviceRepr;
use candle_core::cuda_backend::cudarc::nccl::{Comm, Id, NcclType, ReduceOp};
use candle_core::cuda_backend::{CudaDType, CudaDevice};
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, DType, Device, InplaceOp1, Layout, Shape, Storage, Tensor,
    WithDType,
};

use std::collections::HashMap;

use super::comm::{Communicator, DeviceCollectives, DistError, HalfFormat};
use super::topology::Topology;
use crate::error::{EngineError, Result};

/// A NCCL unique id as bytes (to travel over MPI) and back.
fn id_to_bytes(id: &Id) -> Vec<u8> {
    id.internal().iter().map(|&c| c as u8).collect()
}

fn id_from_bytes(bytes: &[u8]) -> std::result::Result<Id, String> {
    let internal: [std::ffi::c_char; 128] = bytes
        .iter()
        .map(|&b| b as std::ffi::c_char)
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| format!("a NCCL unique id is 128 bytes, got {}", bytes.len()))?;
    Ok(Id::uninit(internal))
}

/// The host (MPI) half of a NCCL-backed [`Communicator`]: every operation on host buffers goes
/// to the MPI group in `self.host`.
macro_rules! host_operations {
    () => {
        fn rank(&self) -> usize {
            self.host.rank()
        }
        fn size(&self) -> usize {
            self.host.size()
        }
        fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), DistError> {
            self.host.all_reduce_sum(data)
        }
        fn all_reduce_sum_half(
            &self,
            data: &mut [u16],
            format: HalfFormat,
        ) -> Result<(), DistError> {
            self.host.all_reduce_sum_half(data, format)
        }
        fn reduces_in_model_dtype(&self) -> bool {
            self.host.reduces_in_model_dtype()
        }
        fn all_gather(&self, data: &[f32]) -> Result<Vec<f32>, DistError> {
            self.host.all_gather(data)
        }
        fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>) -> Result<(), DistError> {
            self.host.broadcast_bytes(root, data)
        }
        fn send(&self, dest: usize, data: &[f32]) -> Result<(), DistError> {
            self.host.send(dest, data)
        }
        fn recv(&self, src: usize, data: &mut [f32]) -> Result<(), DistError> {
            self.host.recv(src, data)
        }
        fn send_bytes(&self, dest: usize, data: &[u8]) -> Result<(), DistError> {
            self.host.send_bytes(dest, data)
        }
        fn recv_bytes(&self, src: usize) -> Result<Vec<u8>, DistError> {
            self.host.recv_bytes(src)
        }
        fn barrier(&self) -> Result<(), DistError> {
            self.host.barrier()
        }
        fn name(&self) -> &str {
            self.host.name()
        }
    };
}

/// An MPI group with an NCCL communicator over the same ranks.
pub struct NcclCommunicator {
    host: Box<dyn Communicator>,
    comm: Comm,
}

impl NcclCommunicator {
    /// Collective over `host`'s ranks: its rank 0 makes the unique id and broadcasts it.
    pub fn new(host: Box<dyn Communicator>, device: &CudaDevice) -> Result<Self> {
        let fail = |what: &str, e: String| {
            EngineError::Request(format!("NCCL on {} ({what}): {e}", host.name()))
        };
        let mut id_bytes = Vec::new();
        if host.rank() == 0 {
            let id = Id::new().map_err(|e| fail("ncclGetUniqueId", format!("{e:?}")))?;
            id_bytes = id_to_bytes(&id);
        }
        host.broadcast_bytes(0, &mut id_bytes)?;
        let id = id_from_bytes(&id_bytes).map_err(|e| fail("unique id", e))?;
        let comm = Comm::from_rank(device.cuda_stream(), host.rank(), host.size(), id)
            .map_err(|e| fail("ncclCommInitRank", format!("{e:?}")))?;
        tracing::info!(
            group = host.name(),
            ranks = host.size(),
            "NCCL communicator ready"
        );
        Ok(Self { host, comm })
    }

    fn error(&self, op: &'static str, message: impl std::fmt::Display) -> DistError {
        DistError {
            op,
            group: format!("{} (nccl)", self.host.name()),
            rank: self.host.rank(),
            size: self.host.size(),
            message: message.to_string(),
        }
    }

    fn peer(&self, op: &'static str, peer: usize) -> Result<i32, DistError> {
        if peer >= self.host.size() || peer == self.host.rank() {
            return Err(self.error(op, format!("no peer {peer}")));
        }
        Ok(peer as i32)
    }
}

impl Communicator for NcclCommunicator {
    host_operations!();
    fn device_collectives(&self) -> Option<&dyn DeviceCollectives> {
        Some(self)
    }
}

impl DeviceCollectives for NcclCommunicator {
    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor, DistError> {
        let _span =
            tracing::info_span!("all_reduce", values = x.elem_count(), plane = "nccl").entered();
        x.contiguous()
            .and_then(|x| x.apply_op1_no_bwd(&AllReduce { comm: &self.comm }))
            .map_err(|e| self.error("all_reduce_sum", e))
    }

    fn send(&self, dest: usize, x: &Tensor) -> Result<(), DistError> {
        let peer = self.peer("send", dest)?;
        send_on(&self.comm, peer, x).map_err(|e| self.error("send", e))
    }

    fn recv(
        &self,
        src: usize,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, DistError> {
        let peer = self.peer("recv", src)?;
        recv_on(&self.comm, peer, shape, dtype, device).map_err(|e| self.error("recv", e))
    }
}

/// The world's MPI communicator (global ranks) with a two-rank NCCL communicator to each pipeline
/// neighbour, for the stage-to-stage activations.
pub struct NcclPipelineLinks {
    host: Box<dyn Communicator>,
    /// Peer's global rank -> (the pair's communicator, the peer's rank in it).
    links: HashMap<usize, (Comm, i32)>,
}

impl NcclPipelineLinks {
    /// Collective over the world: stage boundaries are linked in order (0|1, then 1|2, ...), each
    /// rank with the rank of the same TP rank across the boundary; the earlier stage's rank makes
    /// the pair's unique id and sends it over MPI.
    pub fn new(
        world: Box<dyn Communicator>,
        topology: &Topology,
        device: &CudaDevice,
    ) -> Result<Self> {
        let mut links = HashMap::new();
        let stage = topology.stage();
        for boundary in 0..topology.pp.saturating_sub(1) {
            let (lower, upper) = (boundary, boundary + 1);
            if stage != lower && stage != upper {
                continue;
            }
            let peer = topology.rank_in_stage(if stage == lower { upper } else { lower });
            let fail = |what: &str, e: String| {
                EngineError::Request(format!(
                    "NCCL link between stages {lower} and {upper} ({what}): {e}"
                ))
            };
            let id = if stage == lower {
                let id = Id::new().map_err(|e| fail("ncclGetUniqueId", format!("{e:?}")))?;
                world.send_bytes(peer, &id_to_bytes(&id))?;
                id
            } else {
                id_from_bytes(&world.recv_bytes(peer)?).map_err(|e| fail("unique id", e))?
            };
            let (mine, theirs) = if stage == lower { (0, 1) } else { (1, 0) };
            let comm = Comm::from_rank(device.cuda_stream(), mine, 2, id)
                .map_err(|e| fail("ncclCommInitRank", format!("{e:?}")))?;
            links.insert(peer, (comm, theirs));
        }
        tracing::info!(links = links.len(), "NCCL pipeline links ready");
        Ok(Self { host: world, links })
    }

    fn error(&self, op: &'static str, message: impl std::fmt::Display) -> DistError {
        DistError {
            op,
            group: format!("{} (nccl links)", self.host.name()),
            rank: self.host.rank(),
            size: self.host.size(),
            message: message.to_string(),
        }
    }

    fn link(&self, op: &'static str, peer: usize) -> Result<&(Comm, i32), DistError> {
        self.links
            .get(&peer)
            .ok_or_else(|| self.error(op, format!("rank {peer} is not a pipeline neighbour")))
    }
}

impl Communicator for NcclPipelineLinks {
    host_operations!();
    fn device_collectives(&self) -> Option<&dyn DeviceCollectives> {
        Some(self)
    }
}

impl DeviceCollectives for NcclPipelineLinks {
    fn all_reduce_sum(&self, _x: &Tensor) -> Result<Tensor, DistError> {
        Err(self.error(
            "all_reduce_sum",
            "the pipeline links carry point-to-point traffic only",
        ))
    }

    fn send(&self, dest: usize, x: &Tensor) -> Result<(), DistError> {
        let (comm, peer) = self.link("send", dest)?;
        send_on(comm, *peer, x).map_err(|e| self.error("send", e))
    }

    fn recv(
        &self,
        src: usize,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, DistError> {
        let (comm, peer) = self.link("recv", src)?;
        recv_on(comm, *peer, shape, dtype, device).map_err(|e| self.error("recv", e))
    }
}

/// Sends a contiguous GPU tensor to `peer` of `comm`.
fn send_on(comm: &Comm, peer: i32, x: &Tensor) -> std::result::Result<(), String> {
    let x = x.contiguous().map_err(|e| e.to_string())?;
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cuda(storage) = &*storage else {
        return Err("the tensor is not on a GPU".into());
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or("the tensor is not contiguous")?;
    macro_rules! send_as {
        ($t:ty) => {{
            let slice = storage.as_cuda_slice::<$t>().map_err(|e| e.to_string())?;
            comm.send(&slice.slice(start..end), peer)
                .map_err(|e| format!("ncclSend: {e:?}"))
        }};
    }
    match storage.dtype() {
        DType::F32 => send_as!(f32),
        DType::BF16 => send_as!(half::bf16),
        DType::F16 => send_as!(half::f16),
        other => Err(format!("{other:?} tensors: f32, bf16 or f16 only")),
    }
}

/// Receives a tensor of `shape` and `dtype` from `peer` of `comm` into a new GPU buffer.
fn recv_on(
    comm: &Comm,
    peer: i32,
    shape: &[usize],
    dtype: DType,
    device: &Device,
) -> std::result::Result<Tensor, String> {
    let x = Tensor::zeros(shape, dtype, device).map_err(|e| e.to_string())?;
    x.inplace_op1(&Recv { comm, peer })
        .map_err(|e| e.to_string())?;
    Ok(x)
}

/// NCCL's all-reduce as a candle op: the sum lands in a new buffer on the same stream.
struct AllReduce<'a> {
    comm: &'a Comm,
}

impl AllReduce<'_> {
    fn reduce<T: CudaDType + DeviceRepr + WithDType + NcclType>(
        &self,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<CudaStorage> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("all-reduce: not contiguous".into()))?;
        let src = storage.as_cuda_slice::<T>()?.slice(start..end);
        // SAFETY: NCCL writes every element of the result.
        let mut dst = unsafe { storage.device.alloc::<T>(end - start)? };
        self.comm
            .all_reduce(&src, &mut dst, &ReduceOp::Sum)
            .map_err(|e| candle_core::Error::Msg(format!("ncclAllReduce: {e:?}")))?;
        Ok(CudaStorage::wrap_cuda_slice(dst, storage.device.clone()))
    }
}

impl CustomOp1 for AllReduce<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("nccl-all-reduce: the tensor is on the CPU")
    }

    fn cuda_fwd(
        &self,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let out = match storage.dtype() {
            DType::F32 => self.reduce::<f32>(storage, layout)?,
            DType::BF16 => self.reduce::<half::bf16>(storage, layout)?,
            DType::F16 => self.reduce::<half::f16>(storage, layout)?,
            other => candle_core::bail!("nccl-all-reduce: {other:?} tensors"),
        };
        Ok((out, layout.shape().clone()))
    }
}

/// NCCL's receive into an existing buffer.
struct Recv<'a> {
    comm: &'a Comm,
    peer: i32,
}

impl Recv<'_> {
    fn receive<T: CudaDType + DeviceRepr + WithDType + NcclType>(
        &self,
        storage: &mut CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<()> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("recv: not contiguous".into()))?;
        let mut dst = storage.as_cuda_slice_mut::<T>()?.slice_mut(start..end);
        self.comm
            .recv(&mut dst, self.peer)
            .map_err(|e| candle_core::Error::Msg(format!("ncclRecv: {e:?}")))?;
        Ok(())
    }
}

impl InplaceOp1 for Recv<'_> {
    fn name(&self) -> &'static str {
        "nccl-recv"
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout) -> candle_core::Result<()> {
        candle_core::bail!("nccl-recv: the buffer is on the CPU")
    }

    fn cuda_fwd(&self, storage: &mut CudaStorage, layout: &Layout) -> candle_core::Result<()> {
        match storage.dtype() {
            DType::F32 => self.receive::<f32>(storage, layout),
            DType::BF16 => self.receive::<half::bf16>(storage, layout),
            DType::F16 => self.receive::<half::f16>(storage, layout),
            other => candle_core::bail!("nccl-recv: {other:?} tensors"),
        }
    }
}
