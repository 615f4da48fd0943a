//! [`HardwareSpec`]: a profile's `[hardware]` section as written. It names a built-in preset
//! (`h100-sxm`, `h200`) or a preset file (`preset_file`, e.g. one `driver calibrate` wrote for a
//! CPU machine), and overrides any of its fields; without either, every figure is given.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::hardware::{CpuHost, Hardware, HardwareError, Link};

/// `[hardware]` in a cluster profile: a preset, and any field overridden (all optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareSpec {
    /// `h100-sxm` or `h200` (see [`Hardware::PRESETS`]), or the name a preset file gives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// A TOML file whose `[hardware]` table is the starting point, relative to the profile's
    /// folder (e.g. `hardware/cpu-local.toml`); this section's fields override it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset_file: Option<PathBuf>,
    /// Dense FLOP/s of one GPU (bf16, no sparsity), or of one CPU rank on its threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flops_per_s: Option<f64>,
    /// Memory bandwidth of one GPU (HBM), or the streaming read rate of one CPU rank, bytes/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hbm_bytes_per_s: Option<f64>,
    /// FLOP/s of the decode-attention kernel (default: `flops_per_s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_attention_flops_per_s: Option<f64>,
    /// FLOP/s of prefill's causal attention (default: `flops_per_s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefill_attention_flops_per_s: Option<f64>,
    /// Time a decoder layer costs in decode beyond its kernels' rooflines (the engine's glue
    /// between kernels), microseconds per layer per pass (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_overhead_us: Option<f64>,
    /// Memory of one GPU, or of one CPU host, GB (1e9 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_gb: Option<f64>,
    /// Rank-to-rank bandwidth inside a node (NVLink; MPI over shared memory), bytes/s per
    /// direction per rank.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intra_node_bytes_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intra_node_latency_us: Option<f64>,
    /// Network bandwidth of one node to the others, bytes/s per direction (400 Gb/s = 50e9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inter_node_bytes_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inter_node_latency_us: Option<f64>,
    /// Share of every peak rate (FLOP/s, memory, links) real kernels reach, in (0, 1]; 1 for
    /// measured (calibrated) rates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub achievable_fraction: Option<f64>,
    /// CPU machines: cores of one host, shared by the ranks on it. Unset: GPUs, one per rank.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_cores: Option<usize>,
    /// CPU machines: cores one rank computes on (`RAYON_NUM_THREADS`; default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads_per_rank: Option<usize>,
    /// CPU machines: matmul FLOP/s of a rank on every core of the host at once, all together
    /// (default: `flops_per_s` times the ranks that fit, nothing lost to sharing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_flops_per_s: Option<f64>,
    /// CPU machines: memory read rate of a rank on every core at once, all together (default:
    /// `hbm_bytes_per_s` times the ranks that fit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_memory_bytes_per_s: Option<f64>,
}

/// The file `preset_file` names: a `[hardware]` table and nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    hardware: HardwareSpec,
}

impl HardwareSpec {
    /// A spec naming only a preset.
    pub fn preset(name: &str) -> Self {
        Self {
            preset: Some(name.into()),
            ..Self::default()
        }
    }

