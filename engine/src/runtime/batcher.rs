//! The step-level continuous batcher (iteration-level scheduling, as in Orca and vLLM): sequences
//! join the running batch at any step and leave it as soon as they finish, instead of a batch
//! running until its longest sequence is done.
//!
//! Every rank of a `tp x pp` job holds one [`Batcher`] and applies the same [`StepPlan`] (rank 0
//! decides it and broadcasts it), so all ranks agree on which sequences run, in which order, at
//! every step. A step is one decode pass over the sequences already running, then one prefill pass
//! per admitted sequence. Prefills run apart from the decodes, one sequence each, so a sequence's
//! arithmetic never depends on its neighbours: the decode rows stay on the streaming kernel
//! (whose rows are independent) and a prefill is the same GEMM as when the sequence runs alone.
//! Greedy output is therefore the same alone or in a batch.
//!
//! With pipeline stages, each pass goes stage by stage (hidden states to the next stage's rank of
//! the same TP index) and the last stage's sampled tokens are broadcast to every rank.

use std::collections::HashSet;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::generate::{step_span, FinishReason};
use super::kv_cache::SequenceKvCache;
use super::sampling::{SampledToken, Sampler, SamplingParams};
use super::token_choice::summarize_rows;
use crate::dist::DistContext;
use crate::error::{EngineError, Result};
use crate::model::{Llama, SequenceBatch, StageOutput};

/// Names a sequence across ranks and steps (chosen by rank 0).
pub type SequenceId = u64;

/// The sampling settings the ranks need, as they travel on the control plane. Stop strings are
/// not among them: they are matched on rank 0, which then releases the sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireParams {
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: usize,
    pub seed: u64,
    pub max_new_tokens: usize,
    pub top_logprobs: usize,
}

impl From<&SamplingParams> for WireParams {
    fn from(p: &SamplingParams) -> Self {
        Self {
            temperature: p.temperature,
            top_p: p.top_p,
            top_k: p.top_k,
            seed: p.seed,
            max_new_tokens: p.max_new_tokens,
            top_logprobs: p.top_logprobs,
        }
    }
}

impl From<&WireParams> for SamplingParams {
    fn from(p: &WireParams) -> Self {
        Self {
            temperature: p.temperature,
            top_p: p.top_p,
            top_k: p.top_k,
            seed: p.seed,
            max_new_tokens: p.max_new_tokens,
            stop: Vec::new(),
            top_logprobs: p.top_logprobs,
        }
    }
}

/// A sequence to start at this step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Admission {
    pub id: SequenceId,
    pub prompt_ids: Vec<u32>,
    pub params: WireParams,
}

/// What every rank does at one step: start these sequences, drop those.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepPlan {
    pub admit: Vec<Admission>,
    /// Running sequences to drop before the step (cancelled, disconnected, or stopped by a stop
    /// string on rank 0). Unknown ids are ignored: the sequence may have finished meanwhile.
    pub release: Vec<SequenceId>,
}

impl StepPlan {
    pub fn is_empty(&self) -> bool {
        self.admit.is_empty() && self.release.is_empty()
    }
}

/// What a step produced for one sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum StepEvent {
    /// A new token; `finish` is set when it is the sequence's last (it has then left the batch).
    Token {
        id: SequenceId,
        token: SampledToken,
        finish: Option<FinishReason>,
    },
    /// The admission was refused (every rank refuses alike); the sequence never ran.
    Rejected { id: SequenceId, message: String },
}

/// A running sequence.
struct Sequence {
    id: SequenceId,
    /// The prompt until it is prefilled, then empty.
    prompt: Vec<u32>,
    cache: SequenceKvCache,
    sampler: Sampler,
    /// The token the next decode feeds.
    next: [u32; 1],
    generated: usize,
    /// Most tokens this sequence may generate (its request's, capped by the context).
    limit: usize,
}

/// The running batch of one rank.
pub struct Batcher<'a> {
    model: &'a Llama,
    end_of_generation: HashSet<u32>,
    running: Vec<Sequence>,
}

impl<'a> Batcher<'a> {
    pub fn new(model: &'a Llama, end_of_generation: impl IntoIterator<Item = u32>) -> Self {
        Self {
            model,
            end_of_generation: end_of_generation.into_iter().collect(),
            running: Vec::new(),
        }
    }

    /// Sequences in the batch.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Ids of the sequences in the batch, in batch order.
    pub fn running_ids(&self) -> Vec<SequenceId> {
        self.running.iter().map(|s| s.id).collect()
    }

