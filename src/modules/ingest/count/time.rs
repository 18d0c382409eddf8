//! Trusted sensor time (PROTOCOL.md sections 1 and 2): the instant a report is dated at, from the
//! sensor's clock when it can be believed, else from the server's receive time.
//!
//! Legacy firmware sends a local date and time without a zone, read in the hive's IANA zone;
//! v2 firmware sends seconds since the epoch (UTC). Either clock may be unknown, and either is
//! replaced by the receive time when it is further than `ingest.max_clock_skew` from it.
//!
//! Local times that a zone's daylight-saving change makes ambiguous (the repeated hour in autumn)
//! or impossible (the skipped hour in spring) have two possible readings; the one nearest to the
//! receive time wins. A report travels for seconds, not hours, so the nearest reading is the one
//! the sensor meant, and the choice does not depend on the order the reports arrive in.
//!
//! Pure functions: the receive time is passed in, no clock is read here.

use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// The sensor's clock, as its report carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorClock {
    /// Legacy firmware: local date and time without a zone; `None` when the date is impossible or
    /// all zero ("clock unknown"): the decoder builds it from the six bytes.
    Legacy(Option<NaiveDateTime>),
    /// v2 firmware: seconds since 1970-01-01 UTC, 0 meaning unknown. The report's tz offset does
    /// not change the instant (the count is in UTC): it is the sensor's display setting, stored
    /// with the report and not needed here.
    Epoch(u32),
}

/// Where a report's trusted time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The sensor's clock, `skew` (sensor minus receive time) within `ingest.max_clock_skew`.
    Sensor { skew: TimeDelta },
    /// The sensor did not know the time: the receive time is used.
    Unknown,
    /// The sensor's clock was off by `skew` (sensor minus receive time), more than
    /// `ingest.max_clock_skew`: the receive time is used and the skew is recorded on the sensor.
    Skewed { skew: TimeDelta },
}

/// A report's trusted time and how it was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trusted {
    /// The instant the report is dated at.
    pub at: DateTime<Utc>,
    /// Whether `at` is the sensor's clock or the receive time, and why.
    pub clock: Clock,
}

/// The time to date a report at: the sensor's `clock` (legacy times read in the hive's `zone`)
/// when known and within `max_skew` of `received`, else `received`.
pub fn trusted(
    clock: SensorClock,
    zone: Tz,
    received: DateTime<Utc>,
    max_skew: Duration,
) -> Trusted {
    let sensor = match clock {
        SensorClock::Legacy(local) => local.map(|local| from_local(local, zone, received)),
        SensorClock::Epoch(0) => None,
        SensorClock::Epoch(secs) => DateTime::from_timestamp(i64::from(secs), 0),
    };
    let Some(sensor) = sensor else {
        return Trusted {
            at: received,
            clock: Clock::Unknown,
        };
    };
    let skew = sensor - received;
    if skew.abs() > bound(max_skew) {
        Trusted {
            at: received,
            clock: Clock::Skewed { skew },
        }
    } else {
        Trusted {
            at: sensor,
            clock: Clock::Sensor { skew },
        }
    }
}

/// The instant a local `time` in `zone` stands for; of two readings (a daylight-saving overlap
/// or gap), the one nearest to `near`.
pub fn from_local(time: NaiveDateTime, zone: Tz, near: DateTime<Utc>) -> DateTime<Utc> {
    let (a, b) = match readings(time, zone) {
        Local::Single(at) => return at,
        Local::Repeated { first, second } => (first, second),
        Local::Skipped {
            offset_before,
            offset_after,
        } => (offset_before, offset_after),
    };
    if (a - near).abs() <= (b - near).abs() {
        a
    } else {
        b
    }
}

/// The instants a local time may stand for in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// One instant: the usual case.
    Single(DateTime<Utc>),
    /// The clock went back and showed this time twice: `first` is the earlier instant.
    Repeated {
        first: DateTime<Utc>,
        second: DateTime<Utc>,
    },
    /// The clock jumped forward over this time: read with the offset before the jump, and with
    /// the one after it.
    Skipped {
        offset_before: DateTime<Utc>,
        offset_after: DateTime<Utc>,
    },
}

