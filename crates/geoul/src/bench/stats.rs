//! Summaries of measured durations: min, median, p95, max (nearest-rank).

use std::time::Duration;

use serde::Serialize;

/// Time from `kill -9` until every survivor reports the node dead, over all kills.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detection {
    pub kills: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    /// Every measurement in kill order.
    pub samples_ms: Vec<f64>,
}

/// The nearest-rank percentile `p` (0 < p ≤ 100) of ascending `sorted` values:
/// the smallest value with at least p % of the values at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let n = sorted.len();
    // Ranks are small (one per kill), so the float round trip is exact.
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Summarizes `samples`; `None` when there are none.
pub fn summarize(samples: &[Duration]) -> Option<Detection> {
    let in_order: Vec<f64> = samples.iter().copied().map(millis).collect();
    let mut sorted = in_order.clone();
    sorted.sort_by(f64::total_cmp);
    Some(Detection {
        kills: samples.len(),
        min_ms: *sorted.first()?,
        median_ms: percentile(&sorted, 50.0)?,
        p95_ms: percentile(&sorted, 95.0)?,
        max_ms: *sorted.last()?,
        samples_ms: in_order,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(10.0));
        assert_eq!(percentile(&v, 95.0), Some(19.0));
        assert_eq!(percentile(&v, 100.0), Some(20.0));
        assert_eq!(percentile(&v, 1.0), Some(1.0));
    }

    #[test]
    fn percentile_of_few_values() {
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0], 50.0), Some(1.0));
        assert_eq!(percentile(&[1.0, 2.0], 95.0), Some(2.0));
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 95.0), Some(10.0));
    }

    #[test]
    fn percentile_rejects_nonsense() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0], 0.0), None);
        assert_eq!(percentile(&[1.0], 101.0), None);
        assert_eq!(percentile(&[1.0], f64::NAN), None);
    }

    #[test]
    fn summary_sorts_but_keeps_kill_order() {
        let samples = [900, 700, 1200, 800].map(Duration::from_millis);
        let d = summarize(&samples).expect("non-empty");
        assert_eq!(d.kills, 4);
        assert_eq!(d.min_ms, 700.0);
        assert_eq!(d.median_ms, 800.0);
        assert_eq!(d.p95_ms, 1200.0);
        assert_eq!(d.max_ms, 1200.0);
        assert_eq!(d.samples_ms, vec![900.0, 700.0, 1200.0, 800.0]);
    }

    #[test]
    fn summary_rounds_to_a_tenth_of_a_millisecond() {
        let d = summarize(&[Duration::from_micros(812_345)]).expect("non-empty");
        assert_eq!(d.p95_ms, 812.3);
        assert_eq!(summarize(&[]), None);
    }
}
