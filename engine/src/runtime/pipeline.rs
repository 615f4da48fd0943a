//! Pipeline-parallel generation on a synchronous tick schedule (as in GPipe / Megatron's
//! inference pipeline). On every tick each stage runs at most one micro-batch, then passes its
//! output on — hidden states to the next stage, and, from the last stage, the sampled tokens
//! straight back to the first stage — and takes its next input. Only the first stage decides what
//! enters the pipeline; the other stages run whatever arrives.
//!
//! The first stage feeds two kinds of micro-batch, so that all stages stay busy in both phases:
//! - prefill chunks: the prompts cut into many small groups of about equal token count (one
//!   sequence each for long prompts), so the pipeline fills and drains in one chunk's time rather
//!   than one `batch / pp`'s;
//! - decode groups: the batch split into `M >= pp` groups, cycled round robin. With `M = pp` a
//!   group's tokens come back exactly when the first stage needs them again, so in steady state
//!   every stage is busy on every tick. Fewer, larger groups matter in decode: a stage reads its
//!   weights once per micro-batch, whatever its size.
//!
//! Messages go to the rank with the same TP index in the neighbouring stage. Each is a small header
//! (which sequences, what they were fed) plus, for hidden states, the activations. Sends are
//! blocking, so the ring first -> ... -> last -> first would deadlock if every stage sent first;
//! stage 1 receives before it sends, which breaks the cycle.

use std::collections::VecDeque;
use std::time::Instant;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::generate::{
    finish, step_inputs, step_span, ActiveSequence, GenerationOutput, GenerationRequest, Generator,
};
use super::sampling::SampledToken;
use super::token_choice::summarize_rows;
use crate::dist::transfer::{recv_activations, send_activations};
use crate::dist::DistContext;
use crate::error::{EngineError, Result};
use crate::model::{SequenceBatch, StageOutput};

/// Prefill chunks hold at least this many prompt tokens (unless a prompt is alone in its chunk):
/// smaller ones would re-read the stage's weights for too little work.
const MIN_PREFILL_CHUNK_TOKENS: usize = 256;

/// What passes between stages at the end of a tick.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Message {
    /// Nothing this tick (pipeline filling or draining, or nothing ready).
    Idle,
    /// Hidden states of `seqs` follow as an f32 message of `rows x hidden`.
    Hidden {
        prefill: bool,
        seqs: Vec<usize>,
        fed: Vec<u32>,
        rows: usize,
    },
    /// The last stage's choices, one per sequence of `seqs`.
    Tokens {
        seqs: Vec<usize>,
        tokens: Vec<SampledToken>,
    },
    /// No more work: passed once around the ring.
    Done,
}

