//! The daily reset (PROTOCOL.md section 6): at the hive's local `reset_time` (default 04:00,
//! none for venues open around the clock) occupancy goes back to 0, once per day.
//!
//! The instants come from here; the timer and the storage code act on them. [`next_reset`] arms
//! the timer; [`reset_due`] names the instant of the reset that is due, for a conditional
//! `UPDATE ... WHERE last_reset IS NULL OR last_reset < $instant`, so only one of several workers
//! or nodes resets the hive, and a hive missed for days is reset once, at the latest instant.
//! [`is_previous_day`] sends a report dated before the last reset to history.
//!
//! Daylight saving, decided here: a reset_time the clock shows twice (autumn) resets at its first
//! showing; a reset_time the clock skips (spring) resets as if the clock had not jumped yet, that
//! is the jump's length later by the new local time (02:30 becomes 03:30 in Berlin). Each local
//! day has exactly one reset instant either way. Pure functions: `now` is passed in.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;

use super::time::{readings, Local};

/// A hive's local reset time, "HH:MM".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResetTime(NaiveTime);

impl ResetTime {
    /// `hour`:`minute`, if both are in range.
    pub fn new(hour: u32, minute: u32) -> Option<ResetTime> {
        NaiveTime::from_hms_opt(hour, minute, 0).map(ResetTime)
    }

    /// The local time of day.
    pub fn time(self) -> NaiveTime {
        self.0
    }
}

impl Default for ResetTime {
    /// 04:00, when bars are closed and bakeries not yet open.
    fn default() -> ResetTime {
        ResetTime(NaiveTime::MIN + chrono::TimeDelta::hours(4))
    }
}

impl fmt::Display for ResetTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%H:%M"))
    }
}

/// A reset time that is not "HH:MM" (00:00 to 23:59).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadResetTime(pub String);

impl fmt::Display for BadResetTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a reset time (\"HH:MM\", 00:00 to 23:59)",
            self.0
        )
    }
}

impl std::error::Error for BadResetTime {}

impl FromStr for ResetTime {
    type Err = BadResetTime;

    fn from_str(text: &str) -> Result<ResetTime, BadResetTime> {
        let bad = || BadResetTime(text.to_owned());
        let (hour, minute) = text.split_once(':').ok_or_else(bad)?;
        let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(hour) || !two_digits(minute) {
            return Err(bad());
        }
        let number = |s: &str| s.parse::<u32>().map_err(|_| bad());
        ResetTime::new(number(hour)?, number(minute)?).ok_or_else(bad)
    }
}

/// The instant of the reset on local `day` in `zone` (see the module header for DST).
pub fn reset_instant(zone: Tz, day: NaiveDate, reset: ResetTime) -> DateTime<Utc> {
    match readings(day.and_time(reset.0), zone) {
        Local::Single(at) | Local::Repeated { first: at, .. } => at,
        Local::Skipped { offset_before, .. } => offset_before,
    }
}

/// The reset that is due at `now`, if any: the latest reset instant at or before `now`, when the
/// hive was not reset since (`last_reset` before it, or never). `None` also when the hive has no
/// reset time.
pub fn reset_due(
    zone: Tz,
    reset: Option<ResetTime>,
    last_reset: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let reset = reset?;
    let today = now.with_timezone(&zone).date_naive();
    let mut at = reset_instant(zone, today, reset);
    if at > now {
        at = reset_instant(zone, today.pred_opt()?, reset);
    }
    match last_reset {
        Some(last) if last >= at => None,
        _ => Some(at),
    }
}

/// The first reset instant after `now`, for the timer; `None` when the hive has no reset time.
pub fn next_reset(zone: Tz, reset: Option<ResetTime>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let reset = reset?;
    let today = now.with_timezone(&zone).date_naive();
    let at = reset_instant(zone, today, reset);
    if at > now {
        return Some(at);
    }
    Some(reset_instant(zone, today.succ_opt()?, reset))
}

