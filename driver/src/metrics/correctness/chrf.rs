//! chrF (Popović, 2015): an F-score over character n-grams, as sacrebleu's `CHRF()` defaults
//! compute it for one sentence: n = 1..=6, beta = 2, whitespace removed, case kept, no word
//! n-grams, and "effective order" averaging (sacrebleu 2.x with `eps_smoothing=False`).
//!
//! The result is sacrebleu's `sentence_score(hypothesis, [reference]).score / 100`, so 0..=1,
//! with one deliberate difference: two texts that are both empty after whitespace removal score
//! 1.0 here (they are identical), where sacrebleu returns 0.

use std::collections::HashMap;

/// Highest character n-gram order.
const ORDER: usize = 6;
/// Recall weighs beta^2 = 4 times as much as precision.
const BETA: f64 = 2.0;

/// chrF of `hypothesis` (the strategy's completion) against `reference` (the baseline's), 0..=1.
///
/// For each order n, with the n-gram counts of both texts: matches = sum over n-grams of the
/// smaller count. Orders where both texts have n-grams are "effective"; precision and recall
/// (matches / hypothesis n-grams, matches / reference n-grams) are averaged over those, and
/// chrF = (1 + b^2) P R / (b^2 P + R), 0 when P + R = 0.
pub fn chrf(reference: &str, hypothesis: &str) -> f64 {
    let (reference, hypothesis) = (
        without_whitespace(reference),
        without_whitespace(hypothesis),
    );
    if reference.is_empty() && hypothesis.is_empty() {
        return 1.0;
    }
    let (mut precision, mut recall, mut effective) = (0.0, 0.0, 0usize);
    for n in 1..=ORDER {
        let (hyp, reference) = (ngrams(&hypothesis, n), ngrams(&reference, n));
        let hyp_total: usize = hyp.values().sum();
        let ref_total: usize = reference.values().sum();
        if hyp_total == 0 || ref_total == 0 {
            continue;
        }
        let matches: usize = hyp
            .iter()
            .map(|(gram, count)| reference.get(gram).map_or(0, |r| (*r).min(*count)))
            .sum();
        precision += matches as f64 / hyp_total as f64;
        recall += matches as f64 / ref_total as f64;
        effective += 1;
    }
    if effective == 0 {
        return 0.0;
    }
    let (precision, recall) = (precision / effective as f64, recall / effective as f64);
    if precision + recall == 0.0 {
        return 0.0;
    }
    let b2 = BETA * BETA;
    (1.0 + b2) * precision * recall / (b2 * precision + recall)
}

fn without_whitespace(text: &str) -> Vec<char> {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

fn ngrams(chars: &[char], n: usize) -> HashMap<&[char], usize> {
    let mut counts = HashMap::new();
    for gram in chars.windows(n) {
        *counts.entry(gram).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn equal_precision_and_recall() {
        // reference "ab c" -> "abc", hypothesis "abd".
        // n=1: hyp {a,b,d}, ref {a,b,c}: 2 matches of 3 and 3 -> P1 = R1 = 2/3
        // n=2: hyp {ab,bd}, ref {ab,bc}: 1 of 2 and 2 -> P2 = R2 = 1/2
        // n=3: hyp {abd}, ref {abc}: 0 of 1 and 1 -> P3 = R3 = 0
        // n=4..6: no hypothesis n-grams, not effective. 3 effective orders:
        // P = R = (2/3 + 1/2 + 0) / 3 = 7/18; F = 5 P R / (4 P + R) = P = 7/18 = 0.388889
        // (sacrebleu 2.x: CHRF().sentence_score("abd", ["ab c"]).score = 38.888888888888886)
        assert!(close(chrf("ab c", "abd"), 7.0 / 18.0));
    }

    #[test]
    fn recall_weighs_more_than_precision() {
        // reference "abab", hypothesis "ab".
        // n=1: hyp {a:1,b:1} = 2, ref {a:2,b:2} = 4, matches 1+1 = 2 -> P1 = 1, R1 = 1/2
        // n=2: hyp {ab:1} = 1, ref {ab:2,ba:1} = 3, matches 1 -> P2 = 1, R2 = 1/3
        // n=3..6: no hypothesis n-grams. P = (1 + 1)/2 = 1, R = (1/2 + 1/3)/2 = 5/12
        // F = 5 * 1 * 5/12 / (4 * 1 + 5/12) = (25/12) / (53/12) = 25/53 = 0.471698
        // (sacrebleu 2.x: 47.169811320754704)
        assert!(close(chrf("abab", "ab"), 25.0 / 53.0));
        // Swapping the sides swaps P and R: F = 5 * 5/12 * 1 / (4 * 5/12 + 1) = 25/32.
        assert!(close(chrf("ab", "abab"), 25.0 / 32.0));
    }

    #[test]
    fn whitespace_is_removed_case_is_kept() {
        assert_eq!(chrf("a b", "ab"), 1.0);
        assert_eq!(chrf("The answer", "The answer"), 1.0);
        // "A" vs "a": no 1-gram matches, 1 effective order with P = R = 0.
        assert_eq!(chrf("A", "a"), 0.0);
    }

    #[test]
    fn empty_texts_are_the_edge_cases() {
        assert_eq!(chrf("", "abc"), 0.0);
        assert_eq!(chrf("abc", " "), 0.0);
        // Both empty: 1.0 here (identical), 0.0 in sacrebleu.
        assert_eq!(chrf(" ", ""), 1.0);
    }
}
