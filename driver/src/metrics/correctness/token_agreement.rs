//! Token agreement: how far the strategy's completion follows the baseline's, token by token.
//!
//! Greedy decoding is deterministic, so a strategy that computes the same logits as the baseline
//! produces the same tokens; the first differing token is where numerics (reduction order across
//! ranks, say) first changed a choice, and everything after it may legitimately diverge.

/// Where two token sequences part, and how much of the shorter one agrees before that.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenAgreement {
    /// Index of the first position where both have a token and they differ; `None` when one
    /// sequence is a prefix of the other (equal sequences included).
    pub first_diff: Option<usize>,
    /// Tokens that agree before the first difference (the common prefix).
    pub agreed: usize,
    /// `agreed` / length of the shorter sequence, in 0..=1: 1.0 when both are empty, 0.0 when
    /// only one is (an empty completion agrees with nothing).
    pub share: f64,
}

/// Compares two token sequences position by position; symmetric in its arguments.
pub fn token_agreement<T: PartialEq>(baseline: &[T], candidate: &[T]) -> TokenAgreement {
    let shorter = baseline.len().min(candidate.len());
    let first_diff = baseline.iter().zip(candidate).position(|(a, b)| a != b);
    let agreed = first_diff.unwrap_or(shorter);
    let share = match (baseline.is_empty(), candidate.is_empty()) {
        (true, true) => 1.0,
        (true, false) | (false, true) => 0.0,
        (false, false) => agreed as f64 / shorter as f64,
    };
    TokenAgreement {
        first_diff,
        agreed,
        share,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sequences_agree_fully() {
        let t = token_agreement(&[5, 6, 7], &[5, 6, 7]);
        assert_eq!(t.first_diff, None);
        assert_eq!(t.agreed, 3);
        assert_eq!(t.share, 1.0);
    }

    #[test]
    fn a_difference_at_index_2_of_4_gives_half() {
        // baseline [1 2 3 4], candidate [1 2 9 4 5]: first diff at index 2, 2 tokens agree
        // before it, the shorter has 4 tokens: 2 / 4 = 0.5.
        let t = token_agreement(&[1, 2, 3, 4], &[1, 2, 9, 4, 5]);
        assert_eq!(t.first_diff, Some(2));
        assert_eq!(t.agreed, 2);
        assert_eq!(t.share, 0.5);
    }

    #[test]
    fn a_difference_at_the_first_token_gives_zero() {
        // [1 2 3] vs [7 2 3]: diff at 0, 0 agreed, 0 / 3 = 0.0.
        let t = token_agreement(&[1, 2, 3], &[7, 2, 3]);
        assert_eq!(t.first_diff, Some(0));
        assert_eq!(t.share, 0.0);
    }

    #[test]
    fn a_prefix_has_no_first_difference_and_agrees_fully() {
        // [1 2] is a prefix of [1 2 3]: no differing position, 2 agreed, 2 / 2 = 1.0.
        let t = token_agreement(&[1, 2, 3], &[1, 2]);
        assert_eq!(t.first_diff, None);
        assert_eq!(t.agreed, 2);
        assert_eq!(t.share, 1.0);
    }

    #[test]
    fn empty_sequences_are_the_edge_cases() {
        let empty: [u32; 0] = [];
        assert_eq!(token_agreement(&empty, &empty).share, 1.0);
        let one_empty = token_agreement(&empty, &[1]);
        assert_eq!(one_empty.share, 0.0);
        assert_eq!(one_empty.first_diff, None);
        assert_eq!(token_agreement(&[1], &empty).share, 0.0);
    }

    #[test]
    fn it_is_symmetric() {
        let (a, b) = ([1, 2, 3, 4, 5, 6], [1, 2, 3, 0]);
        assert_eq!(token_agreement(&a, &b), token_agreement(&b, &a));
        // diff at 3, shorter has 4 tokens: 3 / 4 = 0.75.
        assert_eq!(token_agreement(&a, &b).share, 0.75);
    }
}
