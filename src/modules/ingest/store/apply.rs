//! One report's way through the counting rules (count/mod.rs, "A report's way through"), on the
//! locked rows' state: trusted time, the daily reset if due, the counter or event rules, then
//! today's count or the previous day's history. Pure: it fills the report's row and the hourly
//! sums, and the statements of `save.rs` write them.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;

use super::super::batch::Report;
use super::super::count::{
    apply_counter, apply_events, is_previous_day, reset_due, trusted, Clock, CounterReading, Delta,
    Event, EventOutcome, Outcome, SensorClock, Settings, Totals, Trusted,
};
use super::super::decode::{
    self, known_time, CounterV2, EventType, LegacyCounter, Payload, ReportType, Status,
};
use super::load::{Health, HiveRow, SensorRow};
use crate::modules::ingest::IngestConf;

/// One sensor_report row, as the batch insert takes it.
#[derive(Debug, Clone, Default)]
pub(super) struct ReportRow {
    pub sensor_id: i64,
    pub kind: &'static str,
    pub sensor_time: Option<DateTime<Utc>>,
    /// The time the counting used (the receive time when the sensor's is unknown or skewed).
    pub trusted_time: DateTime<Utc>,
    pub version: Option<i16>,
    pub report_type: Option<i16>,
    pub message_counter: Option<i32>,
    pub total_in: Option<i32>,
    pub total_out: Option<i32>,
    pub diff_in: Option<i32>,
    pub diff_out: Option<i32>,
    pub tz_offset_min: Option<i16>,
    pub entries: Option<i16>,
    pub exits: Option<i16>,
    /// What the report added to today's count; `None`: not applied (`reason` says why).
    pub delta: Option<Delta>,
    pub reason: Option<&'static str>,
}

/// Entries, exits, the peak occupancy and the time-weighted sums ([`super::weigh`]) a batch
/// adds to one hive's local clock hour.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct HourSums {
    pub entries: i32,
    pub exits: i32,
    pub peak: i32,
    /// Milliseconds observed, and occupancy integrated over them (person-milliseconds).
    pub observed_ms: i64,
    pub occupancy_ms: i64,
}

/// The hourly sums of a batch, by (hive id, instant the local hour starts).
pub(super) type Hours = HashMap<(i64, DateTime<Utc>), HourSums>;

/// A counter report of either firmware, as this file needs it.
struct CounterFields {
    clock: SensorClock,
    version: i16,
    report_type: ReportType,
    message_counter: Option<u16>,
    totals: (u16, u16),
    diffs: (u16, u16),
    tz_offset_min: Option<i16>,
}

impl CounterFields {
    fn legacy(c: &LegacyCounter) -> CounterFields {
        CounterFields {
            clock: SensorClock::Legacy(c.time),
            version: 1,
            report_type: c.report_type,
            message_counter: None,
            totals: (c.total_in, c.total_out),
            diffs: (c.diff_in, c.diff_out),
            tz_offset_min: None,
        }
    }

    fn v2(c: &CounterV2) -> CounterFields {
        CounterFields {
            clock: SensorClock::Epoch(c.timestamp),
            version: 2,
            report_type: c.report_type,
            message_counter: Some(c.message_counter),
            totals: (c.total_in, c.total_out),
            diffs: (c.diff_in, c.diff_out),
            tz_offset_min: c.tz_offset_min,
        }
    }
}

