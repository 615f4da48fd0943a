//! NCCL data plane (cudarc, `cuda` feature): the TP all-reduces and the pipeline's activations
//! on GPU memory, on candle's stream, so they order with the model's kernels and never pass
//! through the host. Every other operation (the control plane's bytes, host-side gathers,
//! barriers) stays on the MPI group the NCCL communicator was built over, which also carried
//! its unique id.
//!
//! One NCCL communicator per group: the world (the pipeline's point-to-point traffic, global
//! ranks) and each stage's TP group. NCCL refuses two ranks on one GPU; `--data-plane mpi` is for
//! that case.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::DeviceRepr;
use candle_core::cuda_backend::cudarc::nccl::{Comm, Id, NcclType, ReduceOp};
use candle_core::cuda_backend::{CudaDType, CudaDevice};
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, DType, Device, InplaceOp1, Layout, Shape, Storage, Tensor,
    WithDType,
};

use super::comm::{Communicator, DeviceCollectives, DistError, HalfFormat};
use crate::error::{EngineError, Result};

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
            id_bytes = id.internal().iter().map(|&c| c as u8).collect();
        }
        host.broadcast_bytes(0, &mut id_bytes)?;
        let internal: [std::ffi::c_char; 128] = id_bytes
            .iter()
            .map(|&b| b as std::ffi::c_char)
            .collect::<Vec<_>>()
            .try_into()
            .map_err(|_| fail("unique id", format!("{} bytes, not 128", id_bytes.len())))?;
        let comm = Comm::from_rank(
            device.cuda_stream(),
            host.rank(),
            host.size(),
            Id::uninit(internal),
        )
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
    fn rank(&self) -> usize {
        self.host.rank()
    }
    fn size(&self) -> usize {
        self.host.size()
    }
    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), DistError> {
        self.host.all_reduce_sum(data)
    }
    fn all_reduce_sum_half(&self, data: &mut [u16], format: HalfFormat) -> Result<(), DistError> {
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
        let (storage, layout) = x.storage_and_layout();
        let Storage::Cuda(storage) = &*storage else {
            return Err(self.error("send", "the tensor is not on a GPU"));
        };
        with_dtype!(storage.dtype(), |T| {
            let slice = storage
                .as_cuda_slice::<T>()
                .map_err(|e| self.error("send", e))?;
            let (start, end) = layout
                .contiguous_offsets()
                .ok_or_else(|| self.error("send", "the tensor is not contiguous"))?;
            self.comm
                .send(&slice.slice(start..end), peer)
                .map_err(|e| self.error("send", format!("{e:?}")))
        })
    }

    fn recv(
        &self,
        src: usize,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, DistError> {
        let peer = self.peer("recv", src)?;
        let x = Tensor::zeros(shape, dtype, device).map_err(|e| self.error("recv", e))?;
        x.inplace_op1(&Recv {
            comm: &self.comm,
            peer,
        })
        .map_err(|e| self.error("recv", e))?;
        Ok(x)
    }
}

/// Runs `$body` with `$t` bound to the element type of `$dtype` (the float types NCCL sums).
macro_rules! with_dtype {
    ($dtype:expr, |$t:ident| $body:expr) => {
        match $dtype {
            DType::F32 => {
                type $t = f32;
                $body
            }
            DType::BF16 => {
                type $t = half::bf16;
                $body
            }
            DType::F16 => {
                type $t = half::f16;
                $body
            }
            other => Err(DistError {
                op: "nccl",
                group: String::new(),
                rank: 0,
                size: 0,
                message: format!("{other:?} tensors: f32, bf16 or f16 only"),
            }),
        }
    };
}
use with_dtype;

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
