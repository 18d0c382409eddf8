//! The time-weighted side of hive_hourly: occupancy integrated over the seconds the server
//! observed the hive (person-seconds), split at the hive's local hour starts. Occupancy is a
//! step function that changes only when a batch commits (or the daily reset runs), so the
//! integral is taken at each change, over the time since the last one, with the occupancy that
//! held during it: by the batch writer for the hives it changes, by the periodic work for the
//! others. `hive_status.integrated_at` is how far a hive is integrated.
//!
//! Seconds while the hive is degraded (a sensor offline: the number is probably low) are not
//! observed, and neither is a gap longer than [`MAX_GAP`] (the server was down: nobody saw).
//! Pure: the callers read and write the rows.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::apply::{hour_start, Hours};
use super::load::HiveRow;

/// The longest stretch integrated at once; beyond it the time was not observed.
pub const MAX_GAP: TimeDelta = TimeDelta::minutes(5);

/// What a hive held since it was last integrated.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    pub hive_id: i64,
    pub zone: Tz,
    pub occupancy: u32,
    pub degraded: bool,
    /// Integrated up to here; `None`: never (a new hive starts now).
    pub since: Option<DateTime<Utc>>,
}

impl Held {
    /// What the locked hive held before the batch changed it.
    pub(super) fn before(h: &HiveRow) -> Held {
        Held {
            hive_id: h.id,
            zone: h.zone,
            occupancy: h.read.occupancy,
            degraded: h.degraded,
            since: h.integrated_at,
        }
    }
}

/// Adds what `held` contributed up to `now` to the hours it spans.
pub(super) fn integrate(held: &Held, now: DateTime<Utc>, hours: &mut Hours) {
    let Some(since) = held.since else {
        return;
    };
    if held.degraded {
        return;
    }
    let mut from = since.max(now - MAX_GAP);
    while from < now {
        let hour = hour_start(held.zone, from);
        let to = now.min(hour + TimeDelta::hours(1));
        let ms = (to - from).num_milliseconds();
        let sums = hours.entry((held.hive_id, hour)).or_default();
        sums.observed_ms += ms;
        sums.occupancy_ms += ms * i64::from(held.occupancy);
        sums.peak = sums
            .peak
            .max(i32::try_from(held.occupancy).unwrap_or(i32::MAX));
        from = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn held(occupancy: u32, since: &str) -> Held {
        Held {
            hive_id: 1,
            zone: chrono_tz::Europe::Berlin,
            occupancy,
            degraded: false,
            since: Some(at(since)),
        }
    }

    #[test]
    fn a_stretch_within_one_hour() {
        let mut hours = Hours::new();
        integrate(
            &held(10, "2025-01-15T10:00:00Z"),
            at("2025-01-15T10:01:30Z"),
            &mut hours,
        );
        let s = hours[&(1, at("2025-01-15T10:00:00Z"))];
        assert_eq!(
            (s.observed_ms, s.occupancy_ms, s.peak),
            (90_000, 900_000, 10)
        );
    }

    #[test]
    fn a_stretch_across_an_hour_start_is_split() {
        let mut hours = Hours::new();
        integrate(
            &held(4, "2025-01-15T10:59:00Z"),
            at("2025-01-15T11:02:00Z"),
            &mut hours,
        );
        assert_eq!(hours[&(1, at("2025-01-15T10:00:00Z"))].observed_ms, 60_000);
        assert_eq!(hours[&(1, at("2025-01-15T11:00:00Z"))].observed_ms, 120_000);
        assert_eq!(
            hours[&(1, at("2025-01-15T11:00:00Z"))].occupancy_ms,
            480_000
        );
    }

    #[test]
    fn half_hour_zones_split_at_their_own_hours() {
        let mut hours = Hours::new();
        let h = Held {
            zone: chrono_tz::Asia::Kolkata,
            ..held(1, "2025-01-15T10:29:00Z")
        };
        integrate(&h, at("2025-01-15T10:31:00Z"), &mut hours);
        assert!(hours.contains_key(&(1, at("2025-01-15T09:30:00Z"))));
        assert!(hours.contains_key(&(1, at("2025-01-15T10:30:00Z"))));
    }

    #[test]
    fn a_long_gap_was_not_observed() {
        let mut hours = Hours::new();
        integrate(
            &held(2, "2025-01-15T08:00:00Z"),
            at("2025-01-15T10:10:00Z"),
            &mut hours,
        );
        let total: i64 = hours.values().map(|s| s.observed_ms).sum();
        assert_eq!(total, MAX_GAP.num_milliseconds());
    }

    #[test]
    fn degraded_never_integrated_or_nothing_elapsed_adds_nothing() {
        let mut hours = Hours::new();
        let d = Held {
            degraded: true,
            ..held(5, "2025-01-15T10:00:00Z")
        };
        integrate(&d, at("2025-01-15T10:01:00Z"), &mut hours);
        let new = Held {
            since: None,
            ..held(5, "2025-01-15T10:00:00Z")
        };
        integrate(&new, at("2025-01-15T10:01:00Z"), &mut hours);
        integrate(
            &held(5, "2025-01-15T10:01:00Z"),
            at("2025-01-15T10:00:00Z"),
            &mut hours,
        );
        assert!(hours.is_empty(), "{hours:?}");
    }
}
