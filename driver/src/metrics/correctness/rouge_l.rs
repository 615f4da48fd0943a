//! ROUGE-L F1 (Lin, 2004): the longest common subsequence of words, as an F-score.
//!
//! Tokenisation: the text is lowercased and split on Unicode whitespace; punctuation stays part
//! of its word (`Paris.` and `Paris` differ). That is simpler than the `rouge-score` package,
//! which also drops non-alphanumeric characters, so the numbers are close to, not equal to, its.

/// ROUGE-L F1 in 0..=1 (beta = 1, so symmetric): with `lcs` the longest common subsequence of
/// the two word lists, P = lcs / candidate words, R = lcs / reference words, F1 = 2PR / (P + R).
/// Both texts without words give 1.0; only one without words gives 0.0.
pub fn rouge_l_f1(reference: &str, candidate: &str) -> f64 {
    let (reference, candidate) = (words(reference), words(candidate));
    if reference.is_empty() && candidate.is_empty() {
        return 1.0;
    }
    let lcs = lcs_len(&reference, &candidate);
    if lcs == 0 {
        return 0.0;
    }
    let precision = lcs as f64 / candidate.len() as f64;
    let recall = lcs as f64 / reference.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_lowercase).collect()
}

/// Length of the longest common subsequence, by dynamic programming over two rows.
fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut previous = vec![0usize; b.len() + 1];
    let mut current = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            current[j + 1] = if x == y {
                previous[j] + 1
            } else {
                previous[j + 1].max(current[j])
            };
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcs_skips_inserted_items() {
        // "a b c d" vs "a x c y d": the LCS is a c d, length 3.
        assert_eq!(
            lcs_len(&["a", "b", "c", "d"], &["a", "x", "c", "y", "d"]),
            3
        );
        assert_eq!(lcs_len::<&str>(&[], &["a"]), 0);
    }

    #[test]
    fn a_worked_example() {
        // reference "the cat sat on the mat" (6 words), candidate "the cat lay on a mat"
        // (6 words): LCS = the cat on mat = 4. P = 4/6, R = 4/6, F1 = 2PR/(P+R) = 4/6 = 0.6667.
        let f = rouge_l_f1("the cat sat on the mat", "the cat lay on a mat");
        assert!((f - 4.0 / 6.0).abs() < 1e-12, "{f}");
    }

    #[test]
    fn unequal_lengths_weigh_precision_and_recall() {
        // reference "a b c d" (4 words), candidate "a c" (2 words): LCS = a c = 2.
        // P = 2/2 = 1, R = 2/4 = 0.5, F1 = 2 * 1 * 0.5 / 1.5 = 2/3.
        let f = rouge_l_f1("a b c d", "a c");
        assert!((f - 2.0 / 3.0).abs() < 1e-12, "{f}");
        // beta = 1: swapping the sides gives the same F1.
        assert_eq!(f, rouge_l_f1("a c", "a b c d"));
    }

    #[test]
    fn case_and_spacing_are_ignored_punctuation_is_not() {
        assert_eq!(rouge_l_f1("The  Answer\nis 42", "the answer is 42"), 1.0);
        // "is 42." vs "is 42": LCS = is = 1 of 2 words each: P = R = 0.5, F1 = 0.5.
        assert_eq!(rouge_l_f1("is 42.", "is 42"), 0.5);
    }

    #[test]
    fn empty_texts_are_the_edge_cases() {
        assert_eq!(rouge_l_f1("", "  \n"), 1.0);
        assert_eq!(rouge_l_f1("", "word"), 0.0);
        assert_eq!(rouge_l_f1("x", "y"), 0.0);
    }
}