/// Every instant a local `time` in `zone` may stand for.
pub fn readings(time: NaiveDateTime, zone: Tz) -> Local {
    match zone.from_local_datetime(&time) {
        LocalResult::Single(at) => Local::Single(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
            Local::Repeated {
                first: a.min(b),
                second: a.max(b),
            }
        }
        LocalResult::None => {
            // Zones change offset at most a few times a year: a day either side is on the
            // other side of the jump.
            let day = TimeDelta::days(1);
            Local::Skipped {
                offset_before: with_offset_at(time, zone, time - day),
                offset_after: with_offset_at(time, zone, time + day),
            }
        }
    }
}

/// The local `time` read with the offset `zone` has at the instant `probe` (as UTC).
fn with_offset_at(time: NaiveDateTime, zone: Tz, probe: NaiveDateTime) -> DateTime<Utc> {
    let offset = zone.offset_from_utc_datetime(&probe).fix();
    let utc = time - TimeDelta::seconds(i64::from(offset.local_minus_utc()));
    Utc.from_utc_datetime(&utc)
}

/// `max_skew` as a signed delta; a bound too large to represent is no bound.
fn bound(max_skew: Duration) -> TimeDelta {
    TimeDelta::from_std(max_skew).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use chrono_tz::{America::New_York, Europe::Berlin};

    const SKEW: Duration = Duration::from_secs(600);

    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|day| day.and_hms_opt(h, mi, s))
            .expect("a valid test date")
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.from_utc_datetime(&local(y, mo, d, h, mi, s))
    }

    #[test]
    fn legacy_time_is_read_in_the_hive_zone() {
        // The worked example's 2024-11-22 18:30:05, in Berlin (UTC+1 in November).
        let received = utc(2024, 11, 22, 17, 30, 9);
        let t = trusted(
            SensorClock::Legacy(Some(local(2024, 11, 22, 18, 30, 5))),
            Berlin,
            received,
            SKEW,
        );
        assert_eq!(t.at, utc(2024, 11, 22, 17, 30, 5));
        assert_eq!(
            t.clock,
            Clock::Sensor {
                skew: TimeDelta::seconds(-4)
            }
        );
    }

    #[test]
    fn unknown_clocks_use_the_receive_time() {
        let received = utc(2024, 11, 22, 17, 30, 9);
        for clock in [SensorClock::Legacy(None), SensorClock::Epoch(0)] {
            let t = trusted(clock, Berlin, received, SKEW);
            assert_eq!((t.at, t.clock), (received, Clock::Unknown));
        }
    }

    #[test]
    fn a_clock_beyond_the_skew_is_replaced_and_its_skew_reported() {
        let received = utc(2024, 11, 22, 17, 30, 0);
        let epoch = u32::try_from(received.timestamp() + 601).expect("fits");
        let t = trusted(SensorClock::Epoch(epoch), Berlin, received, SKEW);
        assert_eq!(t.at, received);
        assert_eq!(
            t.clock,
            Clock::Skewed {
                skew: TimeDelta::seconds(601)
            }
        );
        let at_bound = trusted(SensorClock::Epoch(epoch - 1), Berlin, received, SKEW);
        assert_eq!(at_bound.at, received + TimeDelta::seconds(600));
    }

    #[test]
    fn the_repeated_autumn_hour_takes_the_reading_nearest_to_receipt() {
        // Berlin 2024-10-27: 02:30 local happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET).
        let at = local(2024, 10, 27, 2, 30, 0);
        let first = utc(2024, 10, 27, 0, 30, 0);
        let second = utc(2024, 10, 27, 1, 30, 0);
        assert_eq!(from_local(at, Berlin, first + TimeDelta::seconds(3)), first);
        assert_eq!(
            from_local(at, Berlin, second + TimeDelta::seconds(3)),
            second
        );
    }

    #[test]
    fn the_skipped_spring_hour_takes_the_reading_nearest_to_receipt() {
        // New York 2024-03-10 skips 02:00-03:00: 02:30 read as EST is 07:30 UTC, as EDT 06:30.
        let at = local(2024, 3, 10, 2, 30, 0);
        let est = utc(2024, 3, 10, 7, 30, 0);
        let edt = utc(2024, 3, 10, 6, 30, 0);
        assert_eq!(from_local(at, New_York, est), est);
        assert_eq!(from_local(at, New_York, edt), edt);
    }
}
