//! The hardware a prediction assumes: what one rank's device (a GPU, or a CPU process on its
//! cores) can do: dense FLOP/s, memory bandwidth and memory, the decode-attention kernel's rate;
//! the link between ranks of one node and the link between nodes; and, for CPU machines, how many
//! cores a host has for its ranks to share. `hardware_spec.rs` reads a profile's `[hardware]`.

use serde::{Deserialize, Serialize};

/// One kind of link: its bandwidth and the latency of one message.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub bytes_per_s: f64,
    pub latency_s: f64,
}

/// Resolved hardware figures (peak rates; [`Hardware::achievable`] scales them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hardware {
    /// The preset's name, or `custom`.
    pub name: String,
    /// Dense matmul FLOP/s of one rank's device (a GPU; a CPU rank's threads).
    pub flops_per_s: f64,
    /// Memory bandwidth of one rank's device (HBM; a CPU rank's streaming read rate).
    pub hbm_bytes_per_s: f64,
    /// FLOP/s of decode attention (one query token against the KV cache), which is not a GEMM.
    pub decode_attention_flops_per_s: f64,
    /// FLOP/s of prefill's causal attention (matmuls with a short inner dimension, a softmax).
    pub prefill_attention_flops_per_s: f64,
    /// Seconds a decoder layer costs per pass beyond its kernels' rooflines (0 on GPUs, where
    /// kernel launches are left out).
    #[serde(default)]
    pub layer_overhead_s: f64,
    /// Memory of one GPU, or of one CPU host (shared by its ranks).
    pub memory_bytes: f64,
    pub intra_node: Link,
    pub inter_node: Link,
    pub achievable_fraction: f64,
    /// CPU machines: the cores ranks share; none for GPUs (one rank per GPU).
    pub host: Option<CpuHost>,
}

/// The cores of a CPU host and how ranks use them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuHost {
    /// Cores of one host.
    pub cores: usize,
    /// Cores (threads) one rank computes on (`RAYON_NUM_THREADS`).
    pub threads_per_rank: usize,
    /// Matmul FLOP/s of all the host's ranks computing at once (shared among them).
    pub flops_per_s: f64,
    /// Memory read rate of all the host's ranks streaming at once (shared among them).
    pub memory_bytes_per_s: f64,
    /// Every node of the cluster is this one host (the profile's `cluster.one_host`).
    pub single_host: bool,
}

impl CpuHost {
    /// Ranks that compute at once on one host; more busy ranks than this take turns.
    pub fn slots(&self) -> usize {
        (self.cores / self.threads_per_rank.max(1)).max(1)
    }
}

/// A `[hardware]` section that names no known preset, or leaves out or misstates a figure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("[hardware] {field}: {reason}")]
pub struct HardwareError {
    pub field: String,
    pub reason: String,
}

// Between nodes: one 400 Gb/s InfiniBand NDR port per node (50e9 B/s per direction) and ~5 us
// for a message through the NIC and switch; inside a node ~2 us per NVLink hop (NCCL's small
// message latency). Shared by both presets: the fabric, not the GPU, sets them.
const INTER_NODE_400G: Link = Link {
    bytes_per_s: 50e9,
    latency_s: 5e-6,
};
const NVLINK_LATENCY_S: f64 = 2e-6;

// Well-tuned kernels reach roughly 70% of peak: decode GEMVs of HBM bandwidth, large prefill
// GEMMs of dense FLOP/s, NCCL rings of link bandwidth (its "bus bandwidth").
const DEFAULT_ACHIEVABLE_FRACTION: f64 = 0.7;

