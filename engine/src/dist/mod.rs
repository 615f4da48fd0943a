//! Distribution: the rank layout (`Topology`) and the `Communicator` the parallel layers and the
//! pipeline talk through. MPI is the bootstrap everywhere (`mpirun`, `srun --mpi=pmix`; a lone
//! `engine` is a world of one); the data plane is MPI on CPUs (NCCL on GPUs, later). An in-process
//! backend runs ranks as threads for unit tests.

pub mod check;
pub mod comm;
pub mod context;
pub mod local;
pub mod mpi_backend;
pub mod topology;

pub use comm::{Communicator, DistError, HalfFormat, ModelDtypeReduce, SoloCommunicator};
pub use context::DistContext;
pub use topology::Topology;