/// Runs `report` through the rules on `sensor` and `hive`; its row, or `None` for a payload
/// that is no sensor report (a configuration: the server's own, never stored as a report).
pub(super) fn apply(
    report: &Report,
    sensor: &mut SensorRow,
    hive: &mut HiveRow,
    conf: &IngestConf,
    hours: &mut Hours,
) -> Option<ReportRow> {
    // Checked first so that it touches nothing, not even last_seen.
    if matches!(report.payload, Payload::Configuration(_)) {
        return None;
    }
    let received = report.received_at;
    sensor.health.last_seen = sensor.health.last_seen.max(Some(received));
    if let Some(at) = reset_due(hive.zone, hive.reset, hive.state.last_reset, received) {
        hive.state.reset(at);
    }
    let skew = Duration::from(conf.max_clock_skew);
    let (mut row, proposed) = match &report.payload {
        Payload::Legacy(c) => counter(CounterFields::legacy(c), report, sensor, hive, conf),
        Payload::Counter(c) => counter(CounterFields::v2(c), report, sensor, hive, conf),
        Payload::Events(events) => events_report(events, report, sensor, hive.zone, skew),
        Payload::Status(s) => (status(s, &mut sensor.health, received), None),
        Payload::Configuration(_) => return None,
    };
    row.sensor_id = sensor.id;
    if let Some(delta) = proposed {
        count(&mut row, delta, hive, hours);
    }
    Some(row)
}

/// Adds an applicable delta to today's count, or to the previous day's history when the report
/// is dated before the hive's last reset; either way to its hour.
fn count(row: &mut ReportRow, delta: Delta, hive: &mut HiveRow, hours: &mut Hours) {
    let at = row.trusted_time;
    let sums = hours
        .entry((hive.id, hour_start(hive.zone, at)))
        .or_default();
    sums.entries = sums.entries.saturating_add(as_i32(delta.entries));
    sums.exits = sums.exits.saturating_add(as_i32(delta.exits));
    if is_previous_day(hive.state.last_reset, at) {
        row.reason = Some("previous_day");
        return;
    }
    hive.state.apply(delta);
    sums.peak = sums.peak.max(as_i32(hive.state.occupancy));
    row.delta = Some(delta);
}

fn counter(
    c: CounterFields,
    report: &Report,
    sensor: &mut SensorRow,
    hive: &HiveRow,
    conf: &IngestConf,
) -> (ReportRow, Option<Delta>) {
    let skew = Duration::from(conf.max_clock_skew);
    let t = trusted(c.clock, hive.zone, report.received_at, skew);
    let reading = CounterReading {
        totals: Totals {
            total_in: u32::from(c.totals.0),
            total_out: u32::from(c.totals.1),
        },
        restart: c.report_type == ReportType::Restart,
        message_counter: c.message_counter,
        time: t.at,
    };
    let settings = Settings::new(sensor.direction, Some(sensor.modulus), conf);
    let counted = apply_counter(&mut sensor.state, &reading, &settings);
    let (proposed, reason) = match (counted.outcome, counted.anomaly) {
        (Outcome::ModeMismatch, _) => (None, Some("mode_mismatch")),
        (Outcome::Baseline, _) => (None, Some("baseline")),
        (Outcome::Late, _) => (None, Some("late")),
        (_, Some(_)) => (None, Some("anomaly")),
        (Outcome::Restart, None) => (Some(counted.delta), Some("restart")),
        (Outcome::Wrap, None) => (Some(counted.delta), Some("wrap")),
        (Outcome::Plain, None) => (Some(counted.delta), None),
    };
    let row = ReportRow {
        kind: "counter",
        sensor_time: sensor_time(&t, report.received_at, &mut sensor.health),
        trusted_time: t.at,
        version: Some(c.version),
        report_type: Some(i16::from(c.report_type.to_byte())),
        message_counter: c.message_counter.map(i32::from),
        total_in: Some(i32::from(c.totals.0)),
        total_out: Some(i32::from(c.totals.1)),
        diff_in: Some(i32::from(c.diffs.0)),
        diff_out: Some(i32::from(c.diffs.1)),
        tz_offset_min: c.tz_offset_min,
        reason,
        ..ReportRow::default()
    };
    (row, proposed)
}

