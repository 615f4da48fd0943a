//! Every formula of the performance model, each with its source: parameters, FLOPs and HBM bytes
//! of one rank's share of a pipeline stage, the KV cache, ring all-reduce and send times, the
//! roofline, and pipeline timing (bubble, fill and drain, the engine's decode round).
//!
//! Counts are f64: they reach 1e15 and only feed divisions.

use super::hardware::Link;
use super::model_shape::ModelShape;

/// KV heads one rank of a tp group holds: kv_heads / tp, but at least one, since with more ranks
/// than KV heads each KV head is replicated (the engine's `HeadShard`; Llama 3.3 70B at tp=16).
pub fn kv_heads_per_rank(m: &ModelShape, tp: usize) -> f64 {
    (m.kv_heads as f64 / tp as f64).max(1.0)
}

/// Parameters of one decoder layer on one rank: q and o (d x heads·head_dim each), k and v
/// (d x kv_heads·head_dim each), gate, up and down (d x intermediate each), two RMSNorm weights.
/// Source: the Llama block (Touvron et al. 2023) split as Megatron-LM's column/row-parallel
/// linears (Shoeybi et al. 2019, sec. 3): each matrix tp ways, K/V per the heads a rank holds,
/// norms replicated.
pub fn layer_params_per_rank(m: &ModelShape, tp: usize) -> f64 {
    let d = m.hidden_size as f64;
    let tp = tp as f64;
    let q_width = (m.heads * m.head_dim) as f64;
    let q_and_o = 2.0 * d * q_width / tp;
    let k_and_v = 2.0 * d * kv_heads_per_rank(m, tp as usize) * m.head_dim as f64;
    let mlp = 3.0 * d * m.intermediate_size as f64 / tp;
    q_and_o + k_and_v + mlp + 2.0 * d
}

/// Parameters of the embedding (or the LM head) on one rank: vocab x d split over the vocabulary
/// (Megatron-LM's vocab-parallel embedding, the engine's `VocabParallelEmbedding`).
pub fn vocab_params_per_rank(m: &ModelShape, tp: usize) -> f64 {
    (m.vocab_size * m.hidden_size) as f64 / tp as f64
}

/// What a pipeline stage holds: its decoder layers, and the embedding (first stage) and LM head
/// (last stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageSlice {
    pub layers: usize,
    pub embedding: bool,
    pub lm_head: bool,
}

/// One micro-batch through a stage: `rows` new tokens, attending over `attended` positions in
/// all (summed over the rows), reading `kv_read` cached positions' keys and values per layer, and
/// `logits_rows` rows whose logits are needed (one per sequence).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pass {
    pub rows: f64,
    pub attended: f64,
    pub kv_read: f64,
    pub logits_rows: f64,
}

/// FLOPs and memory (HBM) bytes of some kernels.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Work {
    pub flops: f64,
    pub hbm_bytes: f64,
}

impl Work {
    pub fn plus(self, other: Self) -> Self {
        Self {
            flops: self.flops + other.flops,
            hbm_bytes: self.hbm_bytes + other.hbm_bytes,
        }
    }
}

/// One rank's share of a pass through a stage, by kind of kernel: the matmuls (the weights, read
/// once per pass) and attention (the KV cache). Each kind meets its own roofline, as the kernels
/// run one after another.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageWork {
    pub matmul: Work,
    pub attention: Work,
}

impl StageWork {
    pub fn total(&self) -> Work {
        self.matmul.plus(self.attention)
    }
}

/// Weights one rank of a stage holds, in bytes. The LM head is its own copy unless it is tied
/// to an embedding on the same stage.
pub fn stage_weight_bytes(m: &ModelShape, tp: usize, stage: StageSlice) -> f64 {
    let vocab = vocab_params_per_rank(m, tp);
    let shared_head = m.tie_word_embeddings && stage.embedding;
    let params = stage.layers as f64 * layer_params_per_rank(m, tp)
        + if stage.embedding { vocab } else { 0.0 }
        + if stage.lm_head && !shared_head {
            vocab
        } else {
            0.0
        }
        + if stage.lm_head {
            m.hidden_size as f64 // the final RMSNorm
        } else {
            0.0
        };
    params * m.value_bytes as f64
}