/// Cuts the sequences (in order) into prefill chunks: at least `min_chunks` when there are that
/// many sequences, as many as the prompt tokens allow at `MIN_PREFILL_CHUNK_TOKENS` each, and at
/// most one per sequence; chunks close once they reach an equal share of the tokens.
fn prefill_chunks(lengths: &[(usize, usize)], min_chunks: usize) -> Vec<Vec<usize>> {
    let total: usize = lengths.iter().map(|&(_, len)| len).sum();
    let chunks = (total / MIN_PREFILL_CHUNK_TOKENS)
        .max(min_chunks)
        .min(lengths.len())
        .max(1);
    let target = total.div_ceil(chunks);
    let mut out: Vec<Vec<usize>> = Vec::with_capacity(chunks);
    let mut current = Vec::new();
    let mut tokens = 0;
    for (position, &(seq, len)) in lengths.iter().enumerate() {
        current.push(seq);
        tokens += len;
        let remaining_seqs = lengths.len() - position - 1;
        let remaining_chunks = chunks - out.len() - 1;
        if remaining_chunks > 0 && (tokens >= target || remaining_seqs == remaining_chunks) {
            out.push(std::mem::take(&mut current));
            tokens = 0;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The first stage's view of the work: what is left to prefill, which sequences wait for a token
/// from the last stage, and the decode groups it cycles through.
struct FirstStageSchedule {
    prefill: VecDeque<Vec<usize>>,
    groups: Vec<Vec<usize>>,
    next_group: usize,
    in_flight: Vec<bool>,
}

impl FirstStageSchedule {
    fn new(active: &[ActiveSequence], requests: &[GenerationRequest], groups: usize) -> Self {
        let lengths: Vec<(usize, usize)> = active
            .iter()
            .map(|s| (s.index, requests[s.index].prompt_ids.len()))
            .collect();
        let per_group = active.len().div_ceil(groups).max(1);
        let decode_groups = active
            .chunks(per_group)
            .map(|c| c.iter().map(|s| s.index).collect())
            .collect();
        Self {
            prefill: prefill_chunks(&lengths, groups).into(),
            groups: decode_groups,
            next_group: 0,
            in_flight: vec![false; requests.len()],
        }
    }

    /// The next micro-batch to feed: a prefill chunk while any is left, else the next decode group
    /// (round robin) whose live sequences all have their token back. `live` says whether a
    /// sequence is still generating.
    fn next(&mut self, live: impl Fn(usize) -> bool) -> Option<(bool, Vec<usize>)> {
        if let Some(chunk) = self.prefill.pop_front() {
            return Some((true, chunk));
        }
        for offset in 0..self.groups.len() {
            let g = (self.next_group + offset) % self.groups.len();
            self.groups[g].retain(|&s| live(s));
            let group = &self.groups[g];
            if !group.is_empty() && group.iter().all(|&s| !self.in_flight[s]) {
                self.next_group = (g + 1) % self.groups.len();
                return Some((false, group.clone()));
            }
        }
        None
    }

    fn finished(&self) -> bool {
        self.prefill.is_empty()
            && self.groups.iter().all(Vec::is_empty)
            && !self.in_flight.iter().any(|&f| f)
    }
}

impl Generator<'_> {
    /// Completes every request across a `tp x pp` job. Every rank calls this with the same
    /// requests; the first stage's ranks return the outputs, the other ranks an empty list.
    /// Decode cycles `micro_batches` groups through the pipeline (at least `pp`).
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
        let mut schedule = FirstStageSchedule::new(&active, requests, micro_batches.max(topo.pp));
        // Every stage keeps every sequence's state (its KV cache for this stage's layers).
        let mut slots: Vec<Option<ActiveSequence>> = (0..requests.len()).map(|_| None).collect();
        for seq in active {
            let index = seq.index;
            slots[index] = Some(seq);
        }
        let take = |slots: &mut Vec<Option<ActiveSequence>>, seqs: &[usize]| {
            seqs.iter()
                .map(|&i| {
                    slots[i].take().ok_or_else(|| {
                        EngineError::Request(format!("pipeline: sequence {i} is not running"))
                    })
                })
                .collect::<Result<Vec<_>>>()
        };
        let put_back = |slots: &mut Vec<Option<ActiveSequence>>, batch: Vec<ActiveSequence>| {
            for seq in batch {
                let index = seq.index;
                slots[index] = Some(seq);
            }
        };
        let prev = topo.rank_in_stage((topo.stage() + topo.pp - 1) % topo.pp);
        let next = topo.rank_in_stage((topo.stage() + 1) % topo.pp);
        let hidden_size = self.model.config().hidden_size;

        let mut input = Message::Idle;
        let mut input_data: Option<Tensor> = None;
        let mut sent_done = false;
        loop {
            // 1. This tick's work.
            let mut output = Message::Idle;
            let mut output_data: Option<Tensor> = None;
            if topo.is_first_stage() {
                if !sent_done {
                    if let Some((prefill, seqs)) = schedule.next(|s| slots[s].is_some()) {
                        for &s in &seqs {
                            schedule.in_flight[s] = true;
                        }
                        let mut batch = take(&mut slots, &seqs)?;
                        let (message, data) =
                            self.run_micro_batch(&mut batch, requests, prefill, None, ctx)?;
                        put_back(&mut slots, batch);
                        output = message;
                        output_data = data;
                    } else if schedule.finished() {
                        output = Message::Done;
                        sent_done = true;
                    }
                }
            } else {
                match std::mem::replace(&mut input, Message::Idle) {
                    Message::Hidden {
                        prefill,
                        seqs,
                        fed,
                        rows,
                    } => {
                        let mut batch = take(&mut slots, &seqs)?;
                        for (seq, token) in batch.iter_mut().zip(&fed) {
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
                        let (message, data) =
                            self.run_micro_batch(&mut batch, requests, prefill, Some(hidden), ctx)?;
                        put_back(&mut slots, batch);
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
                    Some(recv_activations(
                        ctx.world.as_ref(),
                        prev,
                        (*rows, hidden_size),
                        self.model.dtype(),
                        self.model.device(),
                    )?)
                } else {
                    None
                };
                Ok((header, data))
            };
            let send = |ctx: &DistContext, message: &Message, data: Option<Tensor>| -> Result<()> {
                let header =
                    serde_json::to_vec(message).map_err(|e| EngineError::Request(e.to_string()))?;
                ctx.world.send_bytes(next, &header)?;
                if let Some(data) = data {
                    send_activations(ctx.world.as_ref(), next, &data)?;
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
                        Message::Tokens { seqs, tokens } => {
                            if tokens.len() != seqs.len()
                                || seqs
                                    .iter()
                                    .any(|&s| !schedule.in_flight.get(s).copied().unwrap_or(false))
                            {
                                return Err(EngineError::Request(format!(
                                    "pipeline: tokens for sequences {seqs:?} that are not in flight"
                                )));
                            }
                            for &s in &seqs {
                                schedule.in_flight[s] = false;
                            }
                            let batch = take(&mut slots, &seqs)?;
                            let running = self.accept_all(batch, tokens, &mut done, &clock)?;
                            put_back(&mut slots, running);
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
        }
        Ok(if topo.is_first_stage() {
            finish(done)
        } else {
            Vec::new()
        })
    }

    /// Runs one micro-batch through this stage and says what to pass on.
    fn run_micro_batch(
        &self,
        group: &mut [ActiveSequence],
        requests: &[GenerationRequest],
        prefill: bool,
        hidden: Option<Tensor>,
        ctx: &DistContext,
    ) -> Result<(Message, Option<Tensor>)> {
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
            StageOutput::Hidden(h) => Ok((
                Message::Hidden {
                    prefill,
                    seqs,
                    fed,
                    rows,
                },
                Some(h),
            )),
            StageOutput::Logits(logits) => {
                let refs: Vec<_> = params.iter().collect();
                let rows = summarize_rows(&logits, &refs, ctx.tp_group.as_ref())?;
                let tokens = group
                    .iter_mut()
                    .zip(rows)
                    .map(|(seq, row)| seq.sampler.sample(&row))
                    .collect();
                Ok((Message::Tokens { seqs, tokens }, None))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prefill_chunks;

    fn lengths(lens: &[usize]) -> Vec<(usize, usize)> {
        lens.iter().copied().enumerate().collect()
    }

    #[test]
    fn long_prompts_get_a_chunk_each() {
        let chunks = prefill_chunks(&lengths(&[500; 8]), 2);
        assert_eq!(chunks, (0..8).map(|i| vec![i]).collect::<Vec<_>>());
    }

    #[test]
    fn short_prompts_share_chunks_but_fill_every_stage() {
        let chunks = prefill_chunks(&lengths(&[30; 8]), 2);
        assert_eq!(chunks, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
    }

    #[test]
    fn chunks_balance_tokens_and_keep_order() {
        // 1200 tokens: 4 chunks of about 300.
        let chunks = prefill_chunks(&lengths(&[100, 200, 300, 50, 250, 100, 200]), 2);
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks.concat(), (0..7).collect::<Vec<_>>());
        assert_eq!(chunks[0], vec![0, 1]);
    }

    #[test]
    fn fewer_sequences_than_stages() {
        assert_eq!(prefill_chunks(&lengths(&[10]), 4), vec![vec![0]]);
        assert!(prefill_chunks(&[], 2).is_empty());
    }
}
