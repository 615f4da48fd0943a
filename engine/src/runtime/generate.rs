//! The generation loop: one batched prefill of all prompts, then incremental decode of every
//! unfinished sequence together, each with its own KV cache and sampler.

use std::collections::HashSet;
use std::time::Instant;

use serde::Serialize;

use super::kv_cache::SequenceKvCache;
use super::sampling::{SampledToken, Sampler, SamplingParams};
use super::token_choice::summarize_rows;
use crate::dist::{Communicator, SoloCommunicator};
use crate::error::{EngineError, Result};
use crate::model::{Llama, SequenceBatch, StageOutput};
use crate::tokenizer::ModelTokenizer;

/// One prompt to complete.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub prompt_ids: Vec<u32>,
    pub params: SamplingParams,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_new_tokens` or the context length.
    Length,
}

/// A generated token's log-probability and its top alternatives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprob {
    pub token_id: u32,
    pub logprob: f32,
    pub top_logprobs: Vec<(u32, f32)>,
}

/// The completion of one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerationOutput {
    pub prompt_token_ids: Vec<u32>,
    pub completion: String,
    /// Every generated token, the end-of-generation token included (it is not in the text).
    pub completion_token_ids: Vec<u32>,
    pub finish_reason: FinishReason,
    pub logprobs: Vec<TokenLogprob>,
    /// Milliseconds from the start of the batch to each generated token, in order.
    pub token_ms: Vec<f64>,
}

impl GenerationOutput {
    /// Milliseconds from the start of the batch to this request's first token (0: none).
    pub fn ttft_ms(&self) -> f64 {
        self.token_ms.first().copied().unwrap_or(0.0)
    }

    /// Milliseconds from the start of the batch to this request's last token (0: none).
    pub fn latency_ms(&self) -> f64 {
        self.token_ms.last().copied().unwrap_or(0.0)
    }

    /// The gaps between consecutive tokens (inter-token latency), in milliseconds.
    pub fn inter_token_ms(&self) -> Vec<f64> {
        self.token_ms.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

/// Generates completions with a loaded model and its tokenizer.
pub struct Generator<'a> {
    pub(super) model: &'a Llama,
    tokenizer: &'a ModelTokenizer,
    end_of_generation: HashSet<u32>,
}

/// A request in flight.
pub(super) struct ActiveSequence {
    pub(super) index: usize,
    pub(super) cache: SequenceKvCache,
    pub(super) sampler: Sampler,
    /// Token the next forward pass feeds.
    pub(super) next: [u32; 1],
    output: GenerationOutput,
    /// Most tokens this sequence may generate (request limit, capped by the context).
    limit: usize,
}

/// The new tokens (the prompt at prefill, else the last sampled token) and caches of `active`.
pub(super) fn step_inputs<'s>(
    active: &'s mut [ActiveSequence],
    requests: &'s [GenerationRequest],
    prefill: bool,
) -> (Vec<&'s [u32]>, Vec<&'s mut SequenceKvCache>) {
    active
        .iter_mut()
        .map(|s| {
            let ActiveSequence {
                index, next, cache, ..
            } = s;
            let tokens: &[u32] = if prefill {
                &requests[*index].prompt_ids
            } else {
                &next[..]
            };
            (tokens, cache)
        })
        .unzip()
}

/// The trace span of one forward step over `sequences`.
pub(super) fn step_span(prefill: bool, sequences: usize) -> tracing::Span {
    if prefill {
        tracing::info_span!("prefill", sequences)
    } else {
        tracing::info_span!("decode_step", sequences)
    }
}

/// Outputs in request order.
pub(super) fn finish(done: Vec<Option<GenerationOutput>>) -> Vec<GenerationOutput> {
    done.into_iter()
        .map(|o| o.expect("every request finishes"))
        .collect()
}

impl<'a> Generator<'a> {
    pub fn new(
        model: &'a Llama,
        tokenizer: &'a ModelTokenizer,
        end_of_generation: impl IntoIterator<Item = u32>,
    ) -> Self {
        Self {
            model,
            tokenizer,
            end_of_generation: end_of_generation.into_iter().collect(),
        }
    }

    /// Completes every request on one rank holding the whole model; outputs are in request order.
    pub fn generate(&self, requests: &[GenerationRequest]) -> Result<Vec<GenerationOutput>> {
        self.generate_tp(requests, &SoloCommunicator)
    }

    /// Completes every request with the model's layers split over the tensor-parallel group `tp`.
    /// Every rank of the group runs this with the same requests and gets the same outputs.
    pub fn generate_tp(
        &self,
        requests: &[GenerationRequest],
        tp: &dyn Communicator,
    ) -> Result<Vec<GenerationOutput>> {
        let clock = Instant::now();
        let (mut done, mut active) = self.start(requests)?;
        let mut prefill = true;
        while !active.is_empty() {
            let _span = step_span(prefill, active.len()).entered();
            let (tokens, caches) = step_inputs(&mut active, requests, prefill);
            let StageOutput::Logits(logits) =
                self.model
                    .forward_stage(SequenceBatch { tokens, caches }, None, tp)?
            else {
                return Err(EngineError::Request(
                    "this rank holds a pipeline stage: use the pipeline runtime".into(),
                ));
            };
            prefill = false;
            let params: Vec<_> = active.iter().map(|s| s.sampler.params()).collect();
            let rows = summarize_rows(&logits, &params, tp)?;
            let sampled: Vec<SampledToken> = active
                .iter_mut()
                .zip(rows)
                .map(|(seq, row)| seq.sampler.sample(&row))
                .collect();
            active = self.accept_all(active, sampled, &mut done, &clock)?;
        }
        Ok(finish(done))
    }

    /// Validates the requests and sets up their state; zero-token requests finish at once.
    pub(super) fn start(
        &self,
        requests: &[GenerationRequest],
    ) -> Result<(Vec<Option<GenerationOutput>>, Vec<ActiveSequence>)> {
        let context = self.model.config().max_position_embeddings;
        let mut done: Vec<Option<GenerationOutput>> = vec![None; requests.len()];
        let mut active = Vec::with_capacity(requests.len());
        for (index, request) in requests.iter().enumerate() {
            let prompt = request.prompt_ids.len();
            if prompt == 0 {
                return Err(EngineError::Request(format!(
                    "request {index}: empty prompt"
                )));
            }
            if prompt >= context {
                return Err(EngineError::Request(format!(
                    "request {index}: prompt of {prompt} tokens does not fit the context of {context}"
                )));
            }
            let limit = request.params.max_new_tokens.min(context - prompt);
            let output = GenerationOutput {
                prompt_token_ids: request.prompt_ids.clone(),
                completion: String::new(),
                completion_token_ids: Vec::with_capacity(limit),
                finish_reason: FinishReason::Length,
                logprobs: Vec::new(),
                token_ms: Vec::with_capacity(limit),
            };
            if limit == 0 {
                done[index] = Some(output);
                continue;
            }
            active.push(ActiveSequence {
                index,
                cache: self.model.new_cache(prompt + limit)?,
                sampler: Sampler::new(request.params.clone()),
                next: [0],
                output,
                limit,
            });
        }
        Ok((done, active))
    }

    /// Applies one sampled token per active sequence; returns the sequences still running.
    pub(super) fn accept_all(
        &self,
        active: Vec<ActiveSequence>,
        sampled: Vec<SampledToken>,
        done: &mut [Option<GenerationOutput>],
        clock: &Instant,
    ) -> Result<Vec<ActiveSequence>> {
        let mut still_active = Vec::with_capacity(active.len());
        for (mut seq, token) in active.into_iter().zip(sampled) {
            seq.output
                .token_ms
                .push(clock.elapsed().as_secs_f64() * 1e3);
            if self.accept(&mut seq, token)? {
                done[seq.index] = Some(seq.output);
            } else {
                still_active.push(seq);
            }
        }
        Ok(still_active)
    }

    /// Records a sampled token; returns true when the sequence is finished.
    pub(super) fn accept(&self, seq: &mut ActiveSequence, sampled: SampledToken) -> Result<bool> {
        let out = &mut seq.output;
        out.completion_token_ids.push(sampled.token);
        out.logprobs.push(TokenLogprob {
            token_id: sampled.token,
            logprob: sampled.logprob,
            top_logprobs: sampled.top,
        });
        seq.next = [sampled.token];
        if self.end_of_generation.contains(&sampled.token) {
            out.finish_reason = FinishReason::Stop;
            out.completion = self.tokenizer.decode(&out.completion_token_ids, true)?;
            return Ok(true);
        }
        let stops = &seq.sampler.params().stop;
        if !stops.is_empty() {
            let text = self.tokenizer.decode(&out.completion_token_ids, true)?;
            if let Some(cut) = stops.iter().filter_map(|s| text.find(s.as_str())).min() {
                out.completion = text[..cut].to_string();
                out.finish_reason = FinishReason::Stop;
                return Ok(true);
            }
        }
        if out.completion_token_ids.len() >= seq.limit {
            out.finish_reason = FinishReason::Length;
            out.completion = self.tokenizer.decode(&out.completion_token_ids, true)?;
            return Ok(true);
        }
        Ok(false)
    }
}
