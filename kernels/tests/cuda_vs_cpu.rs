//! The CUDA kernels against their CPU versions (`kernels::selfcheck`), in f32, bf16 and f16.
//! Built only with the `cuda` feature; it needs a GPU and fails without one (no silent skip).
//! `scripts/device-check.sh` runs the same comparison through `engine check-kernels`.
#![cfg(feature = "cuda")]

use candle_core::{DType, Device};

#[test]
fn cuda_kernels_match_their_cpu_versions() {
    let device = Device::new_cuda(0).expect("this test needs a CUDA GPU");
    let mut failures = Vec::new();
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for check in kernels::selfcheck::check_against_cpu(&device, dtype).unwrap() {
            eprintln!("{check}");
            if !check.passed() {
                failures.push(check.to_string());
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
