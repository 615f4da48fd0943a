//! The linear layer as a candle operation: a streaming kernel for decode's few rows.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

/// Largest number of rows of `x` for which the streaming kernel beats a packed GEMM.
pub const SMALL_BATCH_ROWS: usize = 16;

/// `x W^T` for `x` of shape `(m, k)` and `W` of shape `(n, k)`: the streaming kernel for f32 CPU
/// tensors with few rows, candle's matmul otherwise.
pub fn linear_small_batch(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (m, _) = x.dims2()?;
    let usable = x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32;
    if usable && m <= SMALL_BATCH_ROWS && x.is_contiguous() && w.is_contiguous() {
        x.apply_op2_no_bwd(w, &StreamingLinear)
    } else {
        x.matmul(&w.t()?)
    }
}

struct StreamingLinear;

impl CustomOp2 for StreamingLinear {
    fn name(&self) -> &'static str {
        "streaming-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 {
            candle_core::bail!(
                "streaming-linear: x is {:?} but W is {:?}",
                l1.shape(),
                l2.shape()
            );
        }
        let (CpuStorage::F32(x), CpuStorage::F32(w)) = (s1, s2) else {
            candle_core::bail!("streaming-linear: f32 only");
        };
        let (Some((x0, x1)), Some((w0, w1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("streaming-linear: contiguous inputs only");
        };
        let mut y = vec![0f32; m * n];
        let threads = candle_core::utils::get_num_threads();
        crate::cpu::gemv::matmul_xwt(&x[x0..x1], &w[w0..w1], &mut y, m, k, n, threads);
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn agrees_with_candle_matmul() {
        let x = Tensor::randn(0f32, 1., (3, 96), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 1., (40, 96), &Device::Cpu).unwrap();
        let ours = linear_small_batch(&x, &w).unwrap();
        let theirs = x.matmul(&w.t().unwrap()).unwrap();
        let diff = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "{diff}");
    }
}