    /// Runs one step on this rank (every rank of the job calls it with the same plan): drops the
    /// released sequences, decodes one token for each running one, then prefills each admitted
    /// one. `on_event` gets each pass's events as soon as the pass is done; on every rank, so
    /// that ranks other than 0 can ignore them.
    pub fn step(
        &mut self,
        plan: StepPlan,
        ctx: &DistContext,
        on_event: &mut dyn FnMut(StepEvent),
    ) -> Result<()> {
        let StepPlan { admit, release } = plan;
        if !release.is_empty() {
            self.running.retain(|s| !release.contains(&s.id));
        }
        if !self.running.is_empty() {
            let mut batch: Vec<&mut Sequence> = self.running.iter_mut().collect();
            let sampled = forward(self.model, &mut batch, false, ctx)?;
            let batch = std::mem::take(&mut self.running);
            for (mut seq, token) in batch.into_iter().zip(sampled) {
                let finish = self.accept(&mut seq, &token);
                on_event(StepEvent::Token {
                    id: seq.id,
                    token,
                    finish,
                });
                if finish.is_none() {
                    self.running.push(seq);
                }
            }
        }
        for admission in admit {
            let mut seq = match self.admit(admission) {
                Ok(seq) => seq,
                Err(event) => {
                    on_event(event);
                    continue;
                }
            };
            let sampled = forward(self.model, &mut [&mut seq], true, ctx)?;
            let token = sampled.into_iter().next().ok_or_else(|| {
                EngineError::Request("batcher: a prefill pass sampled no token".into())
            })?;
            seq.prompt = Vec::new();
            let finish = self.accept(&mut seq, &token);
            on_event(StepEvent::Token {
                id: seq.id,
                token,
                finish,
            });
            if finish.is_none() {
                self.running.push(seq);
            }
        }
        Ok(())
    }

    /// Sets up an admitted sequence, or says why it cannot run (the same on every rank).
    fn admit(&self, admission: Admission) -> std::result::Result<Sequence, StepEvent> {
        let Admission {
            id,
            prompt_ids,
            params,
        } = admission;
        let config = self.model.config();
        let context = config.max_position_embeddings;
        let prompt = prompt_ids.len();
        let reject = |message: String| StepEvent::Rejected { id, message };
        if prompt == 0 {
            return Err(reject("empty prompt".into()));
        }
        if prompt >= context {
            return Err(reject(format!(
                "prompt of {prompt} tokens does not fit the context of {context}"
            )));
        }
        if let Some(bad) = prompt_ids
            .iter()
            .find(|&&t| t as usize >= config.vocab_size)
        {
            return Err(reject(format!(
                "token id {bad} is outside the vocabulary of {}",
                config.vocab_size
            )));
        }
        let limit = params.max_new_tokens.min(context - prompt);
        if limit == 0 {
            return Err(reject("max_new_tokens must be at least 1".into()));
        }
        let cache = self
            .model
            .new_cache(prompt + limit)
            .map_err(|e| reject(format!("cannot allocate the KV cache: {e}")))?;
        Ok(Sequence {
            id,
            prompt: prompt_ids,
            cache,
            sampler: Sampler::new(SamplingParams::from(&params)),
            next: [0],
            generated: 0,
            limit,
        })
    }

    /// Records a sampled token; says how the sequence finished, if it did.
    fn accept(&self, seq: &mut Sequence, token: &SampledToken) -> Option<FinishReason> {
        seq.generated += 1;
        seq.next = [token.token];
        if self.end_of_generation.contains(&token.token) {
            Some(FinishReason::Stop)
        } else if seq.generated >= seq.limit {
            Some(FinishReason::Length)
        } else {
            None
        }
    }
}

