//! The step-level continuous batcher (iteration-level scheduling, as in Orca and vLLM): sequences
//! join the running batch at any step and leave it as soon as they finish, instead of a batch
//! running until its longest sequence is done.
//!
//! Every rank of a `tp x pp` job holds one [`Batcher`] and applies the same [`StepPlan`] (rank 0
//! decides it and broadcasts it), so all ranks agree on which sequences run, in which order, at
//! every step. A step decodes one token for every running sequence, then prefills the admitted
//! ones (which sample their first token). Prefills and decodes never share a pass, and passes are
//! shaped so that each sequence's arithmetic is what it would be alone (see [`prefill_packs`] and
//! [`PASS_SEQUENCES`]): greedy output is the same alone or in a batch.
//!
//! With pipeline stages, each pass goes stage by stage (hidden states to the next stage's rank of
//! the same TP index) and the last stage's sampled tokens are broadcast to every rank.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::generate::{step_span, FinishReason};
use super::kv_cache::SequenceKvCache;
use super::sampling::{SampledToken, Sampler, SamplingParams};
use super::token_choice::summarize_rows;
use crate::dist::transfer::{recv_activations, send_activations};
use crate::dist::DistContext;
use crate::error::{EngineError, Result};
use crate::model::{Llama, SequenceBatch, StageOutput};

/// Most sequences in one pass. The linear layers take a streaming kernel up to this many rows
/// and a GEMM beyond (`kernels::ops::SMALL_BATCH_ROWS`); decode passes stay on the streaming
/// kernel, whose rows do not depend on each other, so a sequence decodes the same in any batch.
const PASS_SEQUENCES: usize = kernels::ops::SMALL_BATCH_ROWS;

/// Most prompt tokens prefilled in one pass (a longer prompt goes alone): bounds the activations.
const MAX_PREFILL_ROWS: usize = 4096;

/// Completion tokens a new sequence's KV cache has room for before it first grows.
const INITIAL_COMPLETION_CAPACITY: usize = 256;

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
    /// Generate until the length limit even past end-of-generation tokens (for benchmarks).
    #[serde(default)]
    pub ignore_eos: bool,
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
            ignore_eos: false,
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
    ignore_eos: bool,
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
        let model = self.model;
        let mut sampled = Vec::with_capacity(self.running.len());
        for pass in self.running.chunks_mut(PASS_SEQUENCES) {
            let mut refs: Vec<&mut Sequence> = pass.iter_mut().collect();
            sampled.extend(forward(model, &mut refs, false, ctx)?);
        }
        let decoded = std::mem::take(&mut self.running);
        for (mut seq, token) in decoded.into_iter().zip(sampled) {
            if self.settle(&mut seq, token, on_event) {
                self.running.push(seq);
            }
        }

        let mut admitted = Vec::with_capacity(admit.len());
        for admission in admit {
            match self.admit(admission) {
                Ok(seq) => admitted.push(seq),
                Err(rejected) => on_event(rejected),
            }
        }
        let lengths: Vec<usize> = admitted.iter().map(|s| s.prompt.len()).collect();
        let mut unfinished = vec![false; admitted.len()];
        for pack in prefill_packs(&lengths) {
            let mut refs: Vec<&mut Sequence> = admitted
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| pack.contains(i))
                .map(|(_, seq)| seq)
                .collect();
            let tokens = forward(model, &mut refs, true, ctx)?;
            for (&i, (seq, token)) in pack.iter().zip(refs.into_iter().zip(tokens)) {
                seq.prompt = Vec::new();
                unfinished[i] = self.settle(seq, token, on_event);
            }
        }
        self.running.extend(
            admitted
                .into_iter()
                .zip(unfinished)
                .filter_map(|(seq, running)| running.then_some(seq)),
        );
        Ok(())
    }

    /// Records a pass's token for `seq` and reports it; returns whether `seq` still runs.
    fn settle(
        &self,
        seq: &mut Sequence,
        token: SampledToken,
        on_event: &mut dyn FnMut(StepEvent),
    ) -> bool {
        let finish = self.accept(seq, &token);
        on_event(StepEvent::Token {
            id: seq.id,
            token,
            finish,
        });
        finish.is_none()
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
        // Room for the prompt and the first tokens; the cache doubles if a sequence runs longer,
        // so a request allowed the whole context does not reserve it up front.
        let cache = self
            .model
            .new_cache(prompt + limit.min(INITIAL_COMPLETION_CAPACITY))
            .map_err(|e| reject(format!("cannot allocate the KV cache: {e}")))?;
        Ok(Sequence {
            id,
            prompt: prompt_ids,
            cache,
            sampler: Sampler::new(SamplingParams::from(&params)),
            next: [0],
            generated: 0,
            limit,
            ignore_eos: params.ignore_eos,
        })
    }

    /// Records a sampled token; says how the sequence finished, if it did.
    fn accept(&self, seq: &mut Sequence, token: &SampledToken) -> Option<FinishReason> {
        seq.generated += 1;
        seq.next = [token.token];
        if !seq.ignore_eos && self.end_of_generation.contains(&token.token) {
            Some(FinishReason::Stop)
        } else if seq.generated >= seq.limit {
            Some(FinishReason::Length)
        } else {
            None
        }
    }
}

