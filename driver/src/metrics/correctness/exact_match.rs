//! Exact match: the strategy's completion is byte-for-byte the baseline's.

/// True when the two completions are the same bytes; a trailing space or newline counts as a
/// difference, since the other metrics are the lenient ones.
pub fn exact_match(baseline: &str, candidate: &str) -> bool {
    baseline == candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_identical_bytes_match() {
        assert!(exact_match("The answer is 42.", "The answer is 42."));
        assert!(exact_match("", ""));
        assert!(!exact_match("The answer is 42.", "The answer is 42.\n"));
        assert!(!exact_match("Paris", "paris"));
    }
}
