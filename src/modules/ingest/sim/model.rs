//! The simulator's expectation: what the server must make of the reports it was sent, by the
//! rules of PROTOCOL.md section 6 applied in the order each sensor sent them.
//!
//! The rules themselves are the count module's pure functions ([`apply_counter`],
//! [`apply_events`], [`HiveState::apply`], the reset functions), called on the payload values the
//! simulator encoded, not on bytes it decoded: what the decoder and the storage glue make of the
//! bytes is what the comparison with the database checks. Duplicates (an identical payload from
//! the same sensor on the same topic; status messages never are) are found on the SHA-256 of
//! the bytes sent, as the server finds them, starting from the digests the server holds.
//!
//! Across sensors the server's order is not the simulator's (connections land on different
//! workers, batches commit when they commit); the expectation is exact anyway as long as no
//! report makes a hive's count clamp at 0, which the generator sees to: every sensor's own net
//! count since the run started stays at 0 or above ([`Model::inside`], [`Model::preview`]).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use super::fleet::Claim;
use crate::modules::ingest::count::{
    apply_counter, apply_events, is_previous_day, reset_due, trusted, CounterReading, Delta,
    Direction, Event, EventOutcome, HiveState, Outcome, ResetTime, SensorClock, SensorState,
    Settings, Totals,
};
use crate::modules::ingest::decode::{self, EventType, Payload, ReportType};
use crate::modules::ingest::IngestConf;

/// A sensor as the model knows it.
#[derive(Debug, Clone)]
pub struct SensorModel {
    pub hive_id: i64,
    pub direction: Direction,
    pub settings: Settings,
    pub state: SensorState,
    /// The counter and event payloads claimed (sent, or held by the server), for duplicates:
    /// the first 8 bytes of their SHA-256 (two payloads of one sensor colliding there are
    /// one in 2^64 / n).
    seen: HashSet<(Claim, u64)>,
    /// The sensor's net count (entries minus exits) added during this run.
    inside: i64,
}

impl SensorModel {
    /// A sensor of hive `hive_id` in `state`, mounted `direction`, wrapping at `modulus`,
    /// whose payloads `claimed` (kind, SHA-256) the server holds already.
    pub fn new(
        hive_id: i64,
        direction: Direction,
        modulus: u32,
        state: SensorState,
        claimed: &[(Claim, [u8; 32])],
        conf: &IngestConf,
    ) -> SensorModel {
        SensorModel {
            hive_id,
            direction,
            settings: Settings::new(direction, Some(modulus), conf),
            state,
            seen: claimed.iter().map(|(k, d)| (*k, prefix(d))).collect(),
            inside: 0,
        }
    }
}

/// A hive as the model knows it.
#[derive(Debug, Clone)]
pub struct HiveModel {
    pub zone: Tz,
    pub reset: Option<ResetTime>,
    pub state: HiveState,
    /// Sensors of the fleet on this hive.
    pub sensors: usize,
}

/// What became of one report, as the server must see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Stored as a row; `delta` is what it added to today's count (`None`: nothing).
    Stored { delta: Option<Delta> },
    /// An identical payload was sent before: not stored, adds nothing.
    Duplicate,
}

/// Counts over the reports the model was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Rows the server must hold in sensor_report.
    pub stored: u64,
    /// Of those, status messages (the only kind a resend can store twice: see the cli help).
    pub status: u64,
    pub duplicates: u64,
    /// Counter reports older than the sensor's baseline (rule 2).
    pub late: u64,
    /// Counter reports read as a restart (rule 3).
    pub restarts: u64,
    /// Counter reports read as a wrap (rule 4).
    pub wraps: u64,
}

/// The expectation over the whole fleet.
#[derive(Debug, Clone)]
pub struct Model {
    skew: Duration,
    sensors: Vec<SensorModel>,
    hives: BTreeMap<i64, HiveModel>,
    pub tally: Tally,
}

impl Model {
    /// The model of `sensors` (by fleet index) on `hives`, starting from their state.
    pub fn new(
        sensors: Vec<SensorModel>,
        mut hives: BTreeMap<i64, HiveModel>,
        conf: &IngestConf,
    ) -> Model {
        for s in &sensors {
            if let Some(h) = hives.get_mut(&s.hive_id) {
                h.sensors += 1;
            }
        }
        Model {
            skew: Duration::from(conf.max_clock_skew),
            sensors,
            hives,
            tally: Tally::default(),
        }
    }

    /// Sensor `i`'s net count added during this run.
    pub fn inside(&self, i: usize) -> i64 {
        self.sensors[i].inside
    }

    /// Sensor `i`'s hive.
    pub fn hive_of(&self, i: usize) -> i64 {
        self.sensors[i].hive_id
    }

