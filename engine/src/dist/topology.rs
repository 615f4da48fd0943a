//! The rank layout of `tp x pp` ranks, tensor parallelism innermost (Megatron-LM, vLLM):
//! `stage = rank / tp`, `tp_rank = rank % tp`.

use crate::error::{EngineError, Result};

/// Where this rank sits in the tensor x pipeline grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    pub world_size: usize,
    pub rank: usize,
    pub tp: usize,
    pub pp: usize,
    /// Index of this rank on its node (picks the GPU).
    pub local_rank: usize,
}

impl Topology {
    /// Checks that the world is exactly `tp * pp` ranks.
    pub fn new(
        tp: usize,
        pp: usize,
        world_size: usize,
        rank: usize,
        local_rank: usize,
    ) -> Result<Self> {
        if tp == 0 || pp == 0 {
            return Err(EngineError::Request(format!(
                "--tp {tp} --pp {pp}: both must be at least 1"
            )));
        }
        if tp * pp != world_size {
            return Err(EngineError::Request(format!(
                "--tp {tp} x --pp {pp} = {} ranks, but the MPI world has {world_size} (launch with mpirun -n {} or srun -n {})",
                tp * pp,
                tp * pp,
                tp * pp
            )));
        }
        if rank >= world_size {
            return Err(EngineError::Request(format!(
                "rank {rank} outside a world of {world_size}"
            )));
        }
        Ok(Self {
            world_size,
            rank,
            tp,
            pp,
            local_rank,
        })
    }

    /// A world of one rank.
    pub fn single() -> Self {
        Self {
            world_size: 1,
            rank: 0,
            tp: 1,
            pp: 1,
            local_rank: 0,
        }
    }

    pub fn stage(&self) -> usize {
        self.rank / self.tp
    }

    pub fn tp_rank(&self) -> usize {
        self.rank % self.tp
    }

    pub fn is_first_stage(&self) -> bool {
        self.stage() == 0
    }

    pub fn is_last_stage(&self) -> bool {
        self.stage() + 1 == self.pp
    }

    /// The rank with the same TP index in `stage`.
    pub fn rank_in_stage(&self, stage: usize) -> usize {
        stage * self.tp + self.tp_rank()
    }

    /// This rank's index on its node, from the launcher's environment.
    pub fn local_rank_from_env() -> usize {
        [
            "SLURM_LOCALID",
            "OMPI_COMM_WORLD_LOCAL_RANK",
            "MPI_LOCALRANKID",
            "LOCAL_RANK",
        ]
        .iter()
        .find_map(|var| std::env::var(var).ok()?.parse().ok())
        .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tp_is_innermost() {
        let t = Topology::new(4, 2, 8, 6, 6).unwrap();
        assert_eq!((t.stage(), t.tp_rank()), (1, 2));
        assert!(t.is_last_stage() && !t.is_first_stage());
        assert_eq!(t.rank_in_stage(0), 2);
    }

    #[test]
    fn world_must_be_tp_times_pp() {
        let err = Topology::new(4, 2, 6, 0, 0).unwrap_err().to_string();
        assert!(
            err.contains("--tp 4 x --pp 2 = 8 ranks") && err.contains("6"),
            "{err}"
        );
    }
}
