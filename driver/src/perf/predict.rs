//! [`predict`]: one strategy's figures for each prompt length: time to first token, decode time
//! per token at batch 1 and at the run's batch, decode tokens/s and memory per GPU, each time
//! split into the terms it is made of, so the dominating one can be named.
//!
//! Every stage's pass costs its kernels' roofline times (compute or memory, the matmuls and
//! attention each on their own) plus its tp all-reduces plus its send to the next stage; stages
//! are not overlapped with communication (the engine's sends and all-reduces block). On a CPU
//! host, ranks busy at once share its memory bandwidth and cores, and beyond its cores they take
//! turns (the time this adds is the core-sharing term). The pipeline turns
//! stage times into a figure (formulas.rs); the time the work would take were every stage busy is
//! the useful part, the rest is the pipeline bubble.

use serde::Serialize;

use super::formulas::{
    all_reduces_per_pass, causal_attended, decode_groups, decode_round_seconds, host_stretch,
    kv_cache_bytes_per_layer, pipeline_seconds, ring_all_reduce_seconds, roofline_seconds,
    send_seconds, stage_pass_work, stage_weight_bytes, Pass, Work,
};
use super::hardware::Hardware;
use super::model_shape::ModelShape;
use super::placement::Placement;
use crate::data::prompts::Variant;
use crate::parallelism::strategy::EngineArgs;
use crate::slurm::profile::ClusterProfile;
pub use estimate::{Estimate, Term};

/// A prompt length to predict for, named as the run's variants are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptLength {
    pub variant: String,
    pub tokens: usize,
}

/// What the strategies are asked to do: the prompts, the tokens generated, the activation size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    pub prompts: Vec<PromptLength>,
    /// Tokens generated per prompt; decode is predicted halfway through them (the mean context).
    pub new_tokens: usize,
    /// Bytes of one activation value in all-reduces and in sends between stages.
    pub activation_bytes: usize,
}

// The engine all-reduces in f32 unless run with `--allreduce-dtype model`, and sends hidden
// states between stages as f32; the driver's job scripts keep both defaults.
const ENGINE_ACTIVATION_BYTES: usize = 4;

impl Workload {
    /// The run's workload: the 2k and 4k prompts at their token budgets, the profile's
    /// `max_new_tokens`, activations as the engine sends them.
    pub fn from_profile(profile: &ClusterProfile) -> Self {
        Self {
            prompts: Variant::ALL
                .iter()
                .map(|v| PromptLength {
                    variant: v.as_str().into(),
                    tokens: v.token_budget(),
                })
                .collect(),
            new_tokens: profile.engine.max_new_tokens,
            activation_bytes: ENGINE_ACTIVATION_BYTES,
        }
    }
}

/// Memory of the fullest GPU (or CPU rank): its stage's weights and KV cache for the whole batch
/// at the prompt's length plus the new tokens (activations and workspace left out).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemoryEstimate {
    pub weights_bytes: f64,
    pub kv_cache_bytes: f64,
    /// Weights and KV cache fit in one GPU's memory (a CPU host's, for all its ranks).
    pub fits: bool,
}

impl MemoryEstimate {
    pub fn total_bytes(&self) -> f64 {
        self.weights_bytes + self.kv_cache_bytes
    }
}

/// A strategy's figures at one prompt length.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantPrediction {
    pub variant: String,
    pub prompt_tokens: usize,
    /// Time to first token of one prompt alone.
    pub ttft: Estimate,
    /// Time until every prompt of the run's batch has its first token: the prompts prefilled one
    /// after another, each a chunk through the pipeline.
    pub ttft_batch: Estimate,
    /// Time per generated token, one sequence.
    pub decode_batch1: Estimate,
    /// Time per generated token of each sequence, the run's batch decoding together.
    pub decode_batch: Estimate,
    /// Tokens generated per second by the whole batch during decode.
    pub decode_tokens_per_s: f64,
    pub memory: MemoryEstimate,
}

/// A strategy's predicted figures, one entry per prompt length.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyPrediction {
    pub strategy: String,
    pub tp: usize,
    pub pp: usize,
    pub nodes: usize,
    pub batch_size: usize,
    pub variants: Vec<VariantPrediction>,
}

impl StrategyPrediction {
    pub fn gpus(&self) -> usize {
        self.tp * self.pp
    }

    /// Every prompt length's weights and KV cache fit in a GPU.
    pub fn fits(&self) -> bool {
        self.variants.iter().all(|v| v.memory.fits)
    }
}

