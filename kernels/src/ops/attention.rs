//! `decode_attention`: one new query token against its KV cache, grouped-query heads read in
//! place.

#[cfg(feature = "cuda")]
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, DType, Layout, Result, Shape, Tensor};

/// Decode attention (one query token) against a KV cache buffer of shape
/// `(num_kv_heads, capacity, head_dim)` holding `len` tokens. `q` is `(num_heads, head_dim)`;
/// returns `(1, num_heads * head_dim)`. f32 on the CPU; f32, bf16 or f16 on CUDA with `head_dim`
/// a multiple of 32 up to 256. Callers check [`decode_attention_supported`] and fall back to
/// matmuls otherwise.
pub fn decode_attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    len: usize,
    scale: f32,
) -> Result<Tensor> {
    q.apply_op3_no_bwd(keys, values, &DecodeAttention { len, scale })
}

/// Widest head the CUDA kernel takes (`ATTN_MAX_DIM` in src/cuda/fused.cu).
const CUDA_MAX_HEAD_DIM: usize = 256;

/// Whether [`decode_attention`] can run on these tensors.
pub fn decode_attention_supported(q: &Tensor, keys: &Tensor) -> bool {
    if q.dtype() != keys.dtype() {
        return false;
    }
    if q.device().is_cpu() {
        return q.dtype() == DType::F32;
    }
    let head_dim = q.dims().last().copied().unwrap_or(0);
    cfg!(feature = "cuda")
        && q.device().is_cuda()
        && matches!(q.dtype(), DType::F32 | DType::BF16 | DType::F16)
        && head_dim % 32 == 0
        && head_dim <= CUDA_MAX_HEAD_DIM
}

struct DecodeAttention {
    len: usize,
    scale: f32,
}

impl DecodeAttention {
    const NAME: &'static str = "decode-attention";

    /// The call's shape, after checking the operands.
    fn check(
        &self,
        l1: &Layout,
        l2: &Layout,
        l3: &Layout,
    ) -> Result<crate::cpu::attention::DecodeAttentionShape> {
        let (num_heads, head_dim) = l1.shape().dims2()?;
        let (num_kv_heads, capacity, kv_dim) = l2.shape().dims3()?;
        if kv_dim != head_dim
            || l3.shape() != l2.shape()
            || num_kv_heads == 0
            || num_heads % num_kv_heads != 0
        {
            bail!(
                "{}: q {:?}, keys {:?}, values {:?}",
                Self::NAME,
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        if self.len > capacity || self.len == 0 {
            bail!(
                "{}: {} tokens in a cache of {capacity}",
                Self::NAME,
                self.len
            );
        }
        Ok(crate::cpu::attention::DecodeAttentionShape {
            num_heads,
            num_kv_heads,
            head_dim,
            capacity,
            len: self.len,
        })
    }
}

impl candle_core::CustomOp3 for DecodeAttention {
    fn name(&self) -> &'static str {
        Self::NAME
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
        let shape = self.check(l1, l2, l3)?;
        let (CpuStorage::F32(q), CpuStorage::F32(k), CpuStorage::F32(v)) = (s1, s2, s3) else {
            bail!("{}: f32 only on the CPU", Self::NAME);
        };
        let n = Self::NAME;
        let mut out = vec![0f32; shape.num_heads * shape.head_dim];
        crate::cpu::attention::decode_attention(
            super::contiguous(q, l1, n, "q")?,
            super::contiguous(k, l2, n, "keys")?,
            super::contiguous(v, l3, n, "values")?,
            &mut out,
            shape,
            self.scale,
        );
        Ok((
            CpuStorage::F32(out),
            Shape::from((1, shape.num_heads * shape.head_dim)),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let shape = self.check(l1, l2, l3)?;
        let dtype = s1.dtype();
        if s2.dtype() != dtype || s3.dtype() != dtype {
            bail!("{}: mixed dtypes", Self::NAME);
        }
        let storage = crate::cuda::dispatch!(dtype, Self::NAME, |T| {
            crate::cuda::decode_attention::<T>(s1, l1, s2, l2, s3, l3, shape, self.scale)
        })?;
        Ok((storage, Shape::from((1, shape.num_heads * shape.head_dim))))
    }
}
