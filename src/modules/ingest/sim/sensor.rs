//! One simulated sensor: what it sends next, in the real formats of PROTOCOL.md (built as
//! payload values and written by the decode module's encoders).
//!
//! A sensor is drawn once from the seed and its place in the fleet ([`Profile::draw`]): its
//! firmware (legacy, padded by its modem or not; v2; events), and its clock (right, a little
//! off, an hour off so the server must ignore it, or none). Then each report is a step of
//! venue entries and exits that never takes more people out than the sensor brought in during
//! the run (the model's no-clamp condition), sent as the firmware would:
//!
//! - counters: a start-up report (restart, totals 0) or, for a sensor "already running", totals
//!   just below the modulus that wrap a few reports later; a sensor with a baseline in the
//!   database continues from it; restarts now and then (v2 counters back to 0; legacy ones
//!   flagged, or only visible as totals that fell); message counters that wrap past 65535;
//!   now and then a v2 report kept back and delivered after two newer ones (a late report);
//! - events: batches of 1 to 4 events (sometimes up to 64), heartbeats among them, now and then
//!   a batch of heartbeats only;
//! - a status message first, now and then, and in answer to a configuration.
//!
//! A reversed sensor reports the venue's entries as its exits. [`SimSensor::bad`] writes
//! payloads the server must refuse.

use chrono::{DateTime, Offset, TimeDelta, Utc};
use chrono_tz::Tz;

use super::rng::Rng;
use crate::modules::ingest::count::{Direction, Mode, Totals};
use crate::modules::ingest::decode::{
    encode, Channel, CounterV2, Event, EventType, LegacyCounter, Payload, ReportType, Status,
};

/// One status message in this many reports, on average.
const STATUS_EVERY: u32 = 40;
/// One restart in this many counter reports, on average.
const RESTART_EVERY: u32 = 150;
/// One v2 report kept back (and delivered late) in this many, on average.
const HOLD_EVERY: u32 = 60;
/// A kept-back report goes out after this many newer ones.
const HOLD_FOR: u8 = 2;
/// Bytes of a legacy report padded by its modem.
const PADDED_LEN: usize = 59;

/// Firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Legacy counter reports, 16 bytes, or 59 when `padded` by the modem.
    Legacy { padded: bool },
    /// v2 counter reports.
    V2,
    /// Event reports.
    Event,
}

impl Kind {
    /// `legacy`, `v2` or `event`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Legacy { .. } => "legacy",
            Kind::V2 => "v2",
            Kind::Event => "event",
        }
    }
}

/// A sensor's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The sensor knows the time, `offset_s` seconds off ours.
    Sensor { offset_s: i64 },
    /// The sensor does not know the time (all-zero legacy date, v2 and event timestamps 0).
    Unknown,
}

/// What a sensor is, drawn once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub kind: Kind,
    pub clock: Clock,
}

impl Profile {
    /// The profile of sensor `index` for `seed`: firmware by the `mix` weights (legacy, v2,
    /// event), unless the sensor's counting `mode` is fixed already.
    pub fn draw(seed: u64, index: u64, mix: [u32; 3], mode: Option<Mode>) -> Profile {
        let mut rng = Rng::new(seed ^ 0x5eed, index);
        let weights = match mode {
            Some(Mode::Counter) if mix[0] + mix[1] == 0 => [1, 0, 0],
            Some(Mode::Counter) => [mix[0], mix[1], 0],
            Some(Mode::Event) => [0, 0, 1],
            None => mix,
        };
        let kind = match rng.weighted(&weights) {
            0 => Kind::Legacy {
                padded: rng.one_in(4),
            },
            1 => Kind::V2,
            _ => Kind::Event,
        };
        let clock = if rng.one_in(8) {
            Clock::Unknown
        } else if rng.one_in(12) {
            // Past ingest.max_clock_skew: the server must date the reports by their arrival.
            Clock::Sensor { offset_s: 3600 }
        } else {
            Clock::Sensor {
                offset_s: i64::from(rng.between(0, 60)) - 30,
            }
        };
        Profile { kind, clock }
    }
}

/// A payload to publish: its value (for the model) and its bytes.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub payload: Payload,
    pub raw: Vec<u8>,
}

impl Outgoing {
    /// The topic kind it goes on.
    pub fn channel(&self) -> Channel {
        self.payload.channel()
    }
}

/// The baseline a sensor's database row holds: its last totals and v2 message counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Baseline {
    pub totals: Totals,
    pub message_counter: Option<u16>,
}

