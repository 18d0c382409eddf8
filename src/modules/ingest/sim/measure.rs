//! What `bizzy sim --measure` measures: latency histograms (publish to PUBACK, publish to the
//! occupancy a subscriber of `hives/+/occupancy` sees), kept in log-linear buckets so that a
//! long run costs a few kilobytes and a percentile is off by under 1%.
//!
//! Visible latency needs to know which report an occupancy message shows. It is measured on
//! hives that have exactly one sensor of the fleet, while every report only adds people
//! (`--measure` makes the traffic entries-only): the hive's count then rises with each counted
//! report, in the order its one sensor sent them, and a message showing occupancy `n` makes
//! visible every report the simulator expected to bring the hive to `n` or below.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Sub-buckets per power of two: values are kept to within 1/64.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets for values up to 2^63 microseconds.
const BUCKETS: usize = (SUB as usize) * (64 - SUB_BITS as usize + 1);

/// A histogram of durations, in microseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    n: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            n: 0,
            max: 0,
        }
    }
}

/// The bucket of `v`: exact below 2 * SUB, then SUB buckets per power of two.
fn bucket(v: u64) -> usize {
    if v < 2 * SUB {
        return usize::try_from(v).expect("below 128");
    }
    let shift = 63 - v.leading_zeros() - SUB_BITS;
    let sub = v >> shift;
    usize::try_from(u64::from(shift) * SUB + sub).expect("fewer than BUCKETS")
}

/// The middle of bucket `i`'s values.
fn value(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * SUB {
        return i;
    }
    let shift = i / SUB - 1;
    let sub = i % SUB + SUB;
    (sub << shift) + (1 << shift) / 2
}

impl Histogram {
    /// Counts one duration.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX >> 1);
        self.counts[bucket(us)] += 1;
        self.n += 1;
        self.max = self.max.max(us);
    }

    /// How many durations were counted.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// The duration at quantile `q` (0..=1); `None` when nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.n == 0 {
            return None;
        }
        // The rank of the quantile, 1-based: q = 0.5 of 10 values is the 5th.
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_micros(value(i).min(self.max)));
            }
        }
        Some(Duration::from_micros(self.max))
    }

    /// The longest duration counted.
    pub fn max(&self) -> Option<Duration> {
        (self.n > 0).then(|| Duration::from_micros(self.max))
    }
}

/// Publish-to-visible latency: the reports not yet seen, per measured hive.
#[derive(Debug, Default)]
pub struct Visible {
    /// Per hive, in send order: the occupancy a report brings the hive to, and when it left.
    pending: HashMap<i64, VecDeque<(u32, Instant)>>,
    pub latency: Histogram,
}

impl Visible {
    /// A report that brings `hive` to `occupancy` was published at `sent`.
    pub fn expect(&mut self, hive: i64, occupancy: u32, sent: Instant) {
        self.pending
            .entry(hive)
            .or_default()
            .push_back((occupancy, sent));
    }

    /// A subscriber saw `hive` at `occupancy` at `now`.
    pub fn seen(&mut self, hive: i64, occupancy: u32, now: Instant) {
        let Some(queue) = self.pending.get_mut(&hive) else {
            return;
        };
        while let Some(&(expected, sent)) = queue.front() {
            if expected > occupancy {
                break;
            }
            self.latency.record(now.saturating_duration_since(sent));
            queue.pop_front();
        }
    }

    /// Reports whose occupancy no message has shown yet.
    pub fn unseen(&self) -> usize {
        self.pending.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_close() {
        let mut last = 0;
        for v in [0u64, 1, 127, 128, 129, 255, 256, 1000, 65_535, 1 << 40] {
            let b = bucket(v);
            assert!(b >= last, "{v}");
            last = b;
            let back = value(b);
            assert!(back.abs_diff(v) * 64 <= v.max(64), "{v} -> {back}");
        }
        assert_eq!(bucket(128), 128);
        assert_eq!(bucket(256), 192);
        assert!(bucket(u64::MAX >> 1) < BUCKETS);
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let near = |q: f64, ms: u64| {
            let got = h.quantile(q).expect("counted").as_micros() as u64;
            assert!(got.abs_diff(ms * 1000) <= ms * 1000 / 50, "q{q}: {got} us");
        };
        near(0.5, 50);
        near(0.99, 99);
        near(1.0, 100);
        assert_eq!(h.max(), Some(Duration::from_millis(100)));
        assert_eq!(h.count(), 100);
    }

    #[test]
    fn a_message_makes_every_report_up_to_its_count_visible() {
        let t0 = Instant::now();
        let mut v = Visible::default();
        v.expect(1, 3, t0);
        v.expect(1, 5, t0);
        v.expect(1, 6, t0);
        v.seen(1, 5, t0 + Duration::from_millis(4));
        assert_eq!((v.latency.count(), v.unseen()), (2, 1));
        v.seen(2, 9, t0);
        v.seen(1, 4, t0);
        assert_eq!(v.unseen(), 1, "an older count shows nothing new");
    }
}