/// Groups admitted prompts (their lengths, in admission order) into prefill passes, each a sorted
/// list of indices, so that every prompt's linear layers take the path they take when it is
/// prefilled alone: prompts of more than [`PASS_SEQUENCES`] tokens go through the GEMM whatever
/// they are packed with (its rows do not depend on the other rows), so they are packed together;
/// shorter ones take the streaming kernel, so they are packed only while the pass stays within
/// its row limit. A pass has at most [`PASS_SEQUENCES`] sequences (the logits' rows).
fn prefill_packs(lengths: &[usize]) -> Vec<Vec<usize>> {
    let mut packs: Vec<Vec<usize>> = Vec::new();
    for long in [true, false] {
        let row_limit = if long {
            MAX_PREFILL_ROWS
        } else {
            PASS_SEQUENCES
        };
        let mut pack = Vec::new();
        let mut rows = 0;
        for (i, &len) in lengths.iter().enumerate() {
            if (len > PASS_SEQUENCES) != long {
                continue;
            }
            if !pack.is_empty() && (pack.len() == PASS_SEQUENCES || rows + len > row_limit) {
                packs.push(std::mem::take(&mut pack));
                rows = 0;
            }
            pack.push(i);
            rows += len;
        }
        if !pack.is_empty() {
            packs.push(pack);
        }
    }
    packs
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
        Some(recv_activations(
            ctx.world.as_ref(),
            prev,
            (rows, hidden_size),
            model.dtype(),
            model.device(),
        )?)
    };
    let mut sampled = Vec::new();
    match model.forward_stage(SequenceBatch { tokens, caches }, hidden, tp)? {
        StageOutput::Hidden(h) => {
            let next = topo.rank_in_stage(topo.stage() + 1);
            send_activations(ctx.world.as_ref(), next, &h)?;
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
    use candle_core::DType;

    #[test]
    fn prefill_packs_keep_each_prompt_on_its_own_kernel_path() {
        // Long prompts (> 16 tokens) pack together; short ones only while the pass has <= 16 rows.
        let lengths = [40, 3, 17, 10, 5, 100, 1, 1];
        assert_eq!(
            prefill_packs(&lengths),
            vec![vec![0, 2, 5], vec![1, 3], vec![4, 6, 7]]
        );
        // At most 16 sequences a pass, and at most MAX_PREFILL_ROWS prompt rows.
        let many = vec![20; 40];
        let packs = prefill_packs(&many);
        assert_eq!(
            packs.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![16, 16, 8]
        );
        let big = [MAX_PREFILL_ROWS - 10, 30, MAX_PREFILL_ROWS + 5];
        assert_eq!(prefill_packs(&big), vec![vec![0], vec![1], vec![2]]);
        assert!(prefill_packs(&[]).is_empty());
    }

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