impl Hardware {
    /// The preset names, in the order errors list them.
    pub const PRESETS: [&'static str; 2] = ["h100-sxm", "h200"];

    /// Published figures of a GPU and its node (NVIDIA H100 / H200 datasheets: dense bf16
    /// 989 TFLOP/s for both, HBM3 3.35 TB/s and 80 GB, HBM3e 4.8 TB/s and 141 GB, NVLink 4
    /// 900 GB/s per GPU both directions together).
    pub fn preset(name: &str) -> Option<Self> {
        let (flops_per_s, hbm_bytes_per_s, memory_gb) = match name {
            "h100-sxm" => (989e12, 3.35e12, 80.0),
            "h200" => (989e12, 4.8e12, 141.0),
            _ => return None,
        };
        Some(Self {
            name: name.into(),
            flops_per_s,
            hbm_bytes_per_s,
            // FlashAttention-style decode kernels run on the tensor cores too.
            decode_attention_flops_per_s: flops_per_s,
            prefill_attention_flops_per_s: flops_per_s,
            layer_overhead_s: 0.0,
            memory_bytes: memory_gb * 1e9,
            intra_node: Link {
                bytes_per_s: 450e9,
                latency_s: NVLINK_LATENCY_S,
            },
            inter_node: INTER_NODE_400G,
            achievable_fraction: DEFAULT_ACHIEVABLE_FRACTION,
            host: None,
        })
    }

    /// The rates real kernels reach: every bandwidth and FLOP/s times the achievable fraction
    /// (latencies and memory unchanged).
    pub fn achievable(&self) -> Self {
        let f = self.achievable_fraction;
        let scale = |link: Link| Link {
            bytes_per_s: link.bytes_per_s * f,
            latency_s: link.latency_s,
        };
        Self {
            name: self.name.clone(),
            flops_per_s: self.flops_per_s * f,
            hbm_bytes_per_s: self.hbm_bytes_per_s * f,
            decode_attention_flops_per_s: self.decode_attention_flops_per_s * f,
            prefill_attention_flops_per_s: self.prefill_attention_flops_per_s * f,
            layer_overhead_s: self.layer_overhead_s,
            memory_bytes: self.memory_bytes,
            intra_node: scale(self.intra_node),
            inter_node: scale(self.inter_node),
            achievable_fraction: 1.0,
            host: self.host.map(|host| CpuHost {
                flops_per_s: host.flops_per_s * f,
                memory_bytes_per_s: host.memory_bytes_per_s * f,
                ..host
            }),
        }
    }

    /// One line: the device's rates (per rank on a CPU, with the host's cores) and the links.
    pub fn describe(&self) -> String {
        let links = format!(
            "in a node {} us; between nodes {} us",
            link_text(self.intra_node),
            link_text(self.inter_node)
        );
        match self.host {
            Some(host) => format!(
                "{}: CPU, {} cores{}, {} thread(s) per rank; per rank {:.1} GFLOP/s matmul, {:.2} \
                 GB/s memory, {:.2} / {:.1} GFLOP/s decode / prefill attention, {:.0} us per layer beyond; \
                 {} GB; {links}; {:.0}% of these reached",
                self.name,
                host.cores,
                if host.single_host {
                    " shared by every node"
                } else {
                    " per node"
                },
                host.threads_per_rank,
                self.flops_per_s / 1e9,
                self.hbm_bytes_per_s / 1e9,
                self.decode_attention_flops_per_s / 1e9,
                self.prefill_attention_flops_per_s / 1e9,
                self.layer_overhead_s * 1e6,
                self.memory_bytes / 1e9,
                self.achievable_fraction * 100.0
            ),
            None => format!(
                "{}: {:.0} TFLOP/s, HBM {:.2} TB/s, {:.0} GB per GPU; {links}; {:.0}% of peak reached",
                self.name,
                self.flops_per_s / 1e12,
                self.hbm_bytes_per_s / 1e12,
                self.memory_bytes / 1e9,
                self.achievable_fraction * 100.0
            ),
        }
    }

    /// The link ranks talk over: the network when they are on different nodes.
    pub fn link(&self, spans_nodes: bool) -> Link {
        if spans_nodes {
            self.inter_node
        } else {
            self.intra_node
        }
    }
}

/// "450 GB/s, 2" (the caller adds the unit of the latency).
fn link_text(link: Link) -> String {
    let gb = link.bytes_per_s / 1e9;
    let us = link.latency_s * 1e6;
    if gb >= 10.0 {
        format!("{gb:.0} GB/s, {us:.0}")
    } else {
        format!("{gb:.2} GB/s, {us:.1}")
    }
}

#[cfg(test)]
mod tests {
    use crate::perf::HardwareSpec;

    #[test]
    fn the_h100_preset_has_the_published_figures() {
        let h = HardwareSpec::preset("h100-sxm").resolve().unwrap();
        assert_eq!(h.flops_per_s, 989e12);
        assert_eq!(h.hbm_bytes_per_s, 3.35e12);
        assert_eq!(h.memory_bytes, 80e9);
        assert_eq!(h.intra_node.bytes_per_s, 450e9);
        assert_eq!(h.inter_node.bytes_per_s, 50e9);
        assert_eq!(h.inter_node.latency_s, 5e-6);
        let h200 = HardwareSpec::preset("h200").resolve().unwrap();
        assert_eq!((h200.hbm_bytes_per_s, h200.memory_bytes), (4.8e12, 141e9));
    }

    #[test]
    fn an_override_replaces_only_its_field() {
        let spec = HardwareSpec {
            inter_node_bytes_per_s: Some(100e9),
            inter_node_latency_us: Some(3.0),
            achievable_fraction: Some(1.0),
            ..HardwareSpec::preset("h200")
        };
        let h = spec.resolve().unwrap();
        assert_eq!(h.inter_node.bytes_per_s, 100e9);
        assert!((h.inter_node.latency_s - 3e-6).abs() < 1e-15);
        assert_eq!(h.hbm_bytes_per_s, 4.8e12);
        assert_eq!(h.achievable(), h);
    }

    #[test]
    fn the_achievable_fraction_scales_rates_not_latencies() {
        let h = HardwareSpec {
            achievable_fraction: Some(0.5),
            ..HardwareSpec::preset("h100-sxm")
        }
        .resolve()
        .unwrap()
        .achievable();
        assert_eq!(h.hbm_bytes_per_s, 1.675e12);
        assert_eq!(h.inter_node.bytes_per_s, 25e9);
        assert_eq!(h.inter_node.latency_s, 5e-6);
        assert_eq!(h.memory_bytes, 80e9);
    }

    #[test]
    fn without_a_preset_a_missing_figure_is_named() {
        let err = HardwareSpec {
            flops_per_s: Some(1e12),
            ..HardwareSpec::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(err.field, "achievable_fraction");
        let err = HardwareSpec::preset("a100").resolve().unwrap_err();
        assert!(err
            .to_string()
            .contains("unknown preset `a100` (known: h100-sxm, h200;"));
        let err = HardwareSpec {
            achievable_fraction: Some(1.5),
            ..HardwareSpec::preset("h200")
        }
        .resolve()
        .unwrap_err();
        assert_eq!(err.field, "achievable_fraction");
        let err = HardwareSpec {
            memory_gb: Some(-1.0),
            ..HardwareSpec::preset("h200")
        }
        .resolve()
        .unwrap_err();
        assert_eq!(err.field, "memory_gb");
    }
}