/// Dense matmul FLOPs: 2 per weight per token (a multiply and an add).
/// Source: Kaplan et al. 2020, "Scaling Laws for Neural Language Models", Table 1 (C ≈ 2N).
pub fn matmul_flops(params: f64, rows: f64) -> f64 {
    2.0 * params * rows
}

/// Attention FLOPs of one layer on one rank: per token and attended position, QKᵀ and the
/// weighted sum of V cost 2·head_dim each per query head: 4 · attended · (heads / tp) · head_dim.
/// Source: Kaplan et al. 2020, Table 1 (2·n_ctx·d_attn for QKᵀ) with the same again for ·V, as in
/// Hoffmann et al. 2022 (Chinchilla), appendix F.
pub fn attention_flops_per_layer(m: &ModelShape, tp: usize, attended: f64) -> f64 {
    4.0 * attended * (m.heads as f64 / tp as f64) * m.head_dim as f64
}

/// Positions attended to over a causal prefill of `n` tokens: 1 + 2 + … + n = n(n+1)/2.
pub fn causal_attended(n: usize) -> f64 {
    let n = n as f64;
    n * (n + 1.0) / 2.0
}

/// KV cache bytes of one layer on one rank for `positions` cached tokens: keys and values,
/// each kv_heads_per_rank x head_dim values per position (engine/src/runtime/kv_cache.rs).
pub fn kv_cache_bytes_per_layer(m: &ModelShape, tp: usize, positions: f64) -> f64 {
    2.0 * kv_heads_per_rank(m, tp) * m.head_dim as f64 * positions * m.value_bytes as f64
}

/// FLOPs and HBM bytes of one rank's share of `pass` through `stage`. Weights are read once per
/// pass whatever its rows (the engine's pipeline doc: "a stage reads its weights once per
/// micro-batch"), plus the cached keys and values; the embedding reads only `rows` of its table,
/// which is left out, as are activations (small next to the weights).
pub fn stage_pass_work(m: &ModelShape, tp: usize, stage: StageSlice, pass: Pass) -> StageWork {
    let layers = stage.layers as f64;
    let layer_params = layer_params_per_rank(m, tp);
    let head_params = if stage.lm_head {
        vocab_params_per_rank(m, tp)
    } else {
        0.0
    };
    StageWork {
        matmul: Work {
            flops: layers * matmul_flops(layer_params, pass.rows)
                + matmul_flops(head_params, pass.logits_rows),
            hbm_bytes: (layers * layer_params + head_params) * m.value_bytes as f64,
        },
        attention: Work {
            flops: layers * attention_flops_per_layer(m, tp, pass.attended),
            hbm_bytes: layers * kv_cache_bytes_per_layer(m, tp, pass.kv_read),
        },
    }
}

/// All-reduces one pass through a stage makes over its tp group: two per layer (after attention's
/// o_proj and after the MLP's down_proj, Megatron-LM sec. 3) and one after the vocab-parallel
/// embedding. None when tp = 1.
pub fn all_reduces_per_pass(stage: StageSlice, tp: usize) -> usize {
    if tp <= 1 {
        return 0;
    }
    2 * stage.layers + usize::from(stage.embedding)
}

/// Ring all-reduce of `bytes` over `ranks`: a reduce-scatter and an all-gather of n−1 steps each,
/// every step moving bytes/n per rank, so 2(n−1)/n · bytes / bandwidth + 2(n−1) · latency.
/// Source: Patarasuk & Yuan 2009, "Bandwidth optimal all-reduce algorithms for clusters of
/// workstations"; Thakur, Rabenseifner & Gropp 2005 (the α–β cost model); NCCL's "bus bandwidth".
pub fn ring_all_reduce_seconds(bytes: f64, ranks: usize, link: Link) -> f64 {
    if ranks <= 1 {
        return 0.0;
    }
    let n = ranks as f64;
    2.0 * (n - 1.0) / n * bytes / link.bytes_per_s + 2.0 * (n - 1.0) * link.latency_s
}

/// One message of `bytes`: latency + bytes / bandwidth (Hockney's α–β model, 1994).
pub fn send_seconds(bytes: f64, link: Link) -> f64 {
    link.latency_s + bytes / link.bytes_per_s
}

