//! Event reports (PROTOCOL.md sections 3 and 6): +1 per entry, -1 per exit, nothing for a
//! heartbeat, for sensors whose counting mode is `event`.
//!
//! Called by the storage code with the sensor's [`SensorState`], as
//! [`apply_counter`](super::sensor::apply_counter) is for counter reports; pure, no clock read.
//! A report made only of heartbeats counts nothing, so it neither fixes the counting mode nor is a
//! mode mismatch on a counter sensor: it is a sign of life, which the storage code records.
//! Event reports carry no totals and no message counter: there is no baseline, late or restart
//! rule for them, and a duplicate must be stopped by the storage code before it gets here.

use chrono::{DateTime, Utc};

use super::sensor::SensorState;
use super::{Delta, Direction, Mode};

/// One event of an event report, by its event_type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// event_type 0: someone went out.
    Exit,
    /// event_type 1: someone came in.
    Entry,
    /// event_type 2: a heartbeat, no count.
    Status,
}

/// How an event report was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Its entries and exits are added.
    Counted,
    /// Only heartbeats: nothing to add, the counting mode is untouched.
    Heartbeat,
    /// The sensor counts with counter reports: stored, not applied, state unchanged.
    ModeMismatch,
}

/// What one event report adds, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsCounted {
    /// Entries and exits to add to the hive, in the venue's terms.
    pub delta: Delta,
    /// How the report was read.
    pub outcome: EventOutcome,
}

/// Applies one event report dated `time` to `state`, for a sensor mounted `direction`.
pub fn apply_events(
    state: &mut SensorState,
    events: &[Event],
    time: DateTime<Utc>,
    direction: Direction,
) -> EventsCounted {
    let count = |kind| {
        let n = events.iter().filter(|&&e| e == kind).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    };
    let raw = Delta {
        entries: count(Event::Entry),
        exits: count(Event::Exit),
    };
    let outcome = if raw == Delta::ZERO {
        EventOutcome::Heartbeat
    } else if state.mode == Some(Mode::Counter) {
        EventOutcome::ModeMismatch
    } else {
        state.mode = Some(Mode::Event);
        state.time = Some(state.time.map_or(time, |last| last.max(time)));
        EventOutcome::Counted
    };
    let delta = match outcome {
        EventOutcome::Counted => raw.oriented(direction),
        EventOutcome::Heartbeat | EventOutcome::ModeMismatch => Delta::ZERO,
    };
    EventsCounted { delta, outcome }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::ingest::count::sensor::{
        apply_counter, CounterReading, Outcome, Settings, Totals,
    };
    use crate::modules::ingest::IngestConf;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_732_300_000 + secs, 0).expect("a valid test time")
    }

    #[test]
    fn entries_add_and_exits_subtract() {
        let mut state = SensorState::default();
        let events = [Event::Entry, Event::Entry, Event::Status, Event::Exit];
        let got = apply_events(&mut state, &events, at(0), Direction::Normal);
        assert_eq!(got.outcome, EventOutcome::Counted);
        assert_eq!(got.delta.net(), 1);
        assert_eq!(state.mode, Some(Mode::Event));
        assert_eq!(state.time, Some(at(0)));
    }

    #[test]
    fn a_reversed_sensor_swaps_entries_and_exits() {
        let mut state = SensorState::default();
        let events = [Event::Entry, Event::Entry, Event::Exit];
        let got = apply_events(&mut state, &events, at(0), Direction::Reversed);
        assert_eq!(
            got.delta,
            Delta {
                entries: 1,
                exits: 2
            }
        );
    }

    #[test]
    fn heartbeats_neither_count_nor_fix_the_mode() {
        let mut state = SensorState::default();
        let got = apply_events(&mut state, &[Event::Status], at(0), Direction::Normal);
        assert_eq!(got.outcome, EventOutcome::Heartbeat);
        assert_eq!(state, SensorState::default());
    }

    #[test]
    fn the_first_counting_report_fixes_the_mode_and_the_other_kind_mismatches() {
        let settings = Settings::new(Direction::Normal, None, &IngestConf::default());
        let reading = CounterReading {
            totals: Totals {
                total_in: 10,
                total_out: 4,
            },
            restart: false,
            message_counter: None,
            time: at(60),
        };

        let mut events_first = SensorState::default();
        apply_events(&mut events_first, &[Event::Exit], at(0), Direction::Normal);
        let before = events_first;
        let got = apply_counter(&mut events_first, &reading, &settings);
        assert_eq!(got.outcome, Outcome::ModeMismatch);
        assert_eq!(got.delta, Delta::ZERO);
        assert_eq!(events_first, before);

        let mut counter_first = SensorState::default();
        apply_counter(&mut counter_first, &reading, &settings);
        let before = counter_first;
        let got = apply_events(
            &mut counter_first,
            &[Event::Entry],
            at(90),
            Direction::Normal,
        );
        assert_eq!(got.outcome, EventOutcome::ModeMismatch);
        assert_eq!(got.delta, Delta::ZERO);
        assert_eq!(counter_first, before);
    }
}
