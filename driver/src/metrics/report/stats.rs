//! The few statistics the report needs, with their definitions fixed here.

/// The nearest-rank percentile: the smallest value with at least `p` percent of the values at or
/// below it, i.e. sorted[ceil(p/100 * n) - 1] (at least the first); `None` for no values. It is
/// always one of the measured values, never an interpolation between two.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

pub fn min(values: &[f64]) -> Option<f64> {
    values.iter().copied().min_by(f64::total_cmp)
}

/// The share of `true` among the known verdicts; `None` when none is known.
pub fn share_true(verdicts: impl IntoIterator<Item = Option<bool>>) -> Option<f64> {
    let known: Vec<bool> = verdicts.into_iter().flatten().collect();
    (!known.is_empty()).then(|| known.iter().filter(|v| **v).count() as f64 / known.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_by_hand() {
        // 10 values 10..=100 (given unsorted): p50 rank ceil(5) = 5 -> 50; p90 rank 9 -> 90;
        // p99 rank ceil(9.9) = 10 -> 100; p0 is clamped to the first -> 10.
        let values = [100.0, 10.0, 90.0, 20.0, 80.0, 30.0, 70.0, 40.0, 60.0, 50.0];
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 90.0), Some(90.0));
        assert_eq!(percentile(&values, 99.0), Some(100.0));
        assert_eq!(percentile(&values, 0.0), Some(10.0));
        // 3 values: p50 rank ceil(1.5) = 2 -> the middle one.
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn means_minimums_and_shares() {
        assert_eq!(mean(&[1.0, 2.0, 6.0]), Some(3.0));
        assert_eq!(mean(&[]), None);
        assert_eq!(min(&[0.5, 0.25, 1.0]), Some(0.25));
        // Unknown verdicts are left out: 1 true of 2 known.
        assert_eq!(share_true([Some(true), None, Some(false)]), Some(0.5));
        assert_eq!(share_true([None]), None);
    }
}
