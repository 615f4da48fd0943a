//! `swiglu`: SwiGLU's `silu(gate) * up` as one operation.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::contiguous;
use crate::cpu::element::Element;

/// `silu(gate) * up` element-wise; both the same shape, f32, bf16 or f16.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.apply_op2_no_bwd(up, &Swiglu)
}

struct Swiglu;

impl Swiglu {
    const NAME: &'static str = "swiglu";

    fn check(l1: &Layout, l2: &Layout) -> Result<()> {
        if l1.shape() != l2.shape() {
            bail!(
                "{}: gate {:?} but up {:?}",
                Self::NAME,
                l1.shape(),
                l2.shape()
            );
        }
        Ok(())
    }

    fn cpu<T: Element>(gate: &[T], up: &[T]) -> Vec<T> {
        let mut out = vec![T::from_f32(0.0); gate.len()];
        crate::cpu::swiglu::swiglu(gate, up, &mut out);
        out
    }
}

impl CustomOp2 for Swiglu {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Self::check(l1, l2)?;
        let n = Self::NAME;
        let storage = match (s1, s2) {
            (CpuStorage::F32(g), CpuStorage::F32(u)) => CpuStorage::F32(Self::cpu(
                contiguous(g, l1, n, "gate")?,
                contiguous(u, l2, n, "up")?,
            )),
            (CpuStorage::BF16(g), CpuStorage::BF16(u)) => CpuStorage::BF16(Self::cpu(
                contiguous(g, l1, n, "gate")?,
                contiguous(u, l2, n, "up")?,
            )),
            (CpuStorage::F16(g), CpuStorage::F16(u)) => CpuStorage::F16(Self::cpu(
                contiguous(g, l1, n, "gate")?,
                contiguous(u, l2, n, "up")?,
            )),
            _ => bail!(
                "{n}: f32, bf16 or f16 of one dtype only, got {:?} and {:?}",
                s1.dtype(),
                s2.dtype()
            ),
        };
        Ok((storage, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        Self::check(l1, l2)?;
        if s1.dtype() != s2.dtype() {
            bail!(
                "{}: gate {:?} but up {:?}",
                Self::NAME,
                s1.dtype(),
                s2.dtype()
            );
        }
        let storage = crate::cuda::dispatch!(s1.dtype(), Self::NAME, |T| {
            crate::cuda::swiglu::<T>(s1, l1, s2, l2)
        })?;
        Ok((storage, l1.shape().clone()))
    }
}
