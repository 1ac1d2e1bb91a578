//! A fixed-size histogram of latencies, cheap enough to update on every
//! committed batch.
//!
//! Values are kept in microseconds, in buckets of eight per power of two:
//! a quantile read from it is at most 12.5 % above the true value, and
//! never below it. Values below 8 µs are exact; values past
//! [`Histogram::MAX`] count in the last bucket.

use std::time::Duration;

/// Sub-buckets per power of two.
const SUB: u32 = 8;
/// `log2(SUB)`.
const SUB_BITS: u32 = 3;
/// The largest power of two (in µs) with buckets of its own: 2^40 µs is
/// about 12 days.
const MAX_EXP: u32 = 40;
/// Number of buckets: the exact ones below `SUB`, then `SUB` per power of
/// two from `SUB_BITS` to `MAX_EXP`.
const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 2) * SUB) as usize;

/// Counts of latencies, by bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .finish()
    }
}

impl Histogram {
    /// The largest latency told apart from larger ones.
    pub const MAX: Duration = Duration::from_micros(1 << (MAX_EXP + 1));

    /// Counts `n` values of `latency`.
    pub fn record(&mut self, latency: Duration, n: u64) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(micros)] += n;
        self.total += n;
    }

    /// Number of values counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The smallest bucket bound at or above a share `q` (0 to 1) of the
    /// values; `None` when nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        // The rank of the value sought, from 1.
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_micros(upper_bound(index)));
            }
        }
        Some(Histogram::MAX)
    }

    /// The values counted since `earlier`, a copy of this histogram taken
    /// before.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut diff = Histogram::default();
        for (d, (now, then)) in diff
            .counts
            .iter_mut()
            .zip(self.counts.iter().zip(earlier.counts.iter()))
        {
            *d = now.saturating_sub(*then);
        }
        diff.total = self.total.saturating_sub(earlier.total);
        diff
    }

    /// Adds the values of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
    }
}

/// The bucket of a value of `micros`.
fn bucket(micros: u64) -> usize {
    if micros < u64::from(SUB) {
        return micros as usize;
    }
    let exp = (63 - micros.leading_zeros()).min(MAX_EXP);
    if exp == MAX_EXP && micros >= 1 << (MAX_EXP + 1) {
        return BUCKETS - 1;
    }
    let sub = (micros >> (exp - SUB_BITS)) & u64::from(SUB - 1);
    ((exp - SUB_BITS + 1) * SUB) as usize + sub as usize
}

/// The largest value of bucket `index`, in microseconds.
fn upper_bound(index: usize) -> u64 {
    let index = index as u64;
    let sub = u64::from(SUB);
    if index < sub {
        return index;
    }
    let exp = index / sub - 1 + u64::from(SUB_BITS);
    let step = 1 << (exp - u64::from(SUB_BITS));
    (1 << exp) + (index % sub + 1) * step - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_bound_is_within_an_eighth() {
        let mut values: Vec<u64> = (0..5_000).collect();
        values.extend((0..=40).map(|exp| 1u64 << exp));
        values.extend((1..=40).map(|exp| (1u64 << exp) - 1));
        values.extend((4..=40).map(|exp| (1u64 << exp) + 3));
        for micros in values {
            let index = bucket(micros);
            let bound = upper_bound(index);
            assert!(
                bound >= micros,
                "{micros} in bucket {index} bounded by {bound}"
            );
            assert!(
                bound - micros <= micros / 8,
                "{micros} in bucket {index} bounded by {bound}"
            );
            if index > 0 {
                assert!(upper_bound(index - 1) < micros, "{micros}");
            }
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_known_values() {
        let mut histogram = Histogram::default();
        assert_eq!(histogram.quantile(0.5), None);
        for micros in 1..=100 {
            histogram.record(Duration::from_micros(micros), 1);
        }
        histogram.record(Duration::from_secs(1), 1);
        assert_eq!(histogram.count(), 101);
        let p50 = histogram.quantile(0.5).expect("values");
        assert!((51..=58).contains(&p50.as_micros()), "{p50:?}");
        let p99 = histogram.quantile(0.99).expect("values");
        assert!((100..=112).contains(&p99.as_micros()), "{p99:?}");
        let max = histogram.quantile(1.0).expect("values");
        assert!(max >= Duration::from_secs(1), "{max:?}");
    }

    #[test]
    fn since_keeps_only_the_later_values() {
        let mut histogram = Histogram::default();
        histogram.record(Duration::from_millis(1), 10);
        let earlier = histogram.clone();
        histogram.record(Duration::from_millis(100), 5);
        let later = histogram.since(&earlier);
        assert_eq!(later.count(), 5);
        let p50 = later.quantile(0.5).expect("values");
        assert!(p50 >= Duration::from_millis(100), "{p50:?}");
        let mut merged = earlier.clone();
        merged.merge(&later);
        assert_eq!(merged, histogram);
    }
}
