//! Per-hive occupancy (PROTOCOL.md section 6): each report's net change, clamped at 0 once, the
//! drift the clamp absorbs, the daily reset and the percentage of capacity.
//!
//! The storage code reads a [`HiveState`] from the hive's row (locked in the batch transaction),
//! applies the reset that is due ([`reset_due`](super::reset::reset_due)), then each report's
//! [`Delta`] unless [`is_previous_day`](super::reset::is_previous_day) says it belongs to
//! history, and writes the state back. Pure: no I/O, no clock.
//!
//! The clamp is per report, not per event: a report with 3 entries and 5 exits at occupancy 1
//! ends at 0 with a drift of 1 (1 + 3 - 5 = -1), not at 0 with a drift of 2 (exits first).

use chrono::{DateTime, Utc};

use super::Delta;

/// What the storage code keeps per hive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HiveState {
    /// People inside now; never below 0.
    pub occupancy: u32,
    /// People the clamp at 0 absorbed since the last reset: exits the sensors saw without the
    /// entries (missed entries, or a sensor that drifts).
    pub drift: u32,
    /// The instant of the last reset; `None` for a hive never reset.
    pub last_reset: Option<DateTime<Utc>>,
}

/// A day's closing numbers, handed back by a reset for the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayClose {
    /// Occupancy just before the reset: people still counted inside.
    pub occupancy: u32,
    /// The day's drift.
    pub drift: u32,
}

impl HiveState {
    /// Adds one report's net change and clamps at 0 once; returns what the clamp absorbed
    /// (also added to `drift`).
    pub fn apply(&mut self, delta: Delta) -> u32 {
        let next = i64::from(self.occupancy) + delta.net();
        if next < 0 {
            let absorbed = u32::try_from(-next).unwrap_or(u32::MAX);
            self.occupancy = 0;
            self.drift = self.drift.saturating_add(absorbed);
            absorbed
        } else {
            self.occupancy = u32::try_from(next).unwrap_or(u32::MAX);
            0
        }
    }

    /// The daily reset at instant `at`: occupancy and drift back to 0; returns the closing day.
    pub fn reset(&mut self, at: DateTime<Utc>) -> DayClose {
        let close = DayClose {
            occupancy: self.occupancy,
            drift: self.drift,
        };
        self.occupancy = 0;
        self.drift = 0;
        self.last_reset = Some(at);
        close
    }
}

/// Occupancy as a percentage of `capacity`; `None` for a hive without a capacity (or a capacity
/// of 0, which cannot be a percentage). Above 100 when the venue is over capacity.
pub fn percent(occupancy: u32, capacity: Option<u32>) -> Option<f64> {
    match capacity {
        Some(capacity) if capacity > 0 => Some(f64::from(occupancy) / f64::from(capacity) * 100.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn delta(entries: u32, exits: u32) -> Delta {
        Delta { entries, exits }
    }

    #[test]
    fn the_net_change_is_clamped_once() {
        let mut hive = HiveState {
            occupancy: 1,
            ..HiveState::default()
        };
        assert_eq!(hive.apply(delta(3, 5)), 1);
        assert_eq!((hive.occupancy, hive.drift), (0, 1));
        assert_eq!(hive.apply(delta(4, 1)), 0);
        assert_eq!((hive.occupancy, hive.drift), (3, 1));
        assert_eq!(hive.apply(delta(0, 5)), 2);
        assert_eq!((hive.occupancy, hive.drift), (0, 3));
    }

    #[test]
    fn a_reset_closes_the_day() {
        let mut hive = HiveState {
            occupancy: 12,
            drift: 3,
            last_reset: None,
        };
        let at = DateTime::from_timestamp(1_732_244_400, 0).expect("a valid time");
        let close = hive.reset(at);
        assert_eq!(
            close,
            DayClose {
                occupancy: 12,
                drift: 3
            }
        );
        assert_eq!(
            hive,
            HiveState {
                occupancy: 0,
                drift: 0,
                last_reset: Some(at)
            }
        );
    }

    #[test]
    fn percent_needs_a_capacity() {
        assert_eq!(percent(30, Some(120)), Some(25.0));
        assert_eq!(percent(150, Some(100)), Some(150.0));
        assert_eq!(percent(30, None), None);
        assert_eq!(percent(30, Some(0)), None);
    }

    proptest! {
        #[test]
        fn occupancy_never_goes_negative(
            start in 0u32..1000,
            deltas in prop::collection::vec((0u32..6000, 0u32..6000), 0..64),
        ) {
            let mut hive = HiveState { occupancy: start, ..HiveState::default() };
            let mut unclamped = i64::from(start);
            for (entries, exits) in deltas {
                let d = delta(entries, exits);
                hive.apply(d);
                unclamped += d.net();
                // Occupancy is what came in minus what went out, plus all the clamp absorbed.
                prop_assert_eq!(i64::from(hive.occupancy), unclamped + i64::from(hive.drift));
                prop_assert!(i64::from(hive.occupancy) >= 0);
            }
        }
    }
}
