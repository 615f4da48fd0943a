//! Logprob drift: how far a strategy's confidence in the tokens it chose moved from the
//! baseline's, while both still chose the same tokens.
//!
//! Past the first differing token the two sequences condition on different text, so their
//! logprobs are no longer comparable; only the common prefix counts. Position i of each list is
//! the logprob of completion token i, in the same tokenizer as the token agreement.

/// Mean absolute difference of the chosen tokens' logprobs over the first
/// min(`agreed_prefix`, `baseline.len()`, `candidate.len()`) positions; `None` when that is zero
/// positions (one side has no logprobs, or the very first token differs).
pub fn logprob_mad(baseline: &[f64], candidate: &[f64], agreed_prefix: usize) -> Option<f64> {
    let n = agreed_prefix.min(baseline.len()).min(candidate.len());
    if n == 0 {
        return None;
    }
    let total: f64 = baseline[..n]
        .iter()
        .zip(&candidate[..n])
        .map(|(a, b)| (a - b).abs())
        .sum();
    Some(total / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_over_the_common_prefix_only() {
        // Prefix of 3 agreed tokens: |-0.5 - -0.4| + |-1.0 - -1.0| + |-0.2 - -0.5| = 0.1 + 0 + 0.3
        // = 0.4, over 3 positions = 0.13333; the 4th position (after the difference) is ignored.
        let mad = logprob_mad(&[-0.5, -1.0, -0.2, -3.0], &[-0.4, -1.0, -0.5, -0.1], 3).unwrap();
        assert!((mad - 0.4 / 3.0).abs() < 1e-12, "{mad}");
    }

    #[test]
    fn the_shorter_logprob_list_bounds_the_prefix() {
        // agreed 5 tokens, but the candidate has 2 logprobs: |-1 - -2| + |0 - 0| = 1, / 2 = 0.5.
        assert_eq!(logprob_mad(&[-1.0, 0.0, -1.0], &[-2.0, 0.0], 5), Some(0.5));
    }

    #[test]
    fn no_common_positions_gives_none() {
        assert_eq!(logprob_mad(&[], &[-1.0], 4), None);
        assert_eq!(logprob_mad(&[-1.0], &[-1.0], 0), None);
    }
}