/// Whether a report dated `time` belongs to the day before the hive's last reset: it goes to
/// history, not to today's count. Never, for a hive that was never reset.
pub fn is_previous_day(last_reset: Option<DateTime<Utc>>, time: DateTime<Utc>) -> bool {
    last_reset.is_some_and(|last| time < last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};
    use chrono_tz::{America::New_York, Europe::Berlin};

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("a valid test time")
    }

    fn hm(text: &str) -> Option<ResetTime> {
        Some(text.parse().expect("a valid reset time"))
    }

    #[test]
    fn reset_times_parse_as_hh_mm() {
        assert_eq!(hm("04:00"), Some(ResetTime::default()));
        assert_eq!(ResetTime::default().to_string(), "04:00");
        for bad in [
            "4:00", "24:00", "12:60", "12-00", "12:00:00", "", "ab:cd", "+1:00",
        ] {
            assert!(bad.parse::<ResetTime>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_reset_is_due_once_per_day() {
        // Berlin in winter is UTC+1: 04:00 local is 03:00 UTC.
        let at = utc(2024, 11, 22, 3, 0);
        let before = utc(2024, 11, 22, 2, 59);
        let reset = hm("04:00");
        assert_eq!(reset_due(Berlin, reset, None, at), Some(at));
        let yesterday = at - TimeDelta::days(1);
        assert_eq!(reset_due(Berlin, reset, Some(yesterday), before), None);
        assert_eq!(reset_due(Berlin, reset, Some(yesterday), at), Some(at));
        let later = utc(2024, 11, 22, 15, 0);
        assert_eq!(reset_due(Berlin, reset, Some(at), later), None);
        assert_eq!(next_reset(Berlin, reset, before), Some(at));
        assert_eq!(next_reset(Berlin, reset, at), Some(at + TimeDelta::days(1)));
    }

    #[test]
    fn a_hive_missed_for_days_is_reset_once_at_the_latest_instant() {
        let last = utc(2024, 11, 18, 3, 0);
        let now = utc(2024, 11, 22, 10, 0);
        let due = utc(2024, 11, 22, 3, 0);
        assert_eq!(reset_due(Berlin, hm("04:00"), Some(last), now), Some(due));
    }

    #[test]
    fn no_reset_time_means_no_reset() {
        let now = utc(2024, 11, 22, 10, 0);
        assert_eq!(reset_due(Berlin, None, None, now), None);
        assert_eq!(next_reset(Berlin, None, now), None);
        assert!(!is_previous_day(None, now - TimeDelta::days(30)));
    }

    #[test]
    fn resets_follow_berlin_summer_time() {
        // Spring forward 2024-03-31 (02:00 -> 03:00): 04:00 is CEST, 02:00 UTC.
        let reset = hm("04:00");
        let saturday = utc(2024, 3, 30, 3, 0);
        let sunday = utc(2024, 3, 31, 2, 0);
        assert_eq!(next_reset(Berlin, reset, saturday), Some(sunday));
        assert_eq!(sunday - saturday, TimeDelta::hours(23));
        assert_eq!(
            reset_due(Berlin, reset, Some(saturday), sunday),
            Some(sunday)
        );
        let just_before = sunday - TimeDelta::minutes(1);
        assert_eq!(reset_due(Berlin, reset, Some(saturday), just_before), None);
        // Fall back 2024-10-27 (03:00 -> 02:00): 04:00 is CET again, 03:00 UTC, 25 h later.
        let saturday = utc(2024, 10, 26, 2, 0);
        let sunday = utc(2024, 10, 27, 3, 0);
        assert_eq!(next_reset(Berlin, reset, saturday), Some(sunday));
        assert_eq!(
            reset_due(Berlin, reset, Some(saturday), sunday),
            Some(sunday)
        );
    }

    #[test]
    fn a_reset_time_in_the_changed_hour_happens_once() {
        // Berlin 02:30: skipped on 2024-03-31 (read with CET: 01:30 UTC, 03:30 CEST),
        // shown twice on 2024-10-27 (the first showing: 00:30 UTC).
        let reset = hm("02:30");
        let spring = NaiveDate::from_ymd_opt(2024, 3, 31).expect("a date");
        assert_eq!(
            reset_instant(Berlin, spring, reset.expect("set")),
            utc(2024, 3, 31, 1, 30)
        );
        let autumn = NaiveDate::from_ymd_opt(2024, 10, 27).expect("a date");
        let first = utc(2024, 10, 27, 0, 30);
        assert_eq!(reset_instant(Berlin, autumn, reset.expect("set")), first);
        let second = utc(2024, 10, 27, 1, 30);
        assert_eq!(reset_due(Berlin, reset, Some(first), second), None);
    }

    #[test]
    fn resets_follow_new_york_daylight_time() {
        // Spring forward 2024-03-10 at 02:00 local: 04:00 EDT is 08:00 UTC (EST: 09:00 UTC).
        let reset = hm("04:00");
        let saturday = utc(2024, 3, 9, 9, 0);
        let sunday = utc(2024, 3, 10, 8, 0);
        assert_eq!(next_reset(New_York, reset, saturday), Some(sunday));
        assert_eq!(
            reset_due(New_York, reset, Some(saturday), sunday),
            Some(sunday)
        );
        // Fall back 2024-11-03: 01:30 local happens twice; the reset is at the first.
        let reset = hm("01:30");
        let first = utc(2024, 11, 3, 5, 30);
        let second = utc(2024, 11, 3, 6, 30);
        let day_before = utc(2024, 11, 2, 5, 30);
        assert_eq!(next_reset(New_York, reset, day_before), Some(first));
        assert_eq!(reset_due(New_York, reset, Some(first), second), None);
    }

    #[test]
    fn a_late_report_before_the_reset_goes_to_history() {
        let reset = utc(2024, 11, 22, 3, 0);
        let late = reset - TimeDelta::seconds(20);
        assert!(is_previous_day(Some(reset), late));
        assert!(!is_previous_day(Some(reset), reset));
        assert!(!is_previous_day(Some(reset), reset + TimeDelta::seconds(1)));
    }
}
