//! [`Estimate`]: a predicted time split into the [`Term`]s it is made of, so that the one that
//! dominates can be named.

use serde::Serialize;

/// What a figure's time goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Term {
    Compute,
    /// Reading memory: HBM on a GPU, DRAM on a CPU.
    Hbm,
    IntraNodeComm,
    InterNodeComm,
    PipelineBubble,
    /// CPU ranks sharing a host: waiting for a core (more busy ranks than cores), or reading
    /// memory (computing) slower than alone because the others read (compute) at once.
    CoreSharing,
}

impl Term {
    pub const ALL: [Term; 6] = [
        Term::Compute,
        Term::Hbm,
        Term::IntraNodeComm,
        Term::InterNodeComm,
        Term::PipelineBubble,
        Term::CoreSharing,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Term::Compute => "compute",
            Term::Hbm => "memory",
            Term::IntraNodeComm => "intra-node comm",
            Term::InterNodeComm => "inter-node comm",
            Term::PipelineBubble => "pipeline bubble",
            Term::CoreSharing => "core sharing",
        }
    }
}

impl std::fmt::Display for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// A predicted time, in seconds per term; the terms add up to the whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Estimate {
    pub compute_s: f64,
    pub hbm_s: f64,
    pub intra_node_comm_s: f64,
    pub inter_node_comm_s: f64,
    pub pipeline_bubble_s: f64,
    pub core_sharing_s: f64,
}

impl Estimate {
    pub fn seconds(&self) -> f64 {
        Term::ALL.iter().map(|&t| self.term(t)).sum()
    }

    pub fn term(&self, term: Term) -> f64 {
        match term {
            Term::Compute => self.compute_s,
            Term::Hbm => self.hbm_s,
            Term::IntraNodeComm => self.intra_node_comm_s,
            Term::InterNodeComm => self.inter_node_comm_s,
            Term::PipelineBubble => self.pipeline_bubble_s,
            Term::CoreSharing => self.core_sharing_s,
        }
    }

    /// The largest term (the first of equals, in [`Term::ALL`]'s order).
    pub fn dominant(&self) -> Term {
        Term::ALL.into_iter().fold(Term::Compute, |best, t| {
            if self.term(t) > self.term(best) {
                t
            } else {
                best
            }
        })
    }

    /// Term by term sum.
    pub fn plus(self, other: Self) -> Self {
        Self {
            compute_s: self.compute_s + other.compute_s,
            hbm_s: self.hbm_s + other.hbm_s,
            intra_node_comm_s: self.intra_node_comm_s + other.intra_node_comm_s,
            inter_node_comm_s: self.inter_node_comm_s + other.inter_node_comm_s,
            pipeline_bubble_s: self.pipeline_bubble_s + other.pipeline_bubble_s,
            core_sharing_s: self.core_sharing_s + other.core_sharing_s,
        }
    }

    /// Every term times `k`.
    pub fn times(self, k: f64) -> Self {
        Self {
            compute_s: self.compute_s * k,
            hbm_s: self.hbm_s * k,
            intra_node_comm_s: self.intra_node_comm_s * k,
            inter_node_comm_s: self.inter_node_comm_s * k,
            pipeline_bubble_s: self.pipeline_bubble_s * k,
            core_sharing_s: self.core_sharing_s * k,
        }
    }
}
