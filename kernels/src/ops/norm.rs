//! `add_rms_norm`: the residual add and the RMSNorm after it as one operation.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};

use super::contiguous;
use crate::cpu::element::Element;

/// `(x + delta, rms_norm(x + delta) * weight)` over the last dimension, in one pass over the
/// rows. `x` and `delta` have the same shape `(.., dim)`, `weight` is `(dim)`; f32, bf16 or f16.
/// Both results are views of one buffer.
pub fn add_rms_norm(
    x: &Tensor,
    delta: &Tensor,
    weight: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor)> {
    let both = x.apply_op3_no_bwd(delta, weight, &AddRmsNorm { eps })?;
    Ok((both.get(0)?, both.get(1)?))
}

struct AddRmsNorm {
    eps: f32,
}

impl AddRmsNorm {
    const NAME: &'static str = "add-rms-norm";

    /// `(rows, dim)` after checking the operands' shapes and dtypes.
    fn check(
        &self,
        l1: &Layout,
        l2: &Layout,
        l3: &Layout,
        dtypes: [DType; 3],
    ) -> Result<(usize, usize)> {
        let dim = l3.shape().dims1()?;
        if l1.shape() != l2.shape() || l1.shape().dims().last() != Some(&dim) || dim == 0 {
            bail!(
                "{}: x {:?}, delta {:?}, weight {:?}",
                Self::NAME,
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        if dtypes[1] != dtypes[0] || dtypes[2] != dtypes[0] {
            bail!("{}: mixed dtypes {dtypes:?}", Self::NAME);
        }
        Ok((l1.shape().elem_count() / dim, dim))
    }

    fn output_shape(l1: &Layout) -> Shape {
        let mut dims = vec![2];
        dims.extend_from_slice(l1.shape().dims());
        Shape::from(dims)
    }

    fn cpu<T: Element>(&self, x: &[T], delta: &[T], weight: &[T]) -> Vec<T> {
        let mut out = vec![T::from_f32(0.0); 2 * x.len()];
        let (sum, normed) = out.split_at_mut(x.len());
        crate::cpu::norm::add_rms_norm(x, delta, weight, self.eps, sum, normed);
        out
    }
}

impl CustomOp3 for AddRmsNorm {
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
        self.check(l1, l2, l3, [s1.dtype(), s2.dtype(), s3.dtype()])?;
        let n = Self::NAME;
        let storage = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(d), CpuStorage::F32(w)) => {
                CpuStorage::F32(self.cpu(
                    contiguous(x, l1, n, "x")?,
                    contiguous(d, l2, n, "delta")?,
                    contiguous(w, l3, n, "weight")?,
                ))
            }
            (CpuStorage::BF16(x), CpuStorage::BF16(d), CpuStorage::BF16(w)) => {
                CpuStorage::BF16(self.cpu(
                    contiguous(x, l1, n, "x")?,
                    contiguous(d, l2, n, "delta")?,
                    contiguous(w, l3, n, "weight")?,
                ))
            }
            (CpuStorage::F16(x), CpuStorage::F16(d), CpuStorage::F16(w)) => {
                CpuStorage::F16(self.cpu(
                    contiguous(x, l1, n, "x")?,
                    contiguous(d, l2, n, "delta")?,
                    contiguous(w, l3, n, "weight")?,
                ))
            }
            _ => bail!("{n}: f32, bf16 or f16 only, got {:?}", s1.dtype()),
        };
        Ok((storage, Self::output_shape(l1)))
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
        let (rows, dim) = self.check(l1, l2, l3, [s1.dtype(), s2.dtype(), s3.dtype()])?;
        let storage = crate::cuda::dispatch!(s1.dtype(), Self::NAME, |T| {
            crate::cuda::add_rms_norm::<T>(s1, l1, s2, l2, s3, l3, rows, dim, self.eps)
        })?;
        Ok((storage, Self::output_shape(l1)))
    }
}