/// One pass of `seqs` through the whole job: their prompts (`prefill`) or their last tokens,
/// through this rank's stage; returns one sampled token per sequence, on every rank.
fn forward(
    model: &Llama,
    seqs: &mut [&mut Sequence],
    prefill: bool,
    ctx: &DistContext,
) -> Result<Vec<SampledToken>> {
    let _span = step_span(prefill, seqs.len()).entered();
    let topo = ctx.topology;
    let tp = ctx.tp_group.as_ref();
    let mut tokens = Vec::with_capacity(seqs.len());
    let mut caches = Vec::with_capacity(seqs.len());
    let mut samplers = Vec::with_capacity(seqs.len());
    for seq in seqs.iter_mut() {
        let Sequence {
            prompt,
            next,
            cache,
            sampler,
            ..
        } = &mut **seq;
        tokens.push(if prefill { &prompt[..] } else { &next[..] });
        caches.push(cache);
        samplers.push(sampler);
    }
    let rows: usize = tokens.iter().map(|t| t.len()).sum();
    let hidden_size = model.config().hidden_size;
    let hidden = if topo.is_first_stage() {
        None
    } else {
        let prev = topo.rank_in_stage(topo.stage() - 1);
        let mut data = vec![0f32; rows * hidden_size];
        {
            let _span = tracing::info_span!("recv", floats = data.len()).entered();
            ctx.world.recv(prev, &mut data)?;
        }
        Some(Tensor::from_vec(data, (rows, hidden_size), model.device())?.to_dtype(model.dtype())?)
    };
    let mut sampled = Vec::new();
    match model.forward_stage(SequenceBatch { tokens, caches }, hidden, tp)? {
        StageOutput::Hidden(h) => {
            let next = topo.rank_in_stage(topo.stage() + 1);
            let data = h.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let _span = tracing::info_span!("send", floats = data.len()).entered();
            ctx.world.send(next, &data)?;
        }
        StageOutput::Logits(logits) => {
            let params: Vec<SamplingParams> = samplers.iter().map(|s| s.params().clone()).collect();
            let refs: Vec<&SamplingParams> = params.iter().collect();
            let summaries = summarize_rows(&logits, &refs, tp)?;
            sampled = samplers
                .into_iter()
                .zip(summaries)
                .map(|(sampler, row)| sampler.sample(&row))
                .collect();
        }
    }
    if topo.pp > 1 {
        // The last stage's first rank tells everyone what was sampled.
        let root = (topo.pp - 1) * topo.tp;
        let mut bytes = if topo.rank == root {
            serde_json::to_vec(&sampled).map_err(|e| EngineError::Request(e.to_string()))?
        } else {
            Vec::new()
        };
        ctx.world.broadcast_bytes(root, &mut bytes)?;
        sampled = serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::Request(format!("batcher: bad sampled tokens from rank {root}: {e}"))
        })?;
    }
    if sampled.len() != seqs.len() {
        return Err(EngineError::Request(format!(
            "batcher: {} sampled tokens for {} sequences",
            sampled.len(),
            seqs.len()
        )));
    }
    Ok(sampled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::{SoloCommunicator, Topology};

    #[test]
    fn wire_params_round_trip_without_stop_strings() {
        let params = SamplingParams {
            temperature: 0.7,
            top_p: 0.9,
            top_k: 5,
            seed: 3,
            max_new_tokens: 12,
            stop: vec!["x".into()],
            top_logprobs: 2,
        };
        let back = SamplingParams::from(&WireParams::from(&params));
        assert_eq!(
            back,
            SamplingParams {
                stop: Vec::new(),
                ..params
            }
        );
    }

    #[test]
    fn rejected_admissions_do_not_run() {
        let dir = tempfile::tempdir().unwrap();
        crate::checkpoint::synth::synthesize(
            &crate::checkpoint::synth::SynthOptions {
                preset: crate::checkpoint::synth::Preset::Tiny,
                layers: Some(2),
                kv_heads: None,
                dtype: DType::F32,
                seed: 1,
                max_shard_bytes: usize::MAX,
                tokenizer_dir: None,
            },
            dir.path(),
        )
        .unwrap();
        let model = Llama::load_dir(dir.path(), DType::F32, &candle_core::Device::Cpu).unwrap();
        let ctx = DistContext {
            topology: Topology::single(),
            world: Box::new(SoloCommunicator),
            tp_group: Box::new(SoloCommunicator),
        };
        let vocab = model.config().vocab_size as u32;
        let context = model.config().max_position_embeddings;
        let params = WireParams::from(&SamplingParams {
            max_new_tokens: 2,
            ..Default::default()
        });
        let admit = |id, prompt_ids: Vec<u32>| Admission {
            id,
            prompt_ids,
            params: params.clone(),
        };
        let mut batcher = Batcher::new(&model, []);
        let mut events = Vec::new();
        let plan = StepPlan {
            admit: vec![
                admit(1, vec![]),
                admit(2, vec![vocab]),
                admit(3, vec![1; context]),
                admit(4, vec![1, 2, 3]),
            ],
            release: vec![],
        };
        batcher.step(plan, &ctx, &mut |e| events.push(e)).unwrap();
        let rejected: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                StepEvent::Rejected { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(rejected, vec![1, 2, 3]);
        assert_eq!(batcher.running_ids(), vec![4]);
        events.clear();
        batcher
            .step(StepPlan::default(), &ctx, &mut |e| events.push(e))
            .unwrap();
        assert!(
            matches!(
                events.as_slice(),
                [StepEvent::Token {
                    id: 4,
                    finish: Some(FinishReason::Length),
                    ..
                }]
            ),
            "{events:?}"
        );
        assert_eq!(batcher.running(), 0);
    }
}