/// One simulated sensor.
#[derive(Debug, Clone)]
pub struct SimSensor {
    profile: Profile,
    direction: Direction,
    modulus: u32,
    wrap_window: u32,
    zone: Tz,
    rng: Rng,
    /// The totals in the sensor's own terms, below the modulus.
    totals: (u32, u32),
    counter: u16,
    started: bool,
    baseline: Option<Baseline>,
    /// A v2 report kept back, and how many newer ones went out since.
    held: Option<(Outgoing, u8)>,
    sent: u64,
    startup_time: u32,
    config_id: u32,
}

impl SimSensor {
    /// Sensor `index` of the fleet for `seed`, in a hive in `zone`, mounted `direction`, its
    /// totals wrapping at `modulus` (`wrap_window` as the server's), continuing from `baseline`.
    #[allow(
        clippy::too_many_arguments,
        reason = "a sensor's facts, each from its own place"
    )]
    pub fn new(
        profile: Profile,
        seed: u64,
        index: u64,
        direction: Direction,
        modulus: u32,
        wrap_window: u32,
        zone: Tz,
        baseline: Option<Baseline>,
    ) -> SimSensor {
        SimSensor {
            profile,
            direction,
            modulus: modulus.max(2),
            wrap_window,
            zone,
            rng: Rng::new(seed, index),
            totals: (0, 0),
            counter: 0,
            started: false,
            baseline,
            held: None,
            sent: 0,
            startup_time: 0,
            config_id: 0,
        }
    }

    /// The sensor's profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The next report at `now`, for a sensor whose net count this run is `inside`;
    /// `entries_only` makes every counted report add people and none leave.
    pub fn next(&mut self, now: DateTime<Utc>, inside: i64, entries_only: bool) -> Outgoing {
        self.sent += 1;
        if self.sent == 1 || self.rng.one_in(STATUS_EVERY) {
            return self.status(now);
        }
        match self.profile.kind {
            Kind::Event => self.events(now, inside, entries_only),
            Kind::Legacy { .. } | Kind::V2 => self.counter(now, inside, entries_only),
        }
    }

    /// The report kept back, if any: it goes out now (the run is ending).
    pub fn release(&mut self) -> Option<Outgoing> {
        self.held.take().map(|(out, _)| out)
    }

    /// A status message, as the sensor sends at start-up and after applying a configuration.
    pub fn status(&mut self, now: DateTime<Utc>) -> Outgoing {
        if self.startup_time == 0 {
            let uptime = TimeDelta::seconds(i64::from(self.rng.between(60, 86_400)));
            self.startup_time = self.epoch(now - uptime);
        }
        let firmware_version = match self.profile.kind {
            Kind::V2 => 0x0002_0100,
            Kind::Legacy { .. } | Kind::Event => 0x0001_0403,
        };
        let status = Status {
            startup_time: self.startup_time,
            battery_mv: if self.rng.one_in(3) {
                Status::MAINS_POWERED
            } else {
                u16::try_from(self.rng.between(3300, 4200)).expect("below 65536")
            },
            sensor_state: Status::STATE_OK,
            discarded_events: u16::try_from(self.rng.between(0, 3)).expect("small"),
            gprs_signal: u16::try_from(self.rng.between(5, 31)).expect("small"),
            firmware_version,
            configuration_id: self.config_id,
        };
        self.encoded(Payload::Status(status))
    }

    /// The server sent configuration `id`: the sensor applies it (its next status says so).
    pub fn configured(&mut self, id: u32) {
        self.config_id = id;
    }

    /// A payload the server must refuse as malformed, and its topic kind.
    pub fn bad(&mut self) -> (Channel, Vec<u8>) {
        let which = self.rng.between(0, 5);
        let rng = &mut self.rng;
        let mut junk = |n: usize| -> Vec<u8> { (0..n).map(|_| rng.next_u64() as u8).collect() };
        match which {
            0 => (Channel::Counter, junk(17)),
            1 => {
                // A legacy report whose marker is not 0xFF.
                let mut b = junk(16);
                b[15] = 0x00;
                (Channel::Counter, b)
            }
            // An event of type 7, which no firmware sends.
            2 => (Channel::Event, vec![7, 0x03, 0xe8, 0, 0x67, 0x40, 0, 0]),
            3 => (Channel::Event, junk(12)),
            4 => (Channel::Status, junk(19)),
            _ => (Channel::Event, Vec::new()),
        }
    }

    fn counter(&mut self, now: DateTime<Utc>, inside: i64, entries_only: bool) -> Outgoing {
        if !self.started {
            return self.start(now);
        }
        if let Some(out) = self.due_held() {
            return out;
        }
        let (entries, exits) = step(&mut self.rng, inside, entries_only);
        if self.held.is_none() && self.rng.one_in(RESTART_EVERY) {
            return self.restart(now, entries, exits);
        }
        let (sin, sout) = self.sensor_terms(entries, exits);
        self.totals = (
            (self.totals.0 + sin) % self.modulus,
            (self.totals.1 + sout) % self.modulus,
        );
        self.counter = self.counter.wrapping_add(1);
        let kind = if self.rng.one_in(4) {
            ReportType::Periodic
        } else {
            ReportType::Threshold
        };
        let out = self.counter_report(now, kind, (sin, sout));
        if self.profile.kind == Kind::V2
            && exits == 0
            && self.held.is_none()
            && self.rng.one_in(HOLD_EVERY)
        {
            // Kept back: the next report carries its people, and it arrives late, adding none.
            self.held = Some((out, 0));
            return self.counter(now, inside + i64::from(entries), entries_only);
        }
        if let Some((_, newer)) = &mut self.held {
            *newer += 1;
        }
        out
    }

    /// The first counter report: continuing the database's baseline, or the sensor's start-up
    /// (totals 0), or the report of a sensor that was counting before (totals near the modulus).
    fn start(&mut self, now: DateTime<Utc>) -> Outgoing {
        self.started = true;
        let m = self.modulus;
        if let Some(b) = self.baseline {
            // One more entry than the baseline, so this payload is not the baseline's again.
            let (sin, sout) = self.sensor_terms(1, 0);
            self.totals = (
                (b.totals.total_in + sin) % m,
                (b.totals.total_out + sout) % m,
            );
            self.counter = b.message_counter.map_or(0, |c| c.wrapping_add(1));
            return self.counter_report(now, ReportType::Periodic, (sin, sout));
        }
        if self.rng.one_in(3) {
            // Up to 40 below the modulus, which the database row may set as low as 2.
            let total_in = m - self.rng.between(1, 40.min(m - 1));
            let total_out = total_in.saturating_sub(self.rng.between(0, 30));
            self.totals = (total_in, total_out);
            self.counter = if self.rng.one_in(3) {
                u16::MAX - u16::try_from(self.rng.between(0, 3)).expect("small")
            } else {
                u16::try_from(self.rng.between(0, 1000)).expect("small")
            };
            return self.counter_report(now, ReportType::Periodic, (0, 0));
        }
        self.totals = (0, 0);
        self.counter = 0;
        self.counter_report(now, ReportType::Restart, (0, 0))
    }

    /// A restart: the totals start again from what was counted since. A legacy sensor may not
    /// flag it, when a total falls in a way that is no wrap.
    fn restart(&mut self, now: DateTime<Utc>, entries: u32, exits: u32) -> Outgoing {
        let (sin, sout) = self.sensor_terms(entries, exits);
        let falls = |previous: u32| {
            previous >= 5 && previous < self.modulus.saturating_sub(self.wrap_window)
        };
        let unflagged = matches!(self.profile.kind, Kind::Legacy { .. })
            && (falls(self.totals.0) || falls(self.totals.1))
            && self.rng.one_in(2);
        self.totals = (sin % self.modulus, sout % self.modulus);
        self.counter = 0;
        self.startup_time = self.epoch(now);
        let kind = if unflagged {
            ReportType::Periodic
        } else {
            ReportType::Restart
        };
        self.counter_report(now, kind, (sin, sout))
    }

    /// The kept-back report, once enough newer ones went out.
    fn due_held(&mut self) -> Option<Outgoing> {
        match &self.held {
            Some((_, newer)) if *newer >= HOLD_FOR => self.release(),
            _ => None,
        }
    }

    fn counter_report(
        &mut self,
        now: DateTime<Utc>,
        kind: ReportType,
        step: (u32, u32),
    ) -> Outgoing {
        let total = |t: u32| u16::try_from(t).expect("totals stay below a u16 modulus");
        let (total_in, total_out) = (total(self.totals.0), total(self.totals.1));
        let payload = if let Kind::Legacy { .. } = self.profile.kind {
            // Legacy firmware's diffs are broken: they equal the totals.
            Payload::Legacy(LegacyCounter {
                diff_in: total_in,
                diff_out: total_out,
                total_in,
                total_out,
                time: self.local_time(now),
                report_type: kind,
            })
        } else {
            Payload::Counter(CounterV2 {
                report_type: kind,
                message_counter: self.counter,
                total_in,
                total_out,
                timestamp: self.epoch(now),
                tz_offset_min: self.tz_offset(now),
                diff_in: total(step.0),
                diff_out: total(step.1),
            })
        };
        self.encoded(payload)
    }

    fn events(&mut self, now: DateTime<Utc>, inside: i64, entries_only: bool) -> Outgoing {
        self.started = true;
        let n = if self.rng.one_in(40) {
            self.rng.between(10, 64)
        } else {
            self.rng.between(1, 4)
        };
        let heartbeats = !entries_only && self.rng.one_in(30);
        let mut inside = inside;
        let last = self.epoch(now);
        let events = (0..n)
            .map(|k| {
                let venue = if heartbeats {
                    EventType::Status
                } else {
                    match self.rng.between(0, 9) {
                        0 if !entries_only => EventType::Status,
                        6..=9 if !entries_only && inside > 0 => EventType::Exit,
                        _ => EventType::Entry,
                    }
                };
                inside += i64::from(venue.delta());
                let event_type = match (venue, self.direction) {
                    (EventType::Entry, Direction::Reversed) => EventType::Exit,
                    (EventType::Exit, Direction::Reversed) => EventType::Entry,
                    (t, _) => t,
                };
                Event {
                    event_type,
                    distance_mm: u16::try_from(self.rng.between(300, 2500)).expect("small"),
                    // In time order, the last at `now`; unknown stays 0.
                    timestamp: if last == 0 { 0 } else { last - (n - 1 - k) },
                }
            })
            .collect();
        self.encoded(Payload::Events(events))
    }

    /// The venue's (entries, exits) in the sensor's terms.
    fn sensor_terms(&self, entries: u32, exits: u32) -> (u32, u32) {
        match self.direction {
            Direction::Normal => (entries, exits),
            Direction::Reversed => (exits, entries),
        }
    }

    fn encoded(&self, payload: Payload) -> Outgoing {
        let mut raw = Vec::with_capacity(PADDED_LEN);
        encode(&payload, &mut raw).expect("the simulator writes only payloads with a wire form");
        if self.profile.kind == (Kind::Legacy { padded: true })
            && payload.channel() == Channel::Counter
        {
            raw.resize(PADDED_LEN, 0);
        }
        Outgoing { payload, raw }
    }

    fn clock(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.profile.clock {
            Clock::Sensor { offset_s } => Some(now + TimeDelta::seconds(offset_s)),
            Clock::Unknown => None,
        }
    }

    /// The legacy firmware's local date and time, in the hive's zone.
    fn local_time(&self, now: DateTime<Utc>) -> Option<chrono::NaiveDateTime> {
        self.clock(now)
            .map(|t| t.with_timezone(&self.zone).naive_local())
    }

    /// Seconds since the epoch by the sensor's clock; 0 when it has none.
    fn epoch(&self, now: DateTime<Utc>) -> u32 {
        self.clock(now)
            .and_then(|t| u32::try_from(t.timestamp()).ok())
            .unwrap_or(0)
    }

    fn tz_offset(&self, now: DateTime<Utc>) -> Option<i16> {
        self.clock(now).and_then(|t| {
            let secs = t.with_timezone(&self.zone).offset().fix().local_minus_utc();
            i16::try_from(secs / 60).ok()
        })
    }
}

