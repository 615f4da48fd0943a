//! Where a rank computes (`--device`) and what carries its tensors between ranks
//! (`--data-plane`): MPI through host memory, or NCCL on GPU memory.

use candle_core::Device;

use super::context::DistContext;
use crate::error::{EngineError, Result};

/// `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// A GPU when the engine is built with `cuda` and one is visible, else the CPU.
    Auto,
    Cpu,
    /// GPU `local rank % visible GPUs` (the local rank from SLURM_LOCALID or
    /// OMPI_COMM_WORLD_LOCAL_RANK), so each rank of a node takes its own GPU.
    Cuda,
}

/// `--data-plane`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DataPlane {
    /// NCCL for GPU tensors, MPI for CPU tensors.
    Auto,
    /// MPI everywhere: GPU tensors are staged through host memory (works when ranks share a GPU,
    /// which NCCL refuses).
    Mpi,
    /// NCCL for the TP all-reduces and the pipeline's activations (needs `--device cuda`).
    Nccl,
}

/// The device for a rank with `local_rank` on its node.
pub fn select_device(choice: DeviceChoice, local_rank: usize) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => cuda_device(local_rank),
        DeviceChoice::Auto if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() => {
            cuda_device(local_rank).or_else(|err| {
                tracing::warn!("no usable GPU ({err}); computing on the CPU");
                Ok(Device::Cpu)
            })
        }
        DeviceChoice::Auto => Ok(Device::Cpu),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(local_rank: usize) -> Result<Device> {
    use candle_core::cuda_backend::cudarc::driver::CudaContext;
    let count = CudaContext::device_count()
        .map_err(|e| EngineError::Request(format!("--device cuda: counting GPUs: {e}")))?;
    if count < 1 {
        return Err(EngineError::Request(
            "--device cuda: no GPU is visible".into(),
        ));
    }
    let ordinal = local_rank % count as usize;
    Ok(Device::new_cuda(ordinal)?)
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_local_rank: usize) -> Result<Device> {
    Err(EngineError::Request(
        "--device cuda: this engine was built without the `cuda` feature (cargo build --features cuda)"
            .into(),
    ))
}

impl DistContext {
    /// Puts the data plane under the communicators: NCCL over the same groups when asked for (or
    /// `auto` on a GPU), else they stay MPI. Collective: every rank must call it.
    pub fn with_data_plane(self, plane: DataPlane, device: &Device) -> Result<Self> {
        let nccl = match plane {
            DataPlane::Mpi => false,
            DataPlane::Auto => device.is_cuda(),
            DataPlane::Nccl if device.is_cuda() => true,
            DataPlane::Nccl => {
                return Err(EngineError::Request(
                    "--data-plane nccl needs --device cuda".into(),
                ))
            }
        };
        if !nccl {
            return Ok(self);
        }
        self.with_nccl(device)
    }

    #[cfg(feature = "cuda")]
    fn with_nccl(self, device: &Device) -> Result<Self> {
        use super::nccl_backend::{NcclCommunicator, NcclPipelineLinks};
        let Device::Cuda(cuda) = device else {
            return Err(EngineError::Request("NCCL needs a CUDA device".into()));
        };
        let DistContext {
            topology,
            world,
            tp_group,
        } = self;
        // Each stage's TP group, then the links between stages, in the same order on every rank.
        let tp_group = NcclCommunicator::new(tp_group, cuda)?;
        let world = NcclPipelineLinks::new(world, &topology, cuda)?;
        Ok(DistContext {
            topology,
            world: Box::new(world),
            tp_group: Box::new(tp_group),
        })
    }

    #[cfg(not(feature = "cuda"))]
    fn with_nccl(self, _device: &Device) -> Result<Self> {
        Err(EngineError::Request("NCCL needs the `cuda` feature".into()))
    }
}
