//! The CUDA twins of the CPU kernels: PTX built from `fused.cu` by build.rs, loaded once per
//! device through candle's custom-module cache and launched on candle's stream, so they order
//! with every other operation on the tensors without extra synchronisation.

use candle_core::cuda_backend::cudarc::driver::{
    CudaView, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{bail, CudaStorage, Layout, Result, WithDType};

use crate::cpu::attention::DecodeAttentionShape;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused.ptx"));
const MODULE: &str = "shardlab_fused";
/// Warps per block of the decode-attention split kernel (`ATTN_WARPS` in fused.cu).
const ATTENTION_WARPS: u32 = 4;
/// Keys a decode-attention block takes at least: fewer would spend more time merging than reading.
const ATTENTION_MIN_KEYS_PER_SPLIT: usize = 128;
/// Blocks decode attention aims for over all heads: enough to occupy an H100's 132 SMs.
const ATTENTION_TARGET_BLOCKS: usize = 512;

/// An element type with kernels in fused.cu, and the suffix of their names.
pub trait Kernel: CudaDType + DeviceRepr + WithDType {
    const SUFFIX: &'static str;
}

impl Kernel for f32 {
    const SUFFIX: &'static str = "f32";
}
impl Kernel for half::bf16 {
    const SUFFIX: &'static str = "bf16";
}
impl Kernel for half::f16 {
    const SUFFIX: &'static str = "f16";
}

/// Runs `$body` with `$t` bound to the Rust type of `$dtype`, or fails naming `$op`.
macro_rules! dispatch {
    ($dtype:expr, $op:expr, |$t:ident| $body:expr) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $t = f32;
                $body
            }
            candle_core::DType::BF16 => {
                type $t = half::bf16;
                $body
            }
            candle_core::DType::F16 => {
                type $t = half::f16;
                $body
            }
            other => candle_core::bail!("{}: f32, bf16 or f16 only on CUDA, got {other:?}", $op),
        }
    };
}
pub(crate) use dispatch;

/// `name`'s instance for `T`, loaded once per device.
macro_rules! function {
    ($dev:expr, $name:expr, $t:ty) => {
        $dev.get_or_load_custom_func(&format!("{}_{}", $name, <$t>::SUFFIX), MODULE, PTX)
    };
}

fn view<'a, T: Kernel>(
    storage: &'a CudaStorage,
    layout: &Layout,
    op: &str,
    operand: &str,
) -> Result<CudaView<'a, T>> {
    let slice = storage.as_cuda_slice::<T>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(slice.slice(start..end)),
        None => bail!("{op}: {operand} must be contiguous"),
    }
}

fn blocks(n: usize, threads: usize) -> u32 {
    // Grid-stride loops cover the rest.
    n.div_ceil(threads).clamp(1, 1 << 16) as u32
}

