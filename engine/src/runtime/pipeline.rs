//! Pipeline-parallel generation on a synchronous tick schedule (as in GPipe / Megatron's
//! inference pipeline): the batch is split into `M >= pp` groups of sequences; at tick `k`, stage
//! `s` works on group `(k - s) mod M`. At the end of every tick each stage passes its output on —
//! hidden states to the next stage, and, from the last stage, the sampled tokens straight back to
//! the first stage — and takes its next input. With `M = pp` the tokens of a group arrive exactly
//! when the first stage needs them, so in steady state every stage is busy on every tick and no
//! step waits for the whole batch.
//!
//! Messages go to the rank with the same TP index in the neighbouring stage. Each is a small header
//! (which group, which sequences, what they were fed) plus, for hidden states, the activations.
//! Sends are blocking, so the ring first -> ... -> last -> first would deadlock if every stage sent
//! first; stage 1 receives before it sends, which breaks the cycle.

use std::time::Instant;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::generate::{
    finish, step_inputs, step_span, ActiveSequence, GenerationOutput, GenerationRequest, Generator,
};
use super::sampling::SampledToken;
use super::token_choice::summarize_rows;
use crate::dist::DistContext;
use crate::error::{EngineError, Result};
use crate::model::{SequenceBatch, StageOutput};

/// What passes between stages at the end of a tick.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Message {
    /// Nothing this tick (pipeline filling or draining, or a group with nothing to do).
    Idle,
    /// Hidden states of `group` follow as an f32 message of `rows x hidden`.
    Hidden {
        group: usize,
        prefill: bool,
        seqs: Vec<usize>,
        fed: Vec<u32>,
        rows: usize,
    },
    /// The last stage's choices for `group`, one per sequence of `seqs`.
    Tokens {
        group: usize,
        seqs: Vec<usize>,
        tokens: Vec<SampledToken>,
    },
    /// No more work: passed once around the ring.
    Done,
}

