//! The counting rules (PROTOCOL.md section 6): from sensor reports to live hive occupancy, as
//! pure functions over plain state structs.
//!
//! The storage code owns the state: it locks the sensor's and the hive's rows in the batch
//! transaction, reads them into [`SensorState`] and [`HiveState`], calls these functions in
//! receive order, and writes the structs back. Nothing here does I/O or reads a clock: every
//! instant is passed in, so the same reports always give the same counts, on any worker or node.
//!
//! A report's way through, for the storage code:
//! 1. [`time::trusted`]: the instant the report is dated at (sensor clock or receive time).
//! 2. [`reset::reset_due`] with the batch's time: a reset that is due is applied first
//!    ([`HiveState::reset`]), so a report after the reset instant never lands on the old day.
//! 3. [`sensor::apply_counter`] or [`event::apply_events`]: the [`Delta`] the report adds.
//! 4. [`reset::is_previous_day`]: a report dated before the hive's last reset goes to history
//!    (the sensor's baseline moved all the same, so the next report does not count it again);
//!    otherwise [`HiveState::apply`] adds the delta, clamping at 0 once.
//!
//! [`health`] tells which sensors are offline and so which hives are degraded.
//!
//! Files: `time.rs` trusted time, `sensor.rs` counter rules, `event.rs` event reports and the
//! counting mode, `hive.rs` occupancy, clamp, drift and percent, `reset.rs` the daily reset,
//! `health.rs` offline sensors and degraded hives.

pub mod event;
pub mod health;
pub mod hive;
pub mod reset;
pub mod sensor;
pub mod time;

pub use event::{apply_events, Event, EventOutcome, EventsCounted};
pub use hive::{percent, DayClose, HiveState};
pub use reset::{is_previous_day, next_reset, reset_due, ResetTime};
pub use sensor::{apply_counter, Counted, CounterReading, Outcome, SensorState, Settings, Totals};
pub use time::{trusted, Clock, SensorClock, Trusted};

/// How a sensor is mounted (rule 7): reversed counts its entries as exits and the other way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// The sensor's "in" is the venue's entry.
    #[default]
    Normal,
    /// The sensor is mounted the other way round: its "in" is the venue's exit.
    Reversed,
}

/// What a sensor counts in, fixed by its first counting report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Counter reports: totals since start-up.
    Counter,
    /// Event reports: one message per entry or exit.
    Event,
}

/// Entries and exits one report adds to its hive, in the venue's terms (after rule 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delta {
    /// People who came in.
    pub entries: u32,
    /// People who went out.
    pub exits: u32,
}

impl Delta {
    /// Nothing added.
    pub const ZERO: Delta = Delta {
        entries: 0,
        exits: 0,
    };

    /// Entries minus exits: the report's change to occupancy.
    pub fn net(self) -> i64 {
        i64::from(self.entries) - i64::from(self.exits)
    }

    /// The delta of a sensor mounted `direction`, in the venue's terms.
    pub fn oriented(self, direction: Direction) -> Delta {
        match direction {
            Direction::Normal => self,
            Direction::Reversed => Delta {
                entries: self.exits,
                exits: self.entries,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{DateTime, NaiveDate, TimeZone, Utc};
    use chrono_tz::Europe::Berlin;

    use super::*;
    use crate::modules::ingest::IngestConf;

    fn utc(h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 11, 22, h, mi, s)
            .single()
            .expect("a valid test time")
    }

    /// One legacy report through the steps of the module header; true when it went to history.
    fn ingest(
        sensor: &mut SensorState,
        hive: &mut HiveState,
        totals: (u32, u32),
        local: (u32, u32, u32),
        received: DateTime<Utc>,
    ) -> bool {
        let conf = IngestConf::default();
        let time = NaiveDate::from_ymd_opt(2024, 11, 22)
            .and_then(|d| d.and_hms_opt(local.0, local.1, local.2))
            .expect("a valid local time");
        let skew = Duration::from(conf.max_clock_skew);
        let at = trusted(SensorClock::Legacy(Some(time)), Berlin, received, skew).at;
        let reset = Some(ResetTime::default());
        if let Some(instant) = reset_due(Berlin, reset, hive.last_reset, received) {
            hive.reset(instant);
        }
        let reading = CounterReading {
            totals: Totals {
                total_in: totals.0,
                total_out: totals.1,
            },
            restart: false,
            message_counter: None,
            time: at,
        };
        let settings = Settings::new(Direction::Normal, None, &conf);
        let counted = apply_counter(sensor, &reading, &settings);
        if is_previous_day(hive.last_reset, at) {
            return true;
        }
        hive.apply(counted.delta);
        false
    }

    #[test]
    fn a_report_dated_before_the_reset_but_received_after_it_goes_to_history() {
        let (mut sensor, mut hive) = (SensorState::default(), HiveState::default());
        // 04:00 in Berlin in November is 03:00 UTC.
        assert!(!ingest(
            &mut sensor,
            &mut hive,
            (10, 0),
            (3, 50, 0),
            utc(2, 50, 2)
        ));
        assert!(!ingest(
            &mut sensor,
            &mut hive,
            (15, 1),
            (3, 55, 0),
            utc(2, 55, 2)
        ));
        assert_eq!(hive.occupancy, 4);
        assert!(ingest(
            &mut sensor,
            &mut hive,
            (18, 1),
            (3, 59, 50),
            utc(3, 0, 20)
        ));
        assert_eq!(hive.last_reset, Some(utc(3, 0, 0)));
        assert_eq!(hive.occupancy, 0);
        // The baseline moved all the same: the next report adds only what came after.
        assert!(!ingest(
            &mut sensor,
            &mut hive,
            (20, 1),
            (4, 5, 0),
            utc(3, 5, 2)
        ));
        assert_eq!(hive.occupancy, 2);
    }
}
