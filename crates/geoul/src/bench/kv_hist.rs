//! A log-bucket latency histogram (HDR style): every sample lands in a bucket at
//! most 1/64 of its value wide, so any percentile read back is within 0.8 % of
//! the true sample; memory is fixed (≈ 30 KiB) however many samples are recorded.

use std::time::Duration;

/// Values below this are counted exactly (one bucket per nanosecond).
const LINEAR: u64 = 128;
/// Buckets per power of two above [`LINEAR`].
const HALF: u64 = LINEAR / 2;
/// Enough buckets for every `u64`.
const BUCKETS: usize = ((64 - 7) * HALF + LINEAR) as usize;

/// Latencies in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum_ns: u128,
    min_ns: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// The bucket of `v`.
fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let msb = 63 - u64::from(v.leading_zeros());
    let shift = msb - 6;
    (shift * HALF + (v >> shift)) as usize
}

/// The smallest value of bucket `i` and its width.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, 1);
    }
    let shift = i / HALF - 1;
    let mantissa = i - shift * HALF;
    (mantissa << shift, 1 << shift)
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            sum_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }

    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[index(ns)] += 1;
        self.total += 1;
        self.sum_ns += u128::from(ns);
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum_ns += other.sum_ns;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The nearest-rank percentile `p` (0 < p ≤ 100): the middle of the bucket
    /// holding the smallest sample with at least p % of samples at or below it,
    /// clamped to the exact min and max.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.total == 0 || !(p > 0.0 && p <= 100.0) {
            return None;
        }
        // Counts stay far below 2^52, so the float round trip is exact.
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = bucket_range(i);
                let mid = low.saturating_add(width / 2);
                return Some(Duration::from_nanos(mid.clamp(self.min_ns, self.max_ns)));
            }
        }
        Some(Duration::from_nanos(self.max_ns))
    }

    pub fn mean(&self) -> Option<Duration> {
        let mean = self.sum_ns.checked_div(u128::from(self.total))?;
        Some(Duration::from_nanos(
            u64::try_from(mean).unwrap_or(u64::MAX),
        ))
    }

    pub fn max(&self) -> Option<Duration> {
        (self.total > 0).then(|| Duration::from_nanos(self.max_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: u64) -> Duration {
        Duration::from_micros(v)
    }

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        let mut expected_low = 0;
        for i in 0..BUCKETS {
            let (low, width) = bucket_range(i);
            assert_eq!(low, expected_low, "bucket {i}");
            assert_eq!(index(low), i);
            assert_eq!(index(low + (width - 1)), i);
            assert!(low < LINEAR || width * 64 <= low, "bucket {i} too wide");
            expected_low = low.wrapping_add(width);
        }
        assert_eq!(expected_low, 0, "the last bucket ends at u64::MAX");
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_one_to_a_thousand_microseconds() {
        let mut h = Histogram::new();
        for v in (1..=1000).rev() {
            h.record(us(v));
        }
        let near = |p: f64, want: u64| {
            let got = h.percentile(p).expect("samples").as_nanos() as f64;
            let want = (want * 1000) as f64;
            assert!((got - want).abs() <= want / 100.0, "p{p}: {got} vs {want}");
        };
        near(50.0, 500);
        near(99.0, 990);
        near(99.9, 999);
        near(100.0, 1000);
        assert_eq!(h.percentile(100.0), Some(us(1000)), "clamped to the max");
        assert_eq!(h.max(), Some(us(1000)));
        assert_eq!(h.mean(), Some(Duration::from_nanos(500_500)));
        assert_eq!(h.count(), 1000);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for ns in [3, 5, 7, 100] {
            h.record(Duration::from_nanos(ns));
        }
        assert_eq!(h.percentile(50.0), Some(Duration::from_nanos(5)));
        assert_eq!(h.percentile(75.0), Some(Duration::from_nanos(7)));
        assert_eq!(h.percentile(1.0), Some(Duration::from_nanos(3)));
    }

    #[test]
    fn merge_adds_everything() {
        let (mut a, mut b) = (Histogram::new(), Histogram::new());
        a.record(us(10));
        b.record(us(30));
        b.record(us(20));
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.mean(), Some(us(20)));
        assert_eq!(a.max(), Some(us(30)));
        let low = a.percentile(1.0).expect("samples");
        assert!(
            low >= us(10) && low <= Duration::from_nanos(10_100),
            "{low:?}"
        );
    }

    #[test]
    fn empty_and_nonsense() {
        let h = Histogram::new();
        assert_eq!(h.percentile(50.0), None);
        assert_eq!(h.mean(), None);
        assert_eq!(h.max(), None);
        let mut one = Histogram::new();
        one.record(us(5));
        assert_eq!(one.percentile(0.0), None);
        assert_eq!(one.percentile(f64::NAN), None);
        assert_eq!(one.percentile(99.9), Some(us(5)));
    }
}
