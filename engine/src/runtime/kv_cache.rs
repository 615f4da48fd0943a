//! Per-sequence KV cache: one preallocated `(kv_heads, capacity, head_dim)` buffer per layer for
//! keys and one for values, written in place, so decode never recomputes or copies the prefix.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

/// Keys and values of one layer for one sequence.
#[derive(Debug)]
pub struct LayerKvCache {
    keys: Tensor,
    values: Tensor,
    len: usize,
}

impl LayerKvCache {
    fn new(
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Ok(Self {
            keys: Tensor::zeros((kv_heads, capacity, head_dim), dtype, device)?,
            values: Tensor::zeros((kv_heads, capacity, head_dim), dtype, device)?,
            len: 0,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole key and value buffers, `(kv_heads, capacity, head_dim)`; the first `len()` rows
    /// of each head are filled.
    pub fn buffers(&self) -> (&Tensor, &Tensor) {
        (&self.keys, &self.values)
    }

    fn capacity(&self) -> usize {
        self.keys.dim(1).unwrap_or(0)
    }

    /// Appends `k` and `v` of shape `(kv_heads, tokens, head_dim)` (contiguous) and returns views of
    /// all cached keys and values. Grows by doubling when full: rare, since callers size the cache
    /// for prompt + completion up front.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let tokens = k.dim(1)?;
        let needed = self.len + tokens;
        if needed > self.capacity() {
            let capacity = needed.max(2 * self.capacity());
            let (heads, _, head_dim) = self.keys.dims3()?;
            let mut grown = Self::new(
                heads,
                capacity,
                head_dim,
                self.keys.dtype(),
                self.keys.device(),
            )?;
            grown.keys.slice_set(&self.keys, 1, 0)?;
            grown.values.slice_set(&self.values, 1, 0)?;
            grown.len = self.len;
            *self = grown;
        }
        self.keys.slice_set(k, 1, self.len)?;
        self.values.slice_set(v, 1, self.len)?;
        self.len = needed;
        Ok((
            self.keys.narrow(1, 0, needed)?,
            self.values.narrow(1, 0, needed)?,
        ))
    }
}

/// The KV cache of one sequence across all layers of the model (or of a pipeline stage).
#[derive(Debug)]
pub struct SequenceKvCache {
    layers: Vec<LayerKvCache>,
}

impl SequenceKvCache {
    pub fn new(
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let layers = (0..layers)
            .map(|_| LayerKvCache::new(kv_heads, capacity.max(1), head_dim, dtype, device))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    /// Tokens already cached (the position of the next token).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn layer_mut(&mut self, layer: usize) -> &mut LayerKvCache {
        &mut self.layers[layer]
    }
}