    /// Reads a preset file (`[hardware]`, as `driver calibrate` writes it).
    pub fn read_preset_file(path: &Path) -> Result<Self, HardwareError> {
        let error = |reason: String| HardwareError {
            field: "preset_file".into(),
            reason: format!("{}: {reason}", path.display()),
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        let file: PresetFile = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
        if file.hardware.preset_file.is_some() {
            return Err(error("a preset file cannot name another".into()));
        }
        Ok(file.hardware)
    }

    /// Replaces `preset_file` (relative to `base`) by its figures, this spec's fields on top, so
    /// the spec stands alone.
    pub fn inline_preset_file(self, base: &Path) -> Result<Self, HardwareError> {
        let Some(file) = &self.preset_file else {
            return Ok(self);
        };
        let from_file = Self::read_preset_file(&base.join(file))?;
        Ok(self.over(from_file))
    }

    /// This spec's fields where given, `base`'s elsewhere (`preset_file` dropped).
    pub fn over(self, base: Self) -> Self {
        Self {
            preset: self.preset.or(base.preset),
            preset_file: None,
            flops_per_s: self.flops_per_s.or(base.flops_per_s),
            hbm_bytes_per_s: self.hbm_bytes_per_s.or(base.hbm_bytes_per_s),
            decode_attention_flops_per_s: self
                .decode_attention_flops_per_s
                .or(base.decode_attention_flops_per_s),
            prefill_attention_flops_per_s: self
                .prefill_attention_flops_per_s
                .or(base.prefill_attention_flops_per_s),
            layer_overhead_us: self.layer_overhead_us.or(base.layer_overhead_us),
            memory_gb: self.memory_gb.or(base.memory_gb),
            intra_node_bytes_per_s: self.intra_node_bytes_per_s.or(base.intra_node_bytes_per_s),
            intra_node_latency_us: self.intra_node_latency_us.or(base.intra_node_latency_us),
            inter_node_bytes_per_s: self.inter_node_bytes_per_s.or(base.inter_node_bytes_per_s),
            inter_node_latency_us: self.inter_node_latency_us.or(base.inter_node_latency_us),
            achievable_fraction: self.achievable_fraction.or(base.achievable_fraction),
            host_cores: self.host_cores.or(base.host_cores),
            threads_per_rank: self.threads_per_rank.or(base.threads_per_rank),
            host_flops_per_s: self.host_flops_per_s.or(base.host_flops_per_s),
            host_memory_bytes_per_s: self
                .host_memory_bytes_per_s
                .or(base.host_memory_bytes_per_s),
        }
    }

    /// The preset with the overrides applied; without a built-in preset every figure must be
    /// given (a `preset_file` must have been inlined first).
    pub fn resolve(&self) -> Result<Hardware, HardwareError> {
        let error = |field: &str, reason: String| HardwareError {
            field: field.into(),
            reason,
        };
        if let Some(file) = &self.preset_file {
            return Err(error(
                "preset_file",
                format!(
                    "{} was not read (a profile loaded from its file reads it)",
                    file.display()
                ),
            ));
        }
        // A name that is no built-in preset is only a label (a preset file's), when every
        // figure is given.
        let builtin = self.preset.as_deref().and_then(Hardware::preset);
        if let (Some(name), None) = (&self.preset, &builtin) {
            if self.flops_per_s.is_none() {
                return Err(error(
                    "preset",
                    format!(
                        "unknown preset `{name}` (known: {}; or a `preset_file`)",
                        Hardware::PRESETS.join(", ")
                    ),
                ));
            }
        }
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
        let b = builtin.as_ref();
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
        let flops_per_s = figure("flops_per_s", self.flops_per_s, b.map(|h| h.flops_per_s))?;
        let hbm_bytes_per_s = figure(
            "hbm_bytes_per_s",
            self.hbm_bytes_per_s,
            b.map(|h| h.hbm_bytes_per_s),
        )?;
        let link =
            |prefix: &str, bytes: Option<f64>, latency_us: Option<f64>, base: Option<Link>| {
                Ok::<_, HardwareError>(Link {
                    bytes_per_s: figure(
                        &format!("{prefix}_bytes_per_s"),
                        bytes,
                        base.map(|l| l.bytes_per_s),
                    )?,
                    latency_s: figure(
                        &format!("{prefix}_latency_us"),
                        latency_us.map(|us| us * 1e-6),
                        base.map(|l| l.latency_s),
                    )?,
                })
            };
        Ok(Hardware {
            name: self.preset.clone().unwrap_or_else(|| "custom".into()),
            flops_per_s,
            hbm_bytes_per_s,
            decode_attention_flops_per_s: figure(
                "decode_attention_flops_per_s",
                self.decode_attention_flops_per_s,
                Some(b.map_or(flops_per_s, |h| h.decode_attention_flops_per_s)),
            )?,
            prefill_attention_flops_per_s: figure(
                "prefill_attention_flops_per_s",
                self.prefill_attention_flops_per_s,
                Some(b.map_or(flops_per_s, |h| h.prefill_attention_flops_per_s)),
            )?,
            layer_overhead_s: match self.layer_overhead_us {
                Some(us) if us.is_finite() && us >= 0.0 => us * 1e-6,
                Some(us) => {
                    return Err(error(
                        "layer_overhead_us",
                        format!("{us} must be a number of microseconds, at least 0"),
                    ))
                }
                None => b.map_or(0.0, |h| h.layer_overhead_s),
            },
            memory_bytes: figure(
                "memory_gb",
                self.memory_gb.map(|gb| gb * 1e9),
                b.map(|h| h.memory_bytes),
            )?,
            intra_node: link(
                "intra_node",
                self.intra_node_bytes_per_s,
                self.intra_node_latency_us,
                b.map(|h| h.intra_node),
            )?,
            inter_node: link(
                "inter_node",
                self.inter_node_bytes_per_s,
                self.inter_node_latency_us,
                b.map(|h| h.inter_node),
            )?,
            achievable_fraction,
            host: self.cpu_host(flops_per_s, hbm_bytes_per_s)?,
        })
    }

    /// The CPU host, given one rank's rates (the defaults of the host's).
    fn cpu_host(
        &self,
        flops_per_s: f64,
        bytes_per_s: f64,
    ) -> Result<Option<CpuHost>, HardwareError> {
        let error = |field: &str, reason: &str| HardwareError {
            field: field.into(),
            reason: reason.into(),
        };
        let Some(cores) = self.host_cores else {
            if self.threads_per_rank.is_some()
                || self.host_flops_per_s.is_some()
                || self.host_memory_bytes_per_s.is_some()
            {
                return Err(error(
                    "host_cores",
                    "missing: threads_per_rank and host_* describe a CPU host; give its cores",
                ));
            }
            return Ok(None);
        };
        let threads_per_rank = self.threads_per_rank.unwrap_or(1);
        if cores == 0 || threads_per_rank == 0 {
            return Err(error(
                if cores == 0 {
                    "host_cores"
                } else {
                    "threads_per_rank"
                },
                "must be at least 1",
            ));
        }
        let slots = (cores / threads_per_rank).max(1) as f64;
        let host_rate = |field: &str, given: Option<f64>, rank: f64| match given {
            Some(v) if v.is_finite() && v > 0.0 => Ok(v),
            Some(v) => Err(error(field, &format!("{v} must be a positive number"))),
            None => Ok(rank * slots),
        };
        Ok(Some(CpuHost {
            cores,
            threads_per_rank,
            flops_per_s: host_rate("host_flops_per_s", self.host_flops_per_s, flops_per_s)?,
            memory_bytes_per_s: host_rate(
                "host_memory_bytes_per_s",
                self.host_memory_bytes_per_s,
                bytes_per_s,
            )?,
            // The cluster's `one_host` says (see `predict_strategies`).
            single_host: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu() -> HardwareSpec {
        HardwareSpec {
            preset: Some("cpu-test".into()),
            flops_per_s: Some(50e9),
            hbm_bytes_per_s: Some(10e9),
            decode_attention_flops_per_s: Some(3e9),
            memory_gb: Some(24.0),
            intra_node_bytes_per_s: Some(3e9),
            intra_node_latency_us: Some(3.0),
            inter_node_bytes_per_s: Some(3e9),
            inter_node_latency_us: Some(3.0),
            achievable_fraction: Some(1.0),
            host_cores: Some(2),
            ..HardwareSpec::default()
        }
    }

    #[test]
    fn a_cpu_host_resolves_with_its_cores_and_named_label() {
        let h = cpu().resolve().unwrap();
        assert_eq!(h.name, "cpu-test");
        assert_eq!(h.decode_attention_flops_per_s, 3e9);
        let host = h.host.unwrap();
        // Unstated, the host's rates are the rank's times the ranks that fit.
        assert_eq!((host.flops_per_s, host.memory_bytes_per_s), (100e9, 20e9));
        assert_eq!(
            (host.cores, host.threads_per_rank, host.single_host),
            (2, 1, false)
        );
        assert_eq!(host.slots(), 2);
        let two_threads = HardwareSpec {
            threads_per_rank: Some(2),
            ..cpu()
        };
        assert_eq!(two_threads.resolve().unwrap().host.unwrap().slots(), 1);
        let lone = HardwareSpec {
            host_cores: None,
            threads_per_rank: Some(1),
            ..cpu()
        };
        assert_eq!(lone.resolve().unwrap_err().field, "host_cores");
    }

    #[test]
    fn a_preset_file_is_the_base_and_the_section_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "# calibrated\n[hardware]\n{}",
            toml::to_string(&cpu()).unwrap()
        );
        std::fs::write(dir.path().join("cpu.toml"), text).unwrap();
        let spec = HardwareSpec {
            preset_file: Some("cpu.toml".into()),
            hbm_bytes_per_s: Some(20e9),
            ..HardwareSpec::default()
        };
        assert_eq!(spec.resolve().unwrap_err().field, "preset_file");
        let inlined = spec.inline_preset_file(dir.path()).unwrap();
        assert_eq!(inlined.preset_file, None);
        let h = inlined.resolve().unwrap();
        assert_eq!((h.hbm_bytes_per_s, h.flops_per_s), (20e9, 50e9));
        let missing = HardwareSpec {
            preset_file: Some("nope.toml".into()),
            ..HardwareSpec::default()
        };
        let err = missing.inline_preset_file(dir.path()).unwrap_err();
        assert!(err.reason.contains("nope.toml"), "{err}");
    }

    #[test]
    fn a_gpu_presets_attention_runs_at_its_flops_and_an_unknown_name_needs_figures() {
        let h = HardwareSpec::preset("h200").resolve().unwrap();
        assert_eq!(h.decode_attention_flops_per_s, h.flops_per_s);
        assert_eq!(h.host, None);
        let err = HardwareSpec::preset("cpu-x").resolve().unwrap_err();
        assert!(err.reason.contains("preset_file"), "{err}");
    }
}