    /// The hives, by id.
    pub fn hives(&self) -> &BTreeMap<i64, HiveModel> {
        &self.hives
    }

    /// What `payload` would add for sensor `i` received at `at`, were it new (the duplicate
    /// check left out); the model does not change.
    pub fn preview(&self, i: usize, payload: &Payload, at: DateTime<Utc>) -> Option<Delta> {
        let s = &self.sensors[i];
        let zone = self.hives.get(&s.hive_id).map_or(Tz::UTC, |h| h.zone);
        let mut state = s.state;
        counted(&mut state, &s.settings, payload, zone, at, self.skew).0
    }

    /// Applies `payload` (sent as `raw`) from sensor `i`, received at `at`.
    pub fn apply(&mut self, i: usize, payload: &Payload, raw: &[u8], at: DateTime<Utc>) -> Fate {
        let s = &mut self.sensors[i];
        if let Some(key) = claim_key(payload, raw) {
            if !s.seen.insert(key) {
                self.tally.duplicates += 1;
                return Fate::Duplicate;
            }
        }
        self.tally.stored += 1;
        self.tally.status += u64::from(matches!(payload, Payload::Status(_)));
        let Some(hive) = self.hives.get_mut(&s.hive_id) else {
            return Fate::Stored { delta: None };
        };
        if let Some(instant) = reset_due(hive.zone, hive.reset, hive.state.last_reset, at) {
            hive.state.reset(instant);
        }
        let (delta, time, outcome) =
            counted(&mut s.state, &s.settings, payload, hive.zone, at, self.skew);
        match outcome {
            Some(Outcome::Late) => self.tally.late += 1,
            Some(Outcome::Restart) => self.tally.restarts += 1,
            Some(Outcome::Wrap) => self.tally.wraps += 1,
            _ => {}
        }
        let delta = delta.filter(|_| !is_previous_day(hive.state.last_reset, time));
        if let Some(d) = delta {
            hive.state.apply(d);
            s.inside += d.net();
        }
        Fate::Stored { delta }
    }
}

/// The duplicate key of a payload sent as `raw`; `None` for a status message (never a
/// duplicate). Kinds are kept apart as the server's claim keeps them.
fn claim_key(payload: &Payload, raw: &[u8]) -> Option<(Claim, u64)> {
    let kind = match payload {
        Payload::Legacy(_) | Payload::Counter(_) => Claim::Counter,
        Payload::Events(_) => Claim::Event,
        Payload::Status(_) | Payload::Configuration(_) => return None,
    };
    Some((kind, prefix(&Sha256::digest(raw).into())))
}

