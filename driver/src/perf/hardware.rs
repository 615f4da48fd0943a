//! The hardware a prediction assumes: each GPU's dense bf16 FLOP/s, HBM bandwidth and memory, the
//! link between GPUs of one node and the link between nodes. A profile's optional `[hardware]`
//! section names a preset and overrides any of its fields; without a preset every field is given.

use serde::{Deserialize, Serialize};

/// `[hardware]` in a cluster profile: a preset, and any field overridden (all optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareSpec {
    /// `h100-sxm` or `h200` (see [`Hardware::PRESETS`]).
    pub preset: Option<String>,
    /// Dense bf16 FLOP/s of one GPU (no sparsity).
    pub flops_per_s: Option<f64>,
    /// HBM bandwidth of one GPU, bytes/s.
    pub hbm_bytes_per_s: Option<f64>,
    /// Memory of one GPU, GB (1e9 bytes).
    pub memory_gb: Option<f64>,
    /// GPU-to-GPU bandwidth inside a node (NVLink), bytes/s per direction per GPU.
    pub intra_node_bytes_per_s: Option<f64>,
    pub intra_node_latency_us: Option<f64>,
    /// Network bandwidth of one node to the others, bytes/s per direction (400 Gb/s = 50e9).
    pub inter_node_bytes_per_s: Option<f64>,
    pub inter_node_latency_us: Option<f64>,
    /// Share of every peak rate (FLOP/s, HBM, links) real kernels reach, in (0, 1].
    pub achievable_fraction: Option<f64>,
}

/// One kind of link: its bandwidth and the latency of one message.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Link {
    pub bytes_per_s: f64,
    pub latency_s: f64,
}

/// Resolved hardware figures (peak rates; [`Hardware::achievable`] scales them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hardware {
    /// The preset's name, or `custom`.
    pub name: String,
    pub flops_per_s: f64,
    pub hbm_bytes_per_s: f64,
    pub memory_bytes: f64,
    pub intra_node: Link,
    pub inter_node: Link,
    pub achievable_fraction: f64,
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
            memory_bytes: memory_gb * 1e9,
            intra_node: Link {
                bytes_per_s: 450e9,
                latency_s: NVLINK_LATENCY_S,
            },
            inter_node: INTER_NODE_400G,
            achievable_fraction: DEFAULT_ACHIEVABLE_FRACTION,
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
            memory_bytes: self.memory_bytes,
            intra_node: scale(self.intra_node),
            inter_node: scale(self.inter_node),
            achievable_fraction: 1.0,
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

impl HardwareSpec {
    /// A spec naming only a preset.
    pub fn preset(name: &str) -> Self {
        Self {
            preset: Some(name.into()),
            ..Self::default()
        }
    }

    /// The preset with the overrides applied; without a preset every field must be given.
    pub fn resolve(&self) -> Result<Hardware, HardwareError> {
        let error = |field: &str, reason: String| HardwareError {
            field: field.into(),
            reason,
        };
        let base = match &self.preset {
            Some(name) => Some(Hardware::preset(name).ok_or_else(|| {
                error(
                    "preset",
                    format!(
                        "unknown preset `{name}` (known: {})",
                        Hardware::PRESETS.join(", ")
                    ),
                )
            })?),
            None => None,
        };
        // Each figure (in bytes and seconds): the override, else the preset's, else an error
        // naming the field.
        let figure = |field: &str, given: Option<f64>, preset: Option<f64>| {
            let value = given.or(preset).ok_or_else(|| {
                error(
                    field,
                    "missing: give it, or a `preset` to take it from".into(),
                )
            })?;
            if !(value.is_finite() && value > 0.0) {
                return Err(error(field, format!("{value} must be a positive number")));
            }
            Ok(value)
        };
        let b = base.as_ref();
        let achievable_fraction = figure(
            "achievable_fraction",
            self.achievable_fraction,
            b.map(|h| h.achievable_fraction),
        )?;
        if achievable_fraction > 1.0 {
            return Err(error(
                "achievable_fraction",
                format!("{achievable_fraction} is more than all of the peak (at most 1)"),
            ));
        }
        Ok(Hardware {
            name: self.preset.clone().unwrap_or_else(|| "custom".into()),
            flops_per_s: figure("flops_per_s", self.flops_per_s, b.map(|h| h.flops_per_s))?,
            hbm_bytes_per_s: figure(
                "hbm_bytes_per_s",
                self.hbm_bytes_per_s,
                b.map(|h| h.hbm_bytes_per_s),
            )?,
            memory_bytes: figure(
                "memory_gb",
                self.memory_gb.map(|gb| gb * 1e9),
                b.map(|h| h.memory_bytes),
            )?,
            intra_node: Link {
                bytes_per_s: figure(
                    "intra_node_bytes_per_s",
                    self.intra_node_bytes_per_s,
                    b.map(|h| h.intra_node.bytes_per_s),
                )?,
                latency_s: figure(
                    "intra_node_latency_us",
                    self.intra_node_latency_us.map(|us| us * 1e-6),
                    b.map(|h| h.intra_node.latency_s),
                )?,
            },
            inter_node: Link {
                bytes_per_s: figure(
                    "inter_node_bytes_per_s",
                    self.inter_node_bytes_per_s,
                    b.map(|h| h.inter_node.bytes_per_s),
                )?,
                latency_s: figure(
                    "inter_node_latency_us",
                    self.inter_node_latency_us.map(|us| us * 1e-6),
                    b.map(|h| h.inter_node.latency_s),
                )?,
            },
            achievable_fraction,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            .contains("unknown preset `a100` (known: h100-sxm, h200)"));
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
