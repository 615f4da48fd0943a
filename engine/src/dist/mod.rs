//! Distribution: the rank layout (`Topology`) and the `Communicator` the parallel layers and the
//! pipeline talk through. MPI is the bootstrap everywhere (`mpirun`, `srun --mpi=pmix`; a lone
//! `engine` is a world of one); the data plane is MPI on CPUs and NCCL on GPUs (`nccl_backend`,
//! with the `cuda` feature; chosen by `device::DataPlane`). An in-process backend runs ranks as
//! threads for unit tests.

pub mod check;
pub mod comm;
pub mod context;
pub mod device;
pub mod local;
pub mod mpi_backend;
#[cfg(feature = "cuda")]
pub mod nccl_backend;
pub mod topology;
pub mod transfer;

pub use comm::{
    Communicator, DeviceCollectives, DistError, HalfFormat, ModelDtypeReduce, SoloCommunicator,
};
pub use context::DistContext;
pub use topology::Topology;
