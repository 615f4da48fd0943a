//! The SwiGLU feed-forward block (Shazeer, arXiv:2002.05202): `down(silu(gate(x)) * up(x))`.

use candle_core::{DType, Device, Tensor};

use super::parallel::{ColumnParallelLinear, RowParallelLinear, Shard};
use crate::checkpoint::Checkpoint;
use crate::config::LlamaConfig;
use crate::dist::Communicator;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Mlp {
    gate_proj: ColumnParallelLinear,
    up_proj: ColumnParallelLinear,
    down_proj: RowParallelLinear,
}

impl Mlp {
    /// Loads this rank's slice of the intermediate features.
    pub fn load(
        ck: &Checkpoint,
        prefix: &str,
        cfg: &LlamaConfig,
        shard: Shard,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let part = shard.even_range(i, "intermediate_size")?;
        let p = |name: &str| format!("{prefix}.{name}");
        Ok(Self {
            gate_proj: ColumnParallelLinear::load_rows(
                ck,
                &p("gate_proj"),
                i,
                h,
                part,
                dtype,
                device,
            )?,
            up_proj: ColumnParallelLinear::load_rows(ck, &p("up_proj"), i, h, part, dtype, device)?,
            down_proj: RowParallelLinear::load_cols(
                ck,
                &p("down_proj"),
                h,
                i,
                part,
                dtype,
                device,
            )?,
        })
    }

    pub fn forward(&self, x: &Tensor, tp: &dyn Communicator) -> Result<Tensor> {
        let hidden = kernels::swiglu(&self.gate_proj.forward(x)?, &self.up_proj.forward(x)?)?;
        self.down_proj.forward(&hidden, tp)
    }
}
