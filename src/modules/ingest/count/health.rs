//! Offline sensors and degraded hives (PROTOCOL.md section 6): a sensor silent for twice its
//! reporting interval is offline, and a hive with an offline sensor is `degraded` (its number is
//! probably low).
//!
//! Called by whoever publishes a hive's state (API, cache, live) with the sensors' `last_seen`
//! (any valid message, duplicates included) and their acknowledged reporting interval. Pure: `now`
//! is passed in.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// The reporting interval of a sensor never configured (factory configuration).
pub const FACTORY_REPORTING_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// Whether a sensor last seen at `last_seen` (`None`: never) and reporting every
/// `reporting_interval` (`None`: the factory's) has been silent for twice that at `now`.
pub fn is_offline(
    last_seen: Option<DateTime<Utc>>,
    reporting_interval: Option<Duration>,
    now: DateTime<Utc>,
) -> bool {
    let Some(last_seen) = last_seen else {
        return true;
    };
    let interval = reporting_interval.unwrap_or(FACTORY_REPORTING_INTERVAL);
    let allowed = TimeDelta::from_std(interval.saturating_mul(2)).unwrap_or(TimeDelta::MAX);
    now - last_seen >= allowed
}

/// Whether a hive whose sensors' offline flags are `offline` is degraded: any one is offline.
pub fn is_degraded(offline: impl IntoIterator<Item = bool>) -> bool {
    offline.into_iter().any(|off| off)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_732_300_000 + secs, 0).expect("a valid test time")
    }

    #[test]
    fn a_sensor_silent_for_twice_its_interval_is_offline() {
        let seen = Some(at(0));
        assert!(!is_offline(seen, None, at(30 * 60 - 1)));
        assert!(is_offline(seen, None, at(30 * 60)));
        let five_min = Some(Duration::from_secs(300));
        assert!(!is_offline(seen, five_min, at(599)));
        assert!(is_offline(seen, five_min, at(600)));
        assert!(is_offline(None, None, at(0)));
    }

    #[test]
    fn one_offline_sensor_degrades_its_hive() {
        assert!(!is_degraded([false, false]));
        assert!(is_degraded([false, true]));
        assert!(!is_degraded([]));
    }
}