/// How a pass runs: its work, how many stages are busy at once (the ranks that share a CPU
/// host's cores), and whether it is decode (one new token per sequence: attention runs the
/// decode kernel; prefill's attention is matmuls).
#[derive(Debug, Clone, Copy)]
struct PassShape {
    pass: Pass,
    busy_stages: usize,
    decode: bool,
}

/// Seconds of one kind of kernel by its roofline: all compute or all memory, whichever is longer.
fn kernel_estimate(work: Work, flops_per_s: f64, bytes_per_s: f64) -> Estimate {
    let (compute, memory) = roofline_seconds(work, flops_per_s, bytes_per_s);
    if compute >= memory {
        Estimate {
            compute_s: compute,
            ..Estimate::default()
        }
    } else {
        Estimate {
            hbm_s: memory,
            ..Estimate::default()
        }
    }
}

/// One stage's share of a pass, in seconds per term (no bubble: that is the pipeline's).
fn stage_seconds(
    model: &ModelShape,
    args: &EngineArgs,
    hardware: &Hardware,
    shape: PassShape,
    activation_bytes: usize,
) -> Vec<Estimate> {
    let PassShape {
        pass,
        busy_stages,
        decode,
    } = shape;
    let place = Placement::new(args);
    let stages = place.stages();
    let last = stages.len().saturating_sub(1);
    let activation = pass.rows * model.hidden_size as f64 * activation_bytes as f64;
    // On a CPU host the ranks busy at once share its cores and memory bandwidth: each kind of
    // time stretches by the turns they take or the host's total rate, whichever is slower. The
    // job's waiting ranks are left out: they wait in MPI yielding their core
    // (`mpi_yield_when_idle`, set by the job scripts), and measured with /proc during decode
    // here they take a few percent of a core each (tp=1 x pp=4: 0.11 of a core per rank that
    // computes a tenth of the time); tp=2 x pp=2 decodes as fast as tp=2 alone (6 runs each).
    let (flops_stretch, bytes_stretch) = match hardware.host {
        Some(host) => {
            let slots = host.slots();
            let busy = place.busy_ranks_per_host(busy_stages, host.single_host);
            (
                host_stretch(busy, slots, hardware.flops_per_s, host.flops_per_s),
                host_stretch(
                    busy,
                    slots,
                    hardware.hbm_bytes_per_s,
                    host.memory_bytes_per_s,
                ),
            )
        }
        None => (1.0, 1.0),
    };
    // Attention runs at its own measured rate: the decode kernel, or prefill's chunked matmuls
    // and softmax (the same as the matmuls on a GPU preset, which measures neither).
    let attention_flops_per_s = if decode {
        hardware.decode_attention_flops_per_s
    } else {
        hardware.prefill_attention_flops_per_s
    };
    stages
        .iter()
        .enumerate()
        .map(|(s, &stage)| {
            let work = stage_pass_work(model, args.tp, stage, pass);
            let mut e =
                kernel_estimate(work.matmul, hardware.flops_per_s, hardware.hbm_bytes_per_s).plus(
                    kernel_estimate(
                        work.attention,
                        attention_flops_per_s,
                        hardware.hbm_bytes_per_s,
                    ),
                );
            // The engine's glue between a layer's kernels (norms, rotary, the cache, the calls):
            // CPU time, measured by `driver calibrate` on whole decoder layers; it grows with the
            // tensors the layer's ops touch, of which a rank of tp holds 1/tp (measured: tp=3
            // on SmolLM2 pays about a third of one rank's).
            e.compute_s += stage.layers as f64 * hardware.layer_overhead_s / args.tp as f64;
            e.core_sharing_s =
                e.compute_s * (flops_stretch - 1.0) + e.hbm_s * (bytes_stretch - 1.0);
            let mut comm = |spans_nodes: bool, seconds: f64| {
                if spans_nodes {
                    e.inter_node_comm_s += seconds;
                } else {
                    e.intra_node_comm_s += seconds;
                }
            };
            let spans = place.tp_group_spans_nodes(s);
            comm(
                spans,
                all_reduces_per_pass(stage, args.tp) as f64
                    * ring_all_reduce_seconds(activation, args.tp, hardware.link(spans)),
            );
            if s < last {
                // Every tp rank sends its copy to its peer: over the network they share the
                // node's link; inside a node each pair has its own.
                let crosses = place.send_crosses_nodes(s, s + 1);
                let copies = if crosses { args.tp as f64 } else { 1.0 };
                comm(
                    crosses,
                    send_seconds(activation * copies, hardware.link(crosses)),
                );
            } else if last > 0 {
                // The sampled tokens go back to the first stage: a message of a few bytes.
                let crosses = place.send_crosses_nodes(s, 0);
                comm(crosses, send_seconds(0.0, hardware.link(crosses)));
            }
            e
        })
        .collect()
}

