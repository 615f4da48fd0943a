//! Pipeline-parallel generation: each stage holds a contiguous range of layers; a step's batch is
//! split into micro-batches that flow stage to stage (activations by send/recv to the rank with the
//! same TP index in the next stage), so stage `s` works on micro-batch `i` while stage `s+1` works
//! on `i-1` (GPipe). The last stage samples; its choices are broadcast to every rank, which keeps
//! all ranks' bookkeeping (finished sequences, stop strings) identical: the control plane.

use std::time::Instant;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::generate::{
    finish, step_inputs, step_span, GenerationOutput, GenerationRequest, Generator,
};
use super::sampling::SampledToken;
use super::token_choice::summarize_rows;
use crate::dist::DistContext;
use crate::error::{EngineError, Result};
use crate::model::{SequenceBatch, StageOutput};

/// A sampled token as broadcast by the last stage.
#[derive(Serialize, Deserialize)]
struct WireToken {
    token: u32,
    logprob: f32,
    top: Vec<(u32, f32)>,
}

impl Generator<'_> {
    /// Completes every request across a `tp x pp` job. Every rank calls this with the same requests
    /// and gets the same outputs. `micro_batches` is the most micro-batches a step is split into.
    pub fn generate_distributed(
        &self,
        requests: &[GenerationRequest],
        ctx: &DistContext,
        micro_batches: usize,
    ) -> Result<Vec<GenerationOutput>> {
        let topo = ctx.topology;
        if topo.pp == 1 {
            return self.generate_tp(requests, ctx.tp_group.as_ref());
        }
        let clock = Instant::now();
        let hidden_size = self.model.config().hidden_size;
        let sampler_rank = topo.rank_in_stage(topo.pp - 1) - topo.tp_rank(); // last stage, tp rank 0
        let (mut done, mut active) = self.start(requests)?;
        let mut prefill = true;
        while !active.is_empty() {
            let _span = step_span(prefill, active.len()).entered();
            let chunk = active.len().div_ceil(micro_batches.max(1));
            let mut sampled: Vec<SampledToken> = Vec::with_capacity(active.len());
            for group in active.chunks_mut(chunk) {
                let params: Vec<_> = group.iter().map(|s| s.sampler.params().clone()).collect();
                let (tokens, caches) = step_inputs(group, requests, prefill);
                let rows: usize = tokens.iter().map(|t| t.len()).sum();
                let hidden = if topo.is_first_stage() {
                    None
                } else {
                    let mut data = vec![0f32; rows * hidden_size];
                    let _span = tracing::info_span!("recv", floats = data.len()).entered();
                    ctx.world
                        .recv(topo.rank_in_stage(topo.stage() - 1), &mut data)?;
                    let t = Tensor::from_vec(data, (rows, hidden_size), self.model.device())?;
                    Some(t.to_dtype(self.model.dtype())?)
                };
                match self.model.forward_stage(
                    SequenceBatch { tokens, caches },
                    hidden,
                    ctx.tp_group.as_ref(),
                )? {
                    StageOutput::Hidden(h) => {
                        let data = h
                            .to_dtype(candle_core::DType::F32)?
                            .flatten_all()?
                            .to_vec1::<f32>()?;
                        let _span = tracing::info_span!("send", floats = data.len()).entered();
                        ctx.world
                            .send(topo.rank_in_stage(topo.stage() + 1), &data)?;
                    }
                    StageOutput::Logits(logits) => {
                        let refs: Vec<_> = params.iter().collect();
                        let rows = summarize_rows(&logits, &refs, ctx.tp_group.as_ref())?;
                        for (seq, row) in group.iter_mut().zip(rows) {
                            sampled.push(seq.sampler.sample(&row));
                        }
                    }
                }
            }
            prefill = false;
            // The control plane: the last stage's choices reach every rank.
            let mut bytes = if topo.rank == sampler_rank {
                let wire: Vec<WireToken> = sampled
                    .iter()
                    .map(|s| WireToken {
                        token: s.token,
                        logprob: s.logprob,
                        top: s.top.clone(),
                    })
                    .collect();
                serde_json::to_vec(&wire).map_err(|e| EngineError::Request(e.to_string()))?
            } else {
                Vec::new()
            };
            ctx.world.broadcast_bytes(sampler_rank, &mut bytes)?;
            let wire: Vec<WireToken> = serde_json::from_slice(&bytes).map_err(|e| {
                EngineError::Request(format!("control plane: bad token message: {e}"))
            })?;
            if wire.len() != active.len() {
                return Err(EngineError::Request(format!(
                    "control plane: {} tokens for {} sequences",
                    wire.len(),
                    active.len()
                )));
            }
            let sampled = wire
                .into_iter()
                .map(|w| SampledToken {
                    token: w.token,
                    logprob: w.logprob,
                    top: w.top,
                })
                .collect();
            active = self.accept_all(active, sampled, &mut done, &clock)?;
        }
        Ok(finish(done))
    }
}