/// One report's venue step: up to 3 entries, and up to 3 exits but never more than the sensor
/// brought in (`inside` plus this step's entries); `entries_only`: 1 to 3 entries, no exit.
fn step(rng: &mut Rng, inside: i64, entries_only: bool) -> (u32, u32) {
    if entries_only {
        return (rng.between(1, 3), 0);
    }
    let entries = rng.between(0, 3);
    let room = u32::try_from((inside + i64::from(entries)).clamp(0, 3)).expect("0..=3");
    (entries, rng.between(0, room))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::ingest::decode::decode_payload;

    fn sensor(kind: Kind, clock: Clock, direction: Direction) -> SimSensor {
        let profile = Profile { kind, clock };
        SimSensor::new(profile, 42, 3, direction, 65536, 4096, Tz::UTC, None)
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_732_300_000, 0).expect("a valid test time")
    }

    #[test]
    fn every_report_decodes_as_what_was_meant() {
        for kind in [
            Kind::Legacy { padded: true },
            Kind::Legacy { padded: false },
            Kind::V2,
            Kind::Event,
        ] {
            for clock in [Clock::Unknown, Clock::Sensor { offset_s: 5 }] {
                let mut s = sensor(kind, clock, Direction::Reversed);
                for i in 0..500 {
                    let out = s.next(now() + TimeDelta::seconds(i), 2, false);
                    let decoded = decode_payload(out.channel(), &out.raw);
                    assert_eq!(decoded.as_ref(), Ok(&out.payload), "{kind:?} {clock:?}");
                }
            }
        }
        let legacy = sensor(
            Kind::Legacy { padded: true },
            Clock::Unknown,
            Direction::Normal,
        );
        let mut s = legacy.clone();
        s.next(now(), 0, false);
        assert_eq!(s.next(now(), 0, false).raw.len(), PADDED_LEN);
    }

    #[test]
    fn bad_payloads_are_malformed() {
        let mut s = sensor(Kind::V2, Clock::Unknown, Direction::Normal);
        for _ in 0..200 {
            let (channel, raw) = s.bad();
            assert!(
                decode_payload(channel, &raw).is_err(),
                "{channel:?} {raw:02x?}"
            );
        }
    }

    #[test]
    fn steps_never_take_out_more_than_came_in() {
        let mut rng = Rng::new(9, 9);
        let mut inside = 0i64;
        for _ in 0..10_000 {
            let (e, x) = step(&mut rng, inside, false);
            inside += i64::from(e) - i64::from(x);
            assert!(inside >= 0);
        }
        assert!((0..100).all(|_| matches!(step(&mut rng, 0, true), (1..=3, 0))));
    }

    #[test]
    fn a_reversed_event_sensor_reports_entries_as_exits() {
        let mut s = sensor(Kind::Event, Clock::Unknown, Direction::Reversed);
        s.next(now(), 0, true);
        let Payload::Events(events) = s.next(now(), 0, true).payload else {
            panic!("an event report");
        };
        assert!(events.iter().all(|e| e.event_type == EventType::Exit));
    }

    #[test]
    fn a_sensor_with_a_baseline_continues_from_it() {
        let baseline = Baseline {
            totals: Totals {
                total_in: 100,
                total_out: 40,
            },
            message_counter: Some(65535),
        };
        let profile = Profile {
            kind: Kind::V2,
            clock: Clock::Unknown,
        };
        let mut s = SimSensor::new(
            profile,
            1,
            1,
            Direction::Normal,
            65536,
            4096,
            Tz::UTC,
            Some(baseline),
        );
        s.next(now(), 0, false);
        let Payload::Counter(c) = s.next(now(), 0, false).payload else {
            panic!("a v2 report");
        };
        assert_eq!((c.total_in, c.total_out, c.message_counter), (101, 40, 0));
    }

    #[test]
    fn a_sensor_already_running_with_a_small_modulus_starts_below_it() {
        for modulus in [2, 3, 40] {
            for index in 0..30 {
                let profile = Profile {
                    kind: Kind::V2,
                    clock: Clock::Unknown,
                };
                let mut s = SimSensor::new(
                    profile,
                    1,
                    index,
                    Direction::Normal,
                    modulus,
                    1,
                    Tz::UTC,
                    None,
                );
                let mut counters = 0;
                for _ in 0..20 {
                    if let Payload::Counter(c) = s.next(now(), 0, false).payload {
                        counters += 1;
                        let totals = (u32::from(c.total_in), u32::from(c.total_out));
                        assert!(
                            totals.0 < modulus && totals.1 < modulus,
                            "{totals:?} modulus {modulus}"
                        );
                    }
                }
                assert!(counters > 0, "counter reports among the first 20");
            }
        }
    }

    #[test]
    fn profiles_follow_the_mix_and_the_mode() {
        for i in 0..50 {
            let p = Profile::draw(1, i, [0, 1, 0], None);
            assert_eq!(p.kind, Kind::V2);
            let p = Profile::draw(1, i, [0, 1, 0], Some(Mode::Event));
            assert_eq!(p.kind, Kind::Event);
            let p = Profile::draw(1, i, [0, 0, 1], Some(Mode::Counter));
            assert!(matches!(p.kind, Kind::Legacy { .. }));
        }
    }
}
