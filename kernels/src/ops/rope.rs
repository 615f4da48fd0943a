//! `rope_in_place`: rotary embedding written over its input, no new buffer.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, InplaceOp3, Layout, Result, Tensor};

use super::{contiguous, contiguous_mut};
use crate::cpu::element::Element;

/// Rotates `x` of shape `(tokens, heads, head_dim)` (or `(1, tokens, heads, head_dim)`) in place,
/// HF's rotate-half layout; `cos` and `sin` are `(tokens, head_dim / 2)`, x's dtype.
///
/// `x` must be contiguous and own its storage: every tensor sharing it sees the rotation.
pub fn rope_in_place(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<()> {
    let dims = x.dims();
    let (tokens, heads, head_dim) = match *dims {
        [t, h, d] | [1, t, h, d] => (t, h, d),
        _ => bail!(
            "{}: x must be (tokens, heads, head_dim), got {dims:?}",
            RopeInPlace::NAME
        ),
    };
    x.inplace_op3(
        cos,
        sin,
        &RopeInPlace {
            tokens,
            heads,
            head_dim,
        },
    )
}

struct RopeInPlace {
    tokens: usize,
    heads: usize,
    head_dim: usize,
}

impl RopeInPlace {
    const NAME: &'static str = "rope-in-place";

    fn check(&self, l2: &Layout, l3: &Layout) -> Result<()> {
        let want = (self.tokens, self.head_dim / 2);
        if !self.head_dim.is_multiple_of(2)
            || l2.shape().dims2()? != want
            || l3.shape().dims2()? != want
        {
            bail!(
                "{}: head_dim {}, cos {:?}, sin {:?}, want ({}, {})",
                Self::NAME,
                self.head_dim,
                l2.shape(),
                l3.shape(),
                want.0,
                want.1
            );
        }
        Ok(())
    }

    fn cpu<T: Element>(&self, x: &mut [T], cos: &[T], sin: &[T]) {
        crate::cpu::rope::rope_in_place(x, cos, sin, self.heads, self.head_dim);
    }
}

impl InplaceOp3 for RopeInPlace {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        self.check(l2, l3)?;
        let n = Self::NAME;
        match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(c), CpuStorage::F32(s)) => self.cpu(
                contiguous_mut(x, l1, n, "x")?,
                contiguous(c, l2, n, "cos")?,
                contiguous(s, l3, n, "sin")?,
            ),
            (CpuStorage::BF16(x), CpuStorage::BF16(c), CpuStorage::BF16(s)) => self.cpu(
                contiguous_mut(x, l1, n, "x")?,
                contiguous(c, l2, n, "cos")?,
                contiguous(s, l3, n, "sin")?,
            ),
            (CpuStorage::F16(x), CpuStorage::F16(c), CpuStorage::F16(s)) => self.cpu(
                contiguous_mut(x, l1, n, "x")?,
                contiguous(c, l2, n, "cos")?,
                contiguous(s, l3, n, "sin")?,
            ),
            (x, _, _) => bail!(
                "{n}: f32, bf16 or f16 of one dtype only, got {:?}",
                x.dtype()
            ),
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &mut candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<()> {
        self.check(l2, l3)?;
        let dtype = s1.dtype();
        if s2.dtype() != dtype || s3.dtype() != dtype {
            bail!("{}: mixed dtypes", Self::NAME);
        }
        crate::cuda::dispatch!(dtype, Self::NAME, |T| {
            crate::cuda::rope_in_place::<T>(
                s1,
                l1,
                s2,
                l2,
                s3,
                l3,
                self.tokens,
                self.heads,
                self.head_dim,
            )
        })
    }
}
