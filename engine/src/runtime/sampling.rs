//! Token selection: greedy or seeded sampling with temperature, top-k and top-p, and the
//! log-probabilities reported back (of the model's unmodified distribution, as OpenAI and vLLM do).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::token_choice::RowSummary;

/// How to pick tokens and when to stop, for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f64,
    /// Nucleus sampling mass; 1.0 disables it.
    pub top_p: f64,
    /// Keep only the k most likely tokens; 0 disables it.
    pub top_k: usize,
    pub seed: u64,
    pub max_new_tokens: usize,
    /// Generation stops when the decoded completion contains one of these (which is cut off).
    pub stop: Vec<String>,
    /// Alternatives reported per generated token.
    pub top_logprobs: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            max_new_tokens: 128,
            stop: Vec::new(),
            top_logprobs: 0,
        }
    }
}

impl SamplingParams {
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }
}

/// A chosen token, its log-probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SampledToken {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// Per-sequence sampler; owns its RNG so a sequence samples the same alone or in a batch, and on
/// every rank of a tensor-parallel group.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = StdRng::seed_from_u64(params.seed);
        Self { params, rng }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from a full row of logits.
    pub fn sample_row(&mut self, logits: &[f32]) -> SampledToken {
        self.sample(&RowSummary::from_full_row(logits, &self.params))
    }

    /// Picks the next token from a row summary (see [`super::token_choice`]).
    pub fn sample(&mut self, row: &RowSummary) -> SampledToken {
        let (token, logit) = if self.params.is_greedy() {
            row.top[0]
        } else if self.params.top_k > 0 {
            let k = self.params.top_k.min(row.top.len());
            let candidates = row.top[..k].to_vec();
            self.draw(&candidates)
        } else {
            let full = row
                .full
                .as_deref()
                .expect("summaries keep the full row for full-vocabulary sampling");
            let mut candidates: Vec<(u32, f32)> = full
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, l))
                .collect();
            candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            self.draw(&candidates)
        };
        let top = row
            .top
            .iter()
            .take(self.params.top_logprobs)
            .map(|&(id, l)| (id, row.logprob(l)))
            .collect();
        SampledToken {
            token,
            logprob: row.logprob(logit),
            top,
        }
    }

    /// Draws from `candidates` (best first) at the temperature, within the top-p mass.
    fn draw(&mut self, candidates: &[(u32, f32)]) -> (u32, f32) {
        let inv_t = 1.0 / self.params.temperature;
        let max = candidates[0].1 as f64;
        let mut weights: Vec<f64> = candidates
            .iter()
            .map(|&(_, l)| ((l as f64 - max) * inv_t).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut keep = weights.len();
        if self.params.top_p < 1.0 {
            let mut cumulative = 0.0;
            for (i, w) in weights.iter().enumerate() {
                cumulative += w / total;
                if cumulative >= self.params.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        weights.truncate(keep);
        let kept: f64 = weights.iter().sum();
        let mut draw = self.rng.random::<f64>() * kept;
        for (i, w) in weights.iter().enumerate() {
            if draw < *w {
                return candidates[i];
            }
            draw -= w;
        }
        candidates[keep - 1]
    }
}

/// Index of the largest logit (the lowest index on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The `k` largest entries, best first (ties by lower index), in one pass.
pub fn top_k_indices(logits: &[f32], k: usize) -> Vec<u32> {
    let k = k.min(logits.len());
    if k == 0 {
        return Vec::new();
    }
    let mut best: Vec<u32> = Vec::with_capacity(k + 1);
    for (i, &l) in logits.iter().enumerate() {
        if best.len() == k && l <= logits[best[k - 1] as usize] {
            continue;
        }
        let at = best.partition_point(|&b| logits[b as usize] >= l);
        best.insert(at, i as u32);
        best.truncate(k);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_argmax_and_reports_logprobs() {
        let mut s = Sampler::new(SamplingParams {
            top_logprobs: 2,
            ..Default::default()
        });
        let out = s.sample_row(&[0.0, 2.0, 1.0]);
        assert_eq!(out.token, 1);
        let z = (1f64 + 2f64.exp() + 1f64.exp()).ln();
        assert!((out.logprob as f64 - (2.0 - z)).abs() < 1e-6);
        assert_eq!(out.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn top_k_is_sorted_and_stable() {
        assert_eq!(top_k_indices(&[1.0, 3.0, 3.0, 2.0, 0.5], 3), vec![1, 2, 3]);
        assert_eq!(top_k_indices(&[1.0], 4), vec![0]);
    }

    #[test]
    fn seeded_sampling_repeats_and_respects_top_k() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 5,
            seed: 7,
            ..Default::default()
        };
        let allowed = top_k_indices(&logits, 5);
        let draw = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone());
            (0..40)
                .map(|_| s.sample_row(&logits).token)
                .collect::<Vec<_>>()
        };
        let a = draw(&params);
        assert_eq!(a, draw(&params));
        assert!(a.iter().all(|t| allowed.contains(t)));
        assert!(a.iter().collect::<std::collections::HashSet<_>>().len() > 1);
    }

    #[test]
    fn tiny_top_p_is_greedy() {
        let logits = [0.1f32, 5.0, 0.2, 4.9];
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_p: 0.01,
            seed: 3,
            ..Default::default()
        });
        assert!((0..20).all(|_| s.sample_row(&logits).token == 1));
    }
}