fn prefix(digest: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The counting rules for one report on a sensor's state: what it adds (`None`: nothing), the
/// time it is dated at, and how a counter report was read.
fn counted(
    state: &mut SensorState,
    settings: &Settings,
    payload: &Payload,
    zone: Tz,
    at: DateTime<Utc>,
    skew: Duration,
) -> (Option<Delta>, DateTime<Utc>, Option<Outcome>) {
    let counter = |state: &mut SensorState, clock, restart, message_counter, totals: (u16, u16)| {
        let t = trusted(clock, zone, at, skew).at;
        let reading = CounterReading {
            totals: Totals {
                total_in: u32::from(totals.0),
                total_out: u32::from(totals.1),
            },
            restart,
            message_counter,
            time: t,
        };
        let c = apply_counter(state, &reading, settings);
        let adds = matches!(c.outcome, Outcome::Restart | Outcome::Wrap | Outcome::Plain)
            && c.anomaly.is_none();
        (adds.then_some(c.delta), t, Some(c.outcome))
    };
    match payload {
        Payload::Legacy(c) => counter(
            state,
            SensorClock::Legacy(c.time),
            c.report_type == ReportType::Restart,
            None,
            (c.total_in, c.total_out),
        ),
        Payload::Counter(c) => counter(
            state,
            SensorClock::Epoch(c.timestamp),
            c.report_type == ReportType::Restart,
            Some(c.message_counter),
            (c.total_in, c.total_out),
        ),
        Payload::Events(events) => {
            let last = events.last().map_or(0, |e| e.timestamp);
            let t = trusted(SensorClock::Epoch(last), zone, at, skew).at;
            let kinds: Vec<Event> = events.iter().map(event_kind).collect();
            let c = apply_events(state, &kinds, t, settings.direction);
            (
                (c.outcome == EventOutcome::Counted).then_some(c.delta),
                t,
                None,
            )
        }
        Payload::Status(_) | Payload::Configuration(_) => (None, at, None),
    }
}

fn event_kind(e: &decode::Event) -> Event {
    match e.event_type {
        EventType::Exit => Event::Exit,
        EventType::Entry => Event::Entry,
        EventType::Status => Event::Status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::ingest::decode::{encode, CounterV2, LegacyCounter};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_732_300_000 + secs, 0).expect("a valid test time")
    }

    fn model(direction: Direction) -> Model {
        let conf = IngestConf::default();
        let sensor = SensorModel::new(7, direction, 65536, SensorState::default(), &[], &conf);
        let hive = HiveModel {
            zone: Tz::UTC,
            reset: None,
            state: HiveState::default(),
            sensors: 0,
        };
        Model::new(vec![sensor], BTreeMap::from([(7, hive)]), &conf)
    }

    fn v2(counter: u16, totals: (u16, u16), report_type: ReportType) -> Payload {
        Payload::Counter(CounterV2 {
            report_type,
            message_counter: counter,
            total_in: totals.0,
            total_out: totals.1,
            timestamp: 0,
            tz_offset_min: None,
            diff_in: 0,
            diff_out: 0,
        })
    }

    fn send(m: &mut Model, p: &Payload, secs: i64) -> Fate {
        let mut raw = Vec::new();
        encode(p, &mut raw).expect("encodable");
        m.apply(0, p, &raw, at(secs))
    }

    #[test]
    fn the_worked_example_of_protocol_section_7() {
        let mut m = model(Direction::Normal);
        let legacy = |i: u16, o: u16| {
            Payload::Legacy(LegacyCounter {
                diff_in: i,
                diff_out: o,
                total_in: i,
                total_out: o,
                time: None,
                report_type: ReportType::Threshold,
            })
        };
        let fates: Vec<Fate> = [(65500, 65400), (65530, 65420), (12, 65500), (3, 2), (3, 2)]
            .iter()
            .enumerate()
            .map(|(n, (i, o))| send(&mut m, &legacy(*i, *o), n as i64))
            .collect();
        let delta = |entries, exits| Fate::Stored {
            delta: Some(Delta { entries, exits }),
        };
        assert_eq!(
            fates,
            [
                Fate::Stored { delta: None },
                delta(30, 20),
                delta(18, 80),
                delta(3, 2),
                Fate::Duplicate
            ]
        );
        // 10 after the second, clamped to 0 by the third (10 + 18 - 80), 1 after the fourth.
        assert_eq!(m.hives()[&7].state.occupancy, 1);
        assert_eq!(m.hives()[&7].state.drift, 52);
        assert_eq!(
            m.tally,
            Tally {
                stored: 4,
                status: 0,
                duplicates: 1,
                late: 0,
                restarts: 1,
                wraps: 1
            }
        );
    }

    #[test]
    fn a_reversed_sensor_counts_its_exits_as_entries() {
        let mut m = model(Direction::Reversed);
        send(&mut m, &v2(0, (0, 0), ReportType::Restart), 0);
        send(&mut m, &v2(1, (1, 4), ReportType::Threshold), 1);
        assert_eq!(m.inside(0), 3);
        assert_eq!(m.hives()[&7].state.occupancy, 3);
        let preview = m.preview(0, &v2(2, (1, 9), ReportType::Threshold), at(2));
        assert_eq!(preview.map(Delta::net), Some(5));
        assert_eq!(m.inside(0), 3, "a preview changes nothing");
    }

    #[test]
    fn a_payload_the_server_holds_already_is_a_duplicate() {
        let p = v2(3, (1, 0), ReportType::Periodic);
        let mut raw = Vec::new();
        encode(&p, &mut raw).expect("encodable");
        let claimed = [(Claim::Counter, <[u8; 32]>::from(Sha256::digest(&raw)))];
        let conf = IngestConf::default();
        let sensor = SensorModel::new(
            7,
            Direction::Normal,
            65536,
            SensorState::default(),
            &claimed,
            &conf,
        );
        let mut m = Model::new(vec![sensor], model(Direction::Normal).hives, &conf);
        assert_eq!(m.apply(0, &p, &raw, at(0)), Fate::Duplicate);
        let events = Payload::Events(vec![decode::Event {
            event_type: EventType::Entry,
            distance_mm: 1,
            timestamp: 0,
        }]);
        raw.clear();
        encode(&events, &mut raw).expect("encodable");
        assert_ne!(
            m.apply(0, &events, &raw, at(1)),
            Fate::Duplicate,
            "kinds are apart"
        );
    }

    #[test]
    fn a_late_v2_report_adds_nothing() {
        let mut m = model(Direction::Normal);
        send(&mut m, &v2(10, (5, 0), ReportType::Periodic), 0);
        send(&mut m, &v2(12, (9, 0), ReportType::Periodic), 1);
        let late = send(&mut m, &v2(11, (7, 0), ReportType::Periodic), 2);
        assert_eq!(late, Fate::Stored { delta: None });
        assert_eq!((m.tally.late, m.inside(0)), (1, 4));
    }
}
