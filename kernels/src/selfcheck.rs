//! Each fused kernel on a device against its CPU version, on the shapes the engine meets: the
//! check `engine check-kernels` prints and the CUDA tests assert. The reference runs in f32 on the
//! CPU; the candidate gets the same inputs in `dtype` on `device`.

use candle_core::{DType, Device, Result, Tensor};

/// One kernel's comparison.
#[derive(Debug, Clone)]
pub struct KernelCheck {
    pub kernel: &'static str,
    pub shape: String,
    pub dtype: DType,
    pub max_abs_diff: f32,
    pub tolerance: f32,
}

impl KernelCheck {
    pub fn passed(&self) -> bool {
        self.max_abs_diff <= self.tolerance
    }
}

impl std::fmt::Display for KernelCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<17} {:<22} {:<5} max |diff| {:.3e} (tolerance {:.0e}) {}",
            self.kernel,
            self.shape,
            format!("{:?}", self.dtype).to_lowercase(),
            self.max_abs_diff,
            self.tolerance,
            if self.passed() { "ok" } else { "FAILED" }
        )
    }
}

/// Tolerance for outputs of order 1-4: f32 allows the GPU's fast exp and division; bf16 one
/// rounding of an 8-bit mantissa at 4 (2^-6) plus the inputs' own rounding.
fn tolerance(dtype: DType) -> f32 {
    match dtype {
        DType::F32 => 1e-4,
        DType::F16 => 1e-2,
        _ => 6e-2,
    }
}

fn uniform(shape: &[usize], seed: u64, half_width: f32) -> Result<Tensor> {
    let mut data = vec![0f32; shape.iter().product()];
    crate::cpu::random::fill_uniform(&mut data, seed, 0.0, half_width);
    Tensor::from_vec(data, shape, &Device::Cpu)
}

fn max_diff(candidate: &Tensor, reference: &Tensor) -> Result<f32> {
    let candidate = candidate.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    (candidate - reference)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()
}

/// Runs every kernel on `device` in `dtype` and on the CPU in f32.
pub fn check_against_cpu(device: &Device, dtype: DType) -> Result<Vec<KernelCheck>> {
    let on = |t: &Tensor| t.to_dtype(dtype)?.to_device(device);
    let mut checks = Vec::new();
    let mut record = |kernel, shape: String, diff| {
        checks.push(KernelCheck {
            kernel,
            shape,
            dtype,
            max_abs_diff: diff,
            tolerance: tolerance(dtype),
        })
    };

    for (rows, dim) in [(1, 576), (5, 8192), (300, 1024)] {
        let (x, delta) = (
            uniform(&[rows, dim], 1, 1.0)?,
            uniform(&[rows, dim], 2, 1.0)?,
        );
        let weight = (uniform(&[dim], 3, 0.5)? + 1.0)?;
        let (_, reference) = crate::add_rms_norm(&x, &delta, &weight, 1e-5)?;
        let (_, candidate) = crate::add_rms_norm(&on(&x)?, &on(&delta)?, &on(&weight)?, 1e-5)?;
        record(
            "add_rms_norm",
            format!("({rows}, {dim})"),
            max_diff(&candidate, &reference)?,
        );
    }

    for (rows, dim) in [(1, 3584), (16, 3584), (512, 1536)] {
        let (gate, up) = (
            uniform(&[rows, dim], 4, 6.0)?,
            uniform(&[rows, dim], 5, 1.0)?,
        );
        let reference = crate::swiglu(&gate, &up)?;
        let candidate = crate::swiglu(&on(&gate)?, &on(&up)?)?;
        record(
            "swiglu",
            format!("({rows}, {dim})"),
            max_diff(&candidate, &reference)?,
        );
    }

    for (tokens, heads, head_dim) in [(1, 8, 128), (37, 9, 64), (512, 8, 128)] {
        let x = uniform(&[tokens, heads, head_dim], 6, 1.0)?;
        let angles = uniform(&[tokens, head_dim / 2], 7, 50.0)?;
        let (cos, sin) = (angles.cos()?, angles.sin()?);
        let reference = x.copy()?;
        crate::rope_in_place(&reference, &cos, &sin)?;
        let candidate = on(&x)?;
        crate::rope_in_place(&candidate, &on(&cos)?, &on(&sin)?)?;
        record(
            "rope_in_place",
            format!("({tokens}, {heads}, {head_dim})"),
            max_diff(&candidate, &reference)?,
        );
    }

    for (heads, kv_heads, head_dim, capacity, len) in [
        (9, 3, 64, 64, 37),
        (8, 1, 128, 4096, 3000),
        (64, 8, 128, 512, 300),
    ] {
        let q = uniform(&[heads, head_dim], 8, 1.0)?;
        let keys = uniform(&[kv_heads, capacity, head_dim], 9, 1.0)?;
        let values = uniform(&[kv_heads, capacity, head_dim], 10, 1.0)?;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let reference = crate::decode_attention(&q, &keys, &values, len, scale)?;
        let (q, keys, values) = (on(&q)?, on(&keys)?, on(&values)?);
        if !crate::decode_attention_supported(&q, &keys) {
            continue;
        }
        let candidate = crate::decode_attention(&q, &keys, &values, len, scale)?;
        record(
            "decode_attention",
            format!("{heads}/{kv_heads}x{head_dim}, {len} keys"),
            max_diff(&candidate, &reference)?,
        );
    }
    Ok(checks)
}