/// Roofline: a kernel takes the longer of its compute time and its memory time; returns both
/// (compute, memory). Source: Williams, Waterman & Patterson 2009, "Roofline".
pub fn roofline_seconds(work: Work, flops_per_s: f64, hbm_bytes_per_s: f64) -> (f64, f64) {
    (work.flops / flops_per_s, work.hbm_bytes / hbm_bytes_per_s)
}

/// Turns a core takes when `busy` ranks share `slots` cores (CPU ranks, more than the cores):
/// ceil(busy / slots). The ranks of a tp group meet at every all-reduce, so each stretch between
/// two is a superstep of the bulk-synchronous model, as long as its most loaded processor
/// (Valiant 1990, "A bridging model for parallel computation"): the core running the most ranks,
/// one after another. 1 when every busy rank has a core of its own.
pub fn time_slicing_turns(busy: usize, slots: usize) -> usize {
    busy.max(1).div_ceil(slots.max(1))
}

/// How much longer `busy` ranks of one CPU host take for their work than one rank alone takes for
/// its share, for work running at `rank_rate` on one rank and at most `host_rate` on all the
/// host's ranks together: no sooner than the turns its `slots` cores take
/// ([`time_slicing_turns`]), and no sooner than all their work at the host's rate:
/// max(ceil(busy / slots), busy x rank_rate / host_rate). The second is the roofline of the whole
/// chip (Williams et al. 2009: a socket's cores share its memory bandwidth, as STREAM on one and
/// on all cores shows), and it also holds when the cores are lent out (SMT siblings, a busy host).
pub fn host_stretch(busy: usize, slots: usize, rank_rate: f64, host_rate: f64) -> f64 {
    let turns = time_slicing_turns(busy, slots) as f64;
    turns.max(busy.max(1) as f64 * rank_rate / host_rate)
}

/// Share of a pipeline's time its stages are idle when `micro_batches` pass through `pp` equal
/// stages once (fill and drain): (pp−1) / (m + pp−1). Source: Huang et al. 2019 (GPipe), sec. 2.3;
/// Narayanan et al. 2021 (Megatron-LM at scale), sec. 2.2.1.
pub fn bubble_fraction(pp: usize, micro_batches: usize) -> f64 {
    let (pp, m) = (pp as f64, micro_batches.max(1) as f64);
    (pp - 1.0) / (m + pp - 1.0)
}

/// Time for `micro_batches` to pass through stages taking `stage_seconds` each: the first passes
/// every stage, the rest leave at the slowest stage's pace: Σ t_s + (m−1) · max t_s; for equal
/// stages (m + pp − 1) · t, GPipe's schedule.
pub fn pipeline_seconds(stage_seconds: &[f64], micro_batches: usize) -> f64 {
    let sum: f64 = stage_seconds.iter().sum();
    sum + micro_batches.saturating_sub(1) as f64 * max_of(stage_seconds)
}

/// Time between two tokens of one sequence when `groups` decode groups cycle round robin through
/// the stages (engine/src/runtime/pipeline.rs): a group's round trip Σ t_s, or, with more groups
/// than the round trip holds, `groups` turns of the slowest stage: max(Σ t_s, g · max t_s).
pub fn decode_round_seconds(stage_seconds: &[f64], groups: usize) -> f64 {
    let sum: f64 = stage_seconds.iter().sum();
    sum.max(groups as f64 * max_of(stage_seconds))
}

/// How the engine splits a batch for decode (engine/src/runtime/pipeline.rs): into
/// max(micro_batches or pp, pp) groups of ceil(batch / that) sequences; returns (groups, size).
/// Without stages (pp = 1) the batch decodes whole, whatever the micro-batches.
pub fn decode_groups(batch: usize, micro_batches: Option<usize>, pp: usize) -> (usize, usize) {
    if pp <= 1 {
        return (1, batch.max(1));
    }
    let wanted = micro_batches.unwrap_or(pp).max(pp).max(1);
    let size = batch.div_ceil(wanted).max(1);
    (batch.div_ceil(size), size)
}

fn max_of(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

#[cfg(test)]
mod tests;