/// A pipeline figure from its stage times: `busy_passes` passes of every stage are the useful
/// work, spread over the pp stages; whatever `total` holds beyond that is the bubble.
fn pipeline_estimate(stages: &[Estimate], busy_passes: usize, total: f64) -> Estimate {
    let per_stage = stages
        .iter()
        .fold(Estimate::default(), |sum, s| sum.plus(*s))
        .times(busy_passes as f64 / stages.len() as f64);
    Estimate {
        pipeline_bubble_s: (total - per_stage.seconds()).max(0.0),
        ..per_stage
    }
}

fn totals(stages: &[Estimate]) -> Vec<f64> {
    stages.iter().map(Estimate::seconds).collect()
}

/// Predicts one strategy's figures on `hardware` (peak figures: the achievable fraction is
/// applied here) for each of the workload's prompt lengths.
pub fn predict(
    strategy: &str,
    args: &EngineArgs,
    model: &ModelShape,
    hardware: &Hardware,
    workload: &Workload,
) -> StrategyPrediction {
    let hw = hardware.achievable();
    let seconds = |shape| stage_seconds(model, args, &hw, shape, workload.activation_bytes);
    let decode = |batch: usize, context: f64| {
        let (groups, size) = decode_groups(batch, args.micro_batches, args.pp);
        let rows = size as f64;
        let stages = seconds(PassShape {
            pass: Pass {
                rows,
                attended: rows * context,
                kv_read: rows * context,
                logits_rows: rows,
            },
            busy_stages: groups,
            decode: true,
        });
        pipeline_estimate(
            &stages,
            groups,
            decode_round_seconds(&totals(&stages), groups),
        )
    };
    let variants = workload
        .prompts
        .iter()
        .map(|prompt| {
            let n = prompt.tokens;
            // A prompt alone is one prefill chunk (the engine does not split a sequence).
            let prefill = seconds(PassShape {
                pass: Pass {
                    rows: n as f64,
                    attended: causal_attended(n),
                    kv_read: n as f64,
                    logits_rows: 1.0,
                },
                busy_stages: 1,
                decode: false,
            });
            let ttft = pipeline_estimate(&prefill, 1, pipeline_seconds(&totals(&prefill), 1));
            let chunks = args.batch_size.max(1);
            let ttft_batch = pipeline_estimate(
                &prefill,
                chunks,
                pipeline_seconds(&totals(&prefill), chunks),
            );
            let mean_context = n as f64 + workload.new_tokens as f64 / 2.0;
            let decode_batch = decode(args.batch_size, mean_context);
            VariantPrediction {
                variant: prompt.variant.clone(),
                prompt_tokens: n,
                ttft,
                ttft_batch,
                decode_batch1: decode(1, mean_context),
                decode_tokens_per_s: args.batch_size as f64 / decode_batch.seconds(),
                decode_batch,
                memory: memory(
                    model,
                    args,
                    hardware,
                    (args.batch_size * (n + workload.new_tokens)) as f64,
                ),
            }
        })
        .collect();
    StrategyPrediction {
        strategy: strategy.into(),
        tp: args.tp,
        pp: args.pp,
        nodes: args.nodes,
        batch_size: args.batch_size,
        variants,
    }
}

/// The fullest GPU's weights and KV cache for `cached_tokens` positions (over the batch).
fn memory(
    model: &ModelShape,
    args: &EngineArgs,
    hardware: &Hardware,
    cached_tokens: f64,
) -> MemoryEstimate {
    // A CPU host's memory holds all its ranks (counted as copies of the fullest); a GPU's, one.
    let sharing = hardware.host.map_or(1, |host| {
        if host.single_host {
            args.tp * args.pp
        } else {
            args.ranks_per_node.max(1)
        }
    }) as f64;
    Placement::new(args)
        .stages()
        .into_iter()
        .map(|stage| {
            let weights_bytes = stage_weight_bytes(model, args.tp, stage);
            let kv_cache_bytes =
                stage.layers as f64 * kv_cache_bytes_per_layer(model, args.tp, cached_tokens);
            MemoryEstimate {
                weights_bytes,
                kv_cache_bytes,
                fits: (weights_bytes + kv_cache_bytes) * sharing <= hardware.memory_bytes,
            }
        })
        .fold(None, |fullest: Option<MemoryEstimate>, m| match fullest {
            Some(f) if f.total_bytes() >= m.total_bytes() => Some(f),
            _ => Some(m),
        })
        .unwrap_or(MemoryEstimate {
            weights_bytes: 0.0,
            kv_cache_bytes: 0.0,
            fits: true,
        })
}

mod estimate;
#[cfg(test)]
mod tests;