impl Generator<'_> {
    /// Completes every request across a `tp x pp` job. Every rank calls this with the same
    /// requests; the first stage's ranks return the outputs, the other ranks an empty list.
    /// `micro_batches` groups are cycled through the pipeline (at least `pp`).
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
        let (mut done, active) = self.start(requests)?;
        let groups_count = micro_batches.max(topo.pp);
        let per_group = active.len().div_ceil(groups_count).max(1);
        let mut groups: Vec<Vec<ActiveSequence>> = (0..groups_count).map(|_| Vec::new()).collect();
        for (i, seq) in active.into_iter().enumerate() {
            groups[i / per_group].push(seq);
        }
        let prev = topo.rank_in_stage((topo.stage() + topo.pp - 1) % topo.pp);
        let next = topo.rank_in_stage((topo.stage() + 1) % topo.pp);
        let hidden_size = self.model.config().hidden_size;

        // First stage: which groups still need their prefill, and which have tokens waiting.
        let mut prefilled = vec![false; groups_count];
        let mut ready: Vec<Option<Vec<SampledToken>>> = vec![None; groups_count];
        let mut in_flight = vec![false; groups_count];
        let mut input = Message::Idle;
        let mut input_data: Option<Tensor> = None;
        let mut sent_done = false;
        let mut tick = 0usize;
        loop {
            // 1. This tick's work.
            let mut output = Message::Idle;
            let mut output_data: Option<Vec<f32>> = None;
            if topo.is_first_stage() {
                if !sent_done {
                    let g = tick % groups_count;
                    if let Some(tokens) = ready[g].take() {
                        in_flight[g] = false;
                        groups[g] = self.accept_all(
                            std::mem::take(&mut groups[g]),
                            tokens,
                            &mut done,
                            &clock,
                        )?;
                    }
                    if !groups[g].is_empty() && !in_flight[g] {
                        let prefill = !prefilled[g];
                        prefilled[g] = true;
                        in_flight[g] = true;
                        let (message, data) =
                            self.run_group(&mut groups[g], g, requests, prefill, None, ctx)?;
                        output = message;
                        output_data = data;
                    } else if groups.iter().all(Vec::is_empty) && !in_flight.iter().any(|&f| f) {
                        output = Message::Done;
                        sent_done = true;
                    }
                }
            } else {
                match std::mem::replace(&mut input, Message::Idle) {
                    Message::Hidden {
                        group,
                        prefill,
                        seqs,
                        fed,
                        rows,
                    } => {
                        let group_seqs = &mut groups[group];
                        group_seqs.retain(|s| seqs.contains(&s.index));
                        for (seq, token) in group_seqs.iter_mut().zip(&fed) {
                            seq.next = [*token];
                        }
                        let hidden = input_data.take().ok_or_else(|| {
                            EngineError::Request("pipeline: hidden states missing".into())
                        })?;
                        if hidden.dim(0)? != rows {
                            return Err(EngineError::Request(format!(
                                "pipeline: {} rows for {rows}",
                                hidden.dim(0)?
                            )));
                        }
                        let (message, data) = self.run_group(
                            group_seqs,
                            group,
                            requests,
                            prefill,
                            Some(hidden),
                            ctx,
                        )?;
                        output = message;
                        output_data = data;
                    }
                    Message::Done => output = Message::Done,
                    Message::Idle => {}
                    Message::Tokens { .. } => {
                        return Err(EngineError::Request(
                            "pipeline: tokens sent to a middle stage".into(),
                        ))
                    }
                }
            }

            // 2. The exchange: pass the output on, take the next input.
            let forwarding_done = matches!(output, Message::Done);
            let receive = |ctx: &DistContext| -> Result<(Message, Option<Tensor>)> {
                let header: Message = serde_json::from_slice(&ctx.world.recv_bytes(prev)?)
                    .map_err(|e| {
                        EngineError::Request(format!("pipeline: bad message from rank {prev}: {e}"))
                    })?;
                let data = if let Message::Hidden { rows, .. } = &header {
                    let mut data = vec![0f32; rows * hidden_size];
                    let _span = tracing::info_span!("recv", floats = data.len()).entered();
                    ctx.world.recv(prev, &mut data)?;
                    Some(
                        Tensor::from_vec(data, (*rows, hidden_size), self.model.device())?
                            .to_dtype(self.model.dtype())?,
                    )
                } else {
                    None
                };
                Ok((header, data))
            };
            let send =
                |ctx: &DistContext, message: &Message, data: Option<Vec<f32>>| -> Result<()> {
                    let header = serde_json::to_vec(message)
                        .map_err(|e| EngineError::Request(e.to_string()))?;
                    ctx.world.send_bytes(next, &header)?;
                    if let Some(data) = data {
                        let _span = tracing::info_span!("send", floats = data.len()).entered();
                        ctx.world.send(next, &data)?;
                    }
                    Ok(())
                };
            let first_stage_waiting = topo.is_first_stage() && sent_done && !forwarding_done;
            if first_stage_waiting {
                // Done has gone out; only drain the ring until it comes back.
                let (header, _) = receive(ctx)?;
                if matches!(header, Message::Done) {
                    break;
                }
            } else if forwarding_done && !topo.is_first_stage() {
                // Pass Done on and leave: the previous stage has already left.
                send(ctx, &output, None)?;
                break;
            } else {
                let (header, data) = if topo.stage() == 1 {
                    let received = receive(ctx)?;
                    send(ctx, &output, output_data)?;
                    received
                } else {
                    send(ctx, &output, output_data)?;
                    receive(ctx)?
                };
                if topo.is_first_stage() {
                    match header {
                        Message::Tokens {
                            group,
                            seqs,
                            tokens,
                        } => {
                            if groups[group]
                                .iter()
                                .map(|s| s.index)
                                .ne(seqs.iter().copied())
                            {
                                return Err(EngineError::Request(format!(
                                    "pipeline: tokens for the wrong sequences of group {group}"
                                )));
                            }
                            ready[group] = Some(tokens);
                        }
                        Message::Idle => {}
                        other => {
                            return Err(EngineError::Request(format!(
                                "pipeline: unexpected {other:?} at the first stage"
                            )))
                        }
                    }
                } else {
                    input = header;
                    input_data = data;
                }
            }
            tick += 1;
        }
        Ok(if topo.is_first_stage() {
            finish(done)
        } else {
            Vec::new()
        })
    }

    /// Runs one group through this stage and says what to pass on.
    fn run_group(
        &self,
        group: &mut [ActiveSequence],
        index: usize,
        requests: &[GenerationRequest],
        prefill: bool,
        hidden: Option<Tensor>,
        ctx: &DistContext,
    ) -> Result<(Message, Option<Vec<f32>>)> {
        let _span = step_span(prefill, group.len()).entered();
        let seqs: Vec<usize> = group.iter().map(|s| s.index).collect();
        let fed: Vec<u32> = group.iter().map(|s| s.next[0]).collect();
        let params: Vec<_> = group.iter().map(|s| s.sampler.params().clone()).collect();
        let (tokens, caches) = step_inputs(group, requests, prefill);
        let rows: usize = tokens.iter().map(|t| t.len()).sum();
        match self.model.forward_stage(
            SequenceBatch { tokens, caches },
            hidden,
            ctx.tp_group.as_ref(),
        )? {
            StageOutput::Hidden(h) => {
                let data = h.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                Ok((
                    Message::Hidden {
                        group: index,
                        prefill,
                        seqs,
                        fed,
                        rows,
                    },
                    Some(data),
                ))
            }
            StageOutput::Logits(logits) => {
                let refs: Vec<_> = params.iter().collect();
                let rows = summarize_rows(&logits, &refs, ctx.tp_group.as_ref())?;
                let tokens = group
                    .iter_mut()
                    .zip(rows)
                    .map(|(seq, row)| seq.sampler.sample(&row))
                    .collect();
                Ok((
                    Message::Tokens {
                        group: index,
                        seqs,
                        tokens,
                    },
                    None,
                ))
            }
        }
    }
}
