//! Kernels as candle operations.

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

/// Decode attention (one query token) against a KV cache buffer of shape
/// `(num_kv_heads, capacity, head_dim)` holding `len` tokens. `q` is `(num_heads, head_dim)`;
/// returns `(1, num_heads * head_dim)`. f32 CPU tensors only; callers fall back to matmuls otherwise.
pub fn decode_attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    len: usize,
    scale: f32,
) -> Result<Tensor> {
    q.apply_op3_no_bwd(keys, values, &DecodeAttention { len, scale })
}

/// Whether [`decode_attention`] can run on these tensors.
pub fn decode_attention_supported(q: &Tensor, keys: &Tensor) -> bool {
    q.device().is_cpu() && q.dtype() == DType::F32 && keys.dtype() == DType::F32
}

struct DecodeAttention {
    len: usize,
    scale: f32,
}

impl candle_core::CustomOp3 for DecodeAttention {
    fn name(&self) -> &'static str {
        "decode-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (num_heads, head_dim) = l1.shape().dims2()?;
        let (num_kv_heads, capacity, kv_dim) = l2.shape().dims3()?;
        if kv_dim != head_dim
            || l3.shape() != l2.shape()
            || num_kv_heads == 0
            || num_heads % num_kv_heads != 0
        {
            candle_core::bail!(
                "decode-attention: q {:?}, keys {:?}, values {:?}",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        if self.len > capacity {
            candle_core::bail!(
                "decode-attention: {} tokens in a cache of {capacity}",
                self.len
            );
        }
        let (CpuStorage::F32(q), CpuStorage::F32(k), CpuStorage::F32(v)) = (s1, s2, s3) else {
            candle_core::bail!("decode-attention: f32 only");
        };
        let (Some((q0, q1)), Some((k0, k1)), Some((v0, v1))) = (
            l1.contiguous_offsets(),
            l2.contiguous_offsets(),
            l3.contiguous_offsets(),
        ) else {
            candle_core::bail!("decode-attention: contiguous inputs only");
        };
        let mut out = vec![0f32; num_heads * head_dim];
        let shape = crate::cpu::attention::DecodeAttentionShape {
            num_heads,
            num_kv_heads,
            head_dim,
            capacity,
            len: self.len,
        };
        crate::cpu::attention::decode_attention(
            &q[q0..q1],
            &k[k0..k1],
            &v[v0..v1],
            &mut out,
            shape,
            self.scale,
        );
        Ok((CpuStorage::F32(out), Shape::from((1, num_heads * head_dim))))
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
