//! A rank's view of the job: its place in the grid and the groups it talks through.

use super::comm::{Communicator, ModelDtypeReduce};
use super::topology::Topology;

/// The topology plus the communicators of this rank: the whole world (control plane and the
/// pipeline's point-to-point traffic, with global ranks) and this rank's TP group (the ranks of
/// its stage, indexed by `tp_rank`).
pub struct DistContext {
    pub topology: Topology,
    pub world: Box<dyn Communicator>,
    pub tp_group: Box<dyn Communicator>,
}

impl DistContext {
    /// True when this rank must do everything itself (no TP peers).
    pub fn tp_size(&self) -> usize {
        self.topology.tp
    }

    /// Makes the parallel layers all-reduce in the model's dtype (`--allreduce-dtype model`)
    /// instead of f32.
    pub fn reduce_in_model_dtype(mut self) -> Self {
        self.tp_group = Box::new(ModelDtypeReduce(self.tp_group));
        self
    }
}
