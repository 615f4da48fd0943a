//! Moving activations between ranks: through the communicator's [`DeviceCollectives`] when it
//! has them and the tensor is on a GPU (NCCL, in the model's dtype, no host copy), else through
//! host f32 buffers (MPI; a CPU tensor's f32 data is its own storage).

use candle_core::{DType, Device, Tensor};

use super::comm::Communicator;
use crate::error::Result;

/// Sends the `(rows, cols)` activations `x` to `dest`.
pub fn send_activations(comm: &dyn Communicator, dest: usize, x: &Tensor) -> Result<()> {
    if let Some(device) = on_device(comm, x.device()) {
        let _span =
            tracing::info_span!("send", values = x.elem_count(), plane = "device").entered();
        return Ok(device.send(dest, &x.contiguous()?)?);
    }
    let data = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let _span = tracing::info_span!("send", floats = data.len()).entered();
    Ok(comm.send(dest, &data)?)
}

/// Receives `(rows, cols)` activations from `src` as a `dtype` tensor on `device`.
pub fn recv_activations(
    comm: &dyn Communicator,
    src: usize,
    (rows, cols): (usize, usize),
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    if let Some(collectives) = on_device(comm, device) {
        let _span = tracing::info_span!("recv", values = rows * cols, plane = "device").entered();
        return Ok(collectives.recv(src, &[rows, cols], dtype, device)?);
    }
    let mut data = vec![0f32; rows * cols];
    {
        let _span = tracing::info_span!("recv", floats = data.len()).entered();
        comm.recv(src, &mut data)?;
    }
    Ok(Tensor::from_vec(data, (rows, cols), device)?.to_dtype(dtype)?)
}

/// The device collectives to use for tensors on `device`, if any.
pub fn on_device<'a>(
    comm: &'a dyn Communicator,
    device: &Device,
) -> Option<&'a dyn super::comm::DeviceCollectives> {
    if device.is_cpu() {
        return None;
    }
    comm.device_collectives()
}