/// An event report, dated at its last event.
fn events_report(
    events: &[decode::Event],
    report: &Report,
    sensor: &mut SensorRow,
    zone: Tz,
    skew: Duration,
) -> (ReportRow, Option<Delta>) {
    let last = events.last().map_or(0, |e| e.timestamp);
    let t = trusted(SensorClock::Epoch(last), zone, report.received_at, skew);
    let kinds: Vec<Event> = events
        .iter()
        .map(|e| match e.event_type {
            EventType::Exit => Event::Exit,
            EventType::Entry => Event::Entry,
            EventType::Status => Event::Status,
        })
        .collect();
    let counted = apply_events(&mut sensor.state, &kinds, t.at, sensor.direction);
    let (proposed, reason) = match counted.outcome {
        EventOutcome::Counted => (Some(counted.delta), None),
        EventOutcome::Heartbeat => (None, Some("status")),
        EventOutcome::ModeMismatch => (None, Some("mode_mismatch")),
    };
    let number = |kind: Event| {
        let n = kinds.iter().filter(|&&k| k == kind).count();
        Some(i16::try_from(n).unwrap_or(i16::MAX))
    };
    let row = ReportRow {
        kind: "event",
        sensor_time: sensor_time(&t, report.received_at, &mut sensor.health),
        trusted_time: t.at,
        entries: number(Event::Entry),
        exits: number(Event::Exit),
        reason,
        ..ReportRow::default()
    };
    (row, proposed)
}

/// A status message: the sensor's health as it reports it; counts nothing.
fn status(s: &Status, health: &mut Health, received: DateTime<Utc>) -> ReportRow {
    if let Some(secs) = known_time(s.startup_time) {
        health.startup_time = DateTime::from_timestamp(i64::from(secs), 0);
    }
    health.battery_mv = Some(i32::from(s.battery_mv));
    // CSQ is 0..=31 or 99 (unknown); anything else the column refuses is read as unknown.
    health.gprs_signal = i16::try_from(s.gprs_signal).ok().filter(|q| *q <= 99);
    health.sensor_state = Some(i32::from(s.sensor_state));
    health.discarded_events = Some(i32::from(s.discarded_events));
    health.firmware_version = Some(i64::from(s.firmware_version));
    health.config_acknowledged_id = i64::from(s.configuration_id);
    ReportRow {
        kind: "status",
        trusted_time: received,
        reason: Some("status"),
        ..ReportRow::default()
    }
}

/// The time the report claims (`None`: unknown); records the clock's skew on the sensor.
fn sensor_time(t: &Trusted, received: DateTime<Utc>, health: &mut Health) -> Option<DateTime<Utc>> {
    let skew = match t.clock {
        Clock::Unknown => return None,
        Clock::Sensor { skew } | Clock::Skewed { skew } => skew,
    };
    let secs = skew
        .num_seconds()
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX));
    health.clock_skew_s = Some(i32::try_from(secs).expect("clamped to i32"));
    Some(received + skew)
}

/// The instant the local clock hour holding `at` starts in `zone` (each copy of an hour a DST
/// change repeats is an hour of its own, as hive_hourly keeps them).
pub(super) fn hour_start(zone: Tz, at: DateTime<Utc>) -> DateTime<Utc> {
    let local = at.with_timezone(&zone);
    let into_hour = TimeDelta::seconds(i64::from(local.minute() * 60 + local.second()))
        + TimeDelta::nanoseconds(i64::from(local.nanosecond()));
    at - into_hour
}

fn as_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use chrono_tz::Asia::Kolkata;
    use chrono_tz::Europe::Berlin;

    use super::*;

    fn utc(h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 10, 27, h, mi, s)
            .single()
            .expect("a valid test time")
    }

    #[test]
    fn hours_start_on_the_local_clock() {
        // Kolkata is UTC+05:30: its hours start at half past, in UTC.
        assert_eq!(hour_start(Kolkata, utc(10, 45, 7)), utc(10, 30, 0));
        assert_eq!(hour_start(Kolkata, utc(10, 15, 0)), utc(9, 30, 0));
        // Berlin 2024-10-27 shows 02:xx twice: 00:xx UTC and 01:xx UTC are two hours.
        assert_eq!(hour_start(Berlin, utc(0, 40, 0)), utc(0, 0, 0));
        assert_eq!(hour_start(Berlin, utc(1, 40, 0)), utc(1, 0, 0));
    }
}