/// `x + delta` then RMSNorm, into one `(2, rows, dim)` buffer (sums, then normed rows).
#[allow(clippy::too_many_arguments)]
pub fn add_rms_norm<T: Kernel>(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    rows: usize,
    dim: usize,
    eps: f32,
) -> Result<CudaStorage> {
    let op = "add-rms-norm";
    let dev = &s1.device;
    let (x, delta, weight) = (
        view::<T>(s1, l1, op, "x")?,
        view::<T>(s2, l2, op, "delta")?,
        view::<T>(s3, l3, op, "weight")?,
    );
    // SAFETY: the kernel writes every element (rows x dim sums, then as many normed values).
    let out = unsafe { dev.alloc::<T>(2 * rows * dim)? };
    if rows > 0 {
        let threads = dim.next_multiple_of(32).min(1024);
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (threads as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        let func = function!(dev, "add_rms_norm", T)?;
        let mut args = func.builder();
        let dim = dim as i32;
        args.arg(&x)
            .arg(&delta)
            .arg(&weight)
            .arg(&out)
            .arg(&dim)
            .arg(&eps);
        // SAFETY: arguments match the kernel's signature in fused.cu.
        unsafe { args.launch(cfg) }.w()?;
    }
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

/// `silu(gate) * up`.
pub fn swiglu<T: Kernel>(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> Result<CudaStorage> {
    let op = "swiglu";
    let dev = &s1.device;
    let (gate, up) = (view::<T>(s1, l1, op, "gate")?, view::<T>(s2, l2, op, "up")?);
    let n = gate.len();
    // SAFETY: the kernel writes all n elements.
    let out = unsafe { dev.alloc::<T>(n)? };
    if n > 0 {
        let cfg = LaunchConfig {
            grid_dim: (blocks(n, 256), 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let func = function!(dev, "swiglu", T)?;
        let mut args = func.builder();
        args.arg(&gate).arg(&up).arg(&out).arg(&n);
        // SAFETY: arguments match the kernel's signature in fused.cu.
        unsafe { args.launch(cfg) }.w()?;
    }
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

/// Rotary embedding over `x` `(tokens, heads, head_dim)` in place.
#[allow(clippy::too_many_arguments)]
pub fn rope_in_place<T: Kernel>(
    s1: &mut CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    tokens: usize,
    heads: usize,
    head_dim: usize,
) -> Result<()> {
    let op = "rope-in-place";
    let dev = s1.device.clone();
    let (cos, sin) = (view::<T>(s2, l2, op, "cos")?, view::<T>(s3, l3, op, "sin")?);
    let Some((start, end)) = l1.contiguous_offsets() else {
        bail!("{op}: x must be contiguous");
    };
    if end - start != tokens * heads * head_dim {
        bail!(
            "{op}: x holds {} values, not ({tokens}, {heads}, {head_dim})",
            end - start
        );
    }
    let pairs = tokens * heads * head_dim / 2;
    if pairs == 0 {
        return Ok(());
    }
    let mut x = s1.as_cuda_slice_mut::<T>()?.slice_mut(start..end);
    let cfg = LaunchConfig {
        grid_dim: (blocks(pairs, 256), 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let func = function!(&dev, "rope_in_place", T)?;
    let mut args = func.builder();
    let (tokens, heads, head_dim) = (tokens as i32, heads as i32, head_dim as i32);
    args.arg(&mut x)
        .arg(&cos)
        .arg(&sin)
        .arg(&tokens)
        .arg(&heads)
        .arg(&head_dim);
    // SAFETY: arguments match the kernel's signature in fused.cu.
    unsafe { args.launch(cfg) }.w()?;
    Ok(())
}

/// Decode attention split over the keys, then the splits merged: `(1, heads * head_dim)`.
#[allow(clippy::too_many_arguments)]
pub fn decode_attention<T: Kernel>(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    shape: DecodeAttentionShape,
    scale: f32,
) -> Result<CudaStorage> {
    let op = "decode-attention";
    let dev = &s1.device;
    let (q, keys, values) = (
        view::<T>(s1, l1, op, "q")?,
        view::<T>(s2, l2, op, "keys")?,
        view::<T>(s3, l3, op, "values")?,
    );
    let DecodeAttentionShape {
        num_heads,
        num_kv_heads,
        head_dim,
        capacity,
        len,
    } = shape;
    let most_splits = (ATTENTION_TARGET_BLOCKS / num_heads).max(1);
    let splits = len
        .div_ceil(ATTENTION_MIN_KEYS_PER_SPLIT)
        .clamp(1, most_splits);
    let keys_per_split = len.div_ceil(splits);
    let splits = len.div_ceil(keys_per_split);
    // SAFETY: the split kernel writes every partial result, the combine kernel every output.
    let (part_out, part_max, part_sum, out) = unsafe {
        (
            dev.alloc::<f32>(num_heads * splits * head_dim)?,
            dev.alloc::<f32>(num_heads * splits)?,
            dev.alloc::<f32>(num_heads * splits)?,
            dev.alloc::<T>(num_heads * head_dim)?,
        )
    };
    let [heads, kv_heads, capacity, head_dim_i, len, keys_per_split, splits_i] = [
        num_heads,
        num_kv_heads,
        capacity,
        head_dim,
        len,
        keys_per_split,
        splits,
    ]
    .map(|v| v as i32);
    let split = function!(dev, "decode_attention_split", T)?;
    let mut args = split.builder();
    args.arg(&q)
        .arg(&keys)
        .arg(&values)
        .arg(&part_out)
        .arg(&part_max)
        .arg(&part_sum)
        .arg(&heads)
        .arg(&kv_heads)
        .arg(&capacity)
        .arg(&head_dim_i)
        .arg(&len)
        .arg(&keys_per_split)
        .arg(&scale);
    let cfg = LaunchConfig {
        grid_dim: (num_heads as u32, splits as u32, 1),
        block_dim: (ATTENTION_WARPS * 32, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: arguments match the kernel's signature in fused.cu; head_dim <= ATTN_MAX_DIM and a
    // multiple of 32 (checked by ops::decode_attention_supported's callers).
    unsafe { args.launch(cfg) }.w()?;
    let combine = function!(dev, "decode_attention_combine", T)?;
    let mut args = combine.builder();
    args.arg(&part_out)
        .arg(&part_max)
        .arg(&part_sum)
        .arg(&out)
        .arg(&splits_i)
        .arg(&head_dim_i);
    let cfg = LaunchConfig {
        grid_dim: (num_heads as u32, 1, 1),
        block_dim: (head_dim as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: as above.
    unsafe { args.launch(cfg) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}
