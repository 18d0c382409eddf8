//! The simulator's loop: one thread, one mio poll over every sensor's connection (and the
//! occupancy watcher's), in four phases.
//!
//! 1. Connect: every sensor connects (at most 256 at a time) and logs in; the watcher, with
//!    `--measure`, subscribes to `hives/+/occupancy`.
//! 2. Publish, for `--duration` or until SIGINT/SIGTERM: paced (`--rate`, round robin over the
//!    sensors that have room) or flat out (each sensor keeps `--inflight` QoS 1 messages in
//!    flight, topped up at each PUBACK); `--bad` malformed payloads spread over the phase. Each
//!    report goes through the model as it leaves. A sensor whose connection breaks connects
//!    again and sends its unacknowledged messages again.
//! 3. Drain: the reports kept back go out, then the loop waits for every PUBACK (QoS 1) or for
//!    every byte to be written (QoS 0), at most `--drain`.
//! 4. Close: DISCONNECT on every connection (with `--measure`, after the watcher saw the last
//!    counts, or 2 s).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mio::{Events, Poll, Token};

use super::link::{Broken, Incoming, Link, State, What};
use super::measure::{Histogram, Visible};
use super::model::{Fate, Model};
use super::sensor::{Outgoing, SimSensor};
use super::{Options, SimError};
use crate::modules::ingest::decode::{decode_payload, Channel, Payload};
use crate::mqtt::codec::{ConnackCode, QoS};

/// Connections in their TCP or MQTT handshake at once.
const MAX_CONNECTING: usize = 256;
/// How long the connect phase may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);
/// How long the watcher may lag behind the last PUBACK before the run ends anyway.
const SETTLE_WITHIN: Duration = Duration::from_secs(2);
/// Progress on standard error every so often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The watcher's token; sensors use their index.
const WATCHER: Token = Token(usize::MAX - 1);

/// One simulated sensor with its connection.
pub struct Sensor {
    pub sim: SimSensor,
    link: Link,
    /// sensors/{id}/counter, event, status and commands/sensor/{id}.
    topics: [String; 4],
    /// Whether a connection of this sensor was ever open (its next one is a reconnection).
    was_open: bool,
}

impl Sensor {
    /// Sensor `device_id`, logging in with `password`.
    pub fn new(device_id: &str, password: &str, sim: SimSensor) -> Sensor {
        Sensor {
            sim,
            link: Link::new(device_id, Some(device_id), Some(password.as_bytes())),
            topics: [
                format!("sensors/{device_id}/counter"),
                format!("sensors/{device_id}/event"),
                format!("sensors/{device_id}/status"),
                format!("commands/sensor/{device_id}"),
            ],
            was_open: false,
        }
    }

    fn topic(&self, channel: Channel) -> &str {
        match channel {
            Channel::Counter => &self.topics[0],
            Channel::Event => &self.topics[1],
            Channel::Status => &self.topics[2],
            Channel::Configuration => &self.topics[3],
        }
    }
}

/// Counts of what went over MQTT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages published (reports and malformed payloads), not counting resends.
    pub sent: u64,
    /// PUBACKs received for them.
    pub acked: u64,
    /// Malformed payloads among `sent`.
    pub bad: u64,
    /// Messages sent again on a new connection.
    pub resent: u64,
    /// Status messages among `resent`: the server may store such a one twice (see `cli.rs`).
    pub status_resent: u64,
    /// Connections made again after one broke.
    pub reconnects: u64,
    /// Configurations the server pushed (each answered with a status message).
    pub configurations: u64,
    /// QoS 1 messages never acknowledged when the run ended.
    pub unacked: u64,
}

/// What a run did.
pub struct Outcome {
    pub counts: Counts,
    pub model: Model,
    pub puback: Histogram,
    /// With `--measure`: publish-to-visible latency; `None` without, or when the watcher was
    /// refused.
    pub visible: Option<Visible>,
    /// How long the connect phase took.
    pub connected_in: Duration,
    /// How long the publish phase lasted.
    pub published_for: Duration,
    /// From the first publish to the last PUBACK (or to the end of the drain, at QoS 0).
    pub active: Duration,
}

/// The occupancy watcher of `--measure`.
struct Watcher {
    link: Link,
    subscribed: bool,
    visible: Visible,
}

/// The loop's state.
pub struct Sim<'a> {
    opts: &'a Options,
    /// The brokers (at least one): sensor `i` connects to `addrs[i % len]`, the watcher to
    /// the first.
    addrs: Vec<SocketAddr>,
    poll: Poll,
    sensors: Vec<Sensor>,
    watcher: Option<Watcher>,
    model: Model,
    counts: Counts,
    puback: Histogram,
    /// Links waiting for their turn to connect.
    to_open: VecDeque<usize>,
    /// Links that are down, by when they may connect again.
    retries: BinaryHeap<Reverse<(Instant, usize)>>,
    connecting: usize,
    /// Sensors to top up (flat out), each at most once in the queue.
    hungry: VecDeque<usize>,
    queued: Vec<bool>,
    publishing: bool,
    cursor: usize,
    first_publish: Option<Instant>,
    last_ack: Option<Instant>,
    next_keep_alive: Instant,
    got: Vec<Incoming>,
}

impl<'a> Sim<'a> {
    /// The loop over `sensors`, publishing to `addrs` (at least one), expecting by `model`.
    pub fn new(
        opts: &'a Options,
        addrs: Vec<SocketAddr>,
        sensors: Vec<Sensor>,
        model: Model,
    ) -> Result<Sim<'a>, SimError> {
        let n = sensors.len();
        let watcher = opts.measure.then(|| Watcher {
            link: Link::new(&format!("sim-watch-{}", std::process::id()), None, None),
            subscribed: false,
            visible: Visible::default(),
        });
        Ok(Sim {
            opts,
            addrs,
            poll: Poll::new().map_err(SimError::Io)?,
            sensors,
            watcher,
            model,
            counts: Counts::default(),
            puback: Histogram::default(),
            to_open: (0..n).collect(),
            retries: BinaryHeap::new(),
            connecting: 0,
            hungry: VecDeque::new(),
            queued: vec![false; n],
            publishing: false,
            cursor: 0,
            first_publish: None,
            last_ack: None,
            next_keep_alive: Instant::now(),
            got: Vec::new(),
        })
    }

    /// Runs the four phases; `stop` (set by SIGINT or SIGTERM) ends the publish phase early.
    pub fn run(mut self, stop: &AtomicBool) -> Result<Outcome, SimError> {
        let mut events = Events::with_capacity(1024);
        let started = Instant::now();
        self.connect_all(&mut events)?;
        let connected_in = started.elapsed();
        eprintln!(
            "bizzy sim: {} sensors connected in {:.2}s; publishing {}",
            self.sensors.len(),
            connected_in.as_secs_f64(),
            self.opts.describe()
        );
        let publish_start = Instant::now();
        self.publish(&mut events, stop)?;
        let published_for = publish_start.elapsed();
        self.drain(&mut events)?;
        self.settle(&mut events)?;
        self.close();
        let active = match (self.first_publish, self.last_ack) {
            (Some(first), Some(last)) if self.opts.qos == QoS::AtLeastOnce => last - first,
            (Some(first), _) => first.elapsed(),
            _ => Duration::ZERO,
        };
        self.counts.unacked = self.sensors.iter().map(|s| s.link.in_flight() as u64).sum();
        Ok(Outcome {
            counts: self.counts,
            model: self.model,
            puback: self.puback,
            visible: self.watcher.map(|w| w.visible),
            connected_in,
            published_for,
            active,
        })
    }

    fn connect_all(&mut self, events: &mut Events) -> Result<(), SimError> {
        let deadline = Instant::now() + CONNECT_WITHIN;
        if let Some(w) = &mut self.watcher {
            w.link
                .open(self.addrs[0], self.poll.registry(), WATCHER)
                .map_err(|e| SimError::Connect(self.addrs[0], e))?;
            self.connecting += 1;
        }
        loop {
            let open = self
                .sensors
                .iter()
                .filter(|s| s.link.state == State::Open)
                .count();
            let watching = self.watcher.as_ref().is_none_or(|w| w.subscribed);
            if open == self.sensors.len() && watching {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SimError::NotConnected {
                    open,
                    sensors: self.sensors.len(),
                    within: CONNECT_WITHIN,
                });
            }
            self.turn(events, Duration::from_millis(20))?;
        }
    }

    fn publish(&mut self, events: &mut Events, stop: &AtomicBool) -> Result<(), SimError> {
        let start = Instant::now();
        let end = self.opts.duration.map(|d| start + d);
        let mut bad: VecDeque<Instant> = (0..self.opts.bad)
            .map(|k| {
                let span = self.opts.duration.unwrap_or(Duration::from_secs(60));
                start + span.mul_f64((k as f64 + 0.5) / self.opts.bad as f64)
            })
            .collect();
        self.publishing = true;
        if self.opts.rate.is_none() {
            for i in 0..self.sensors.len() {
                self.wants_more(i);
            }
        }
        let mut progress = start + PROGRESS_EVERY;
        let mut issued: u64 = 0;
        loop {
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) || end.is_some_and(|e| now >= e) {
                break;
            }
            while bad.front().is_some_and(|t| *t <= now) && self.send_bad() {
                bad.pop_front();
            }
            if let Some(rate) = self.opts.rate {
                let target = (now - start).as_secs_f64() * rate;
                // An unreachable pace leaves at most a second of debt, not a burst.
                issued = issued.max((target - rate).max(0.0) as u64);
                while (issued as f64) < target && self.send_paced() {
                    issued += 1;
                }
            }
            self.feed_hungry();
            if now >= progress {
                progress += PROGRESS_EVERY;
                self.progress(start);
            }
            let wait = match (&self.opts.rate, self.hungry.is_empty()) {
                (_, false) => Duration::ZERO,
                (Some(_), true) => Duration::from_millis(1),
                (None, true) => Duration::from_millis(50),
            };
            let wait = end.map_or(wait, |e| wait.min(e.saturating_duration_since(now)));
            self.turn(events, wait)?;
        }
        self.publishing = false;
        // Reports kept back to arrive late go now, and with them whatever bad payloads remain.
        for i in 0..self.sensors.len() {
            if let Some(out) = self.sensors[i].sim.release() {
                self.emit(i, out);
            }
        }
        while !bad.is_empty() && self.send_bad() {
            bad.pop_front();
        }
        self.flush_all();
        Ok(())
    }

    fn drain(&mut self, events: &mut Events) -> Result<(), SimError> {
        let deadline = Instant::now() + self.opts.drain;
        let waiting = self
            .sensors
            .iter()
            .map(|s| s.link.in_flight())
            .sum::<usize>();
        if waiting > 0 {
            eprintln!("bizzy sim: publishing ended; waiting for {waiting} acknowledgements");
        }
        loop {
            let done = self
                .sensors
                .iter()
                .all(|s| s.link.in_flight() == 0 && s.link.unsent() == 0);
            if done || Instant::now() >= deadline {
                return Ok(());
            }
            self.turn(events, Duration::from_millis(20))?;
        }
    }

    /// With `--measure`: lets the watcher see the last counts.
    fn settle(&mut self, events: &mut Events) -> Result<(), SimError> {
        let deadline = Instant::now() + SETTLE_WITHIN;
        while self
            .watcher
            .as_ref()
            .is_some_and(|w| w.visible.unseen() > 0)
            && Instant::now() < deadline
        {
            self.turn(events, Duration::from_millis(20))?;
        }
        Ok(())
    }

    fn close(&mut self) {
        let registry = self.poll.registry();
        for link in links(&mut self.sensors, &mut self.watcher) {
            link.disconnect();
            let _ = link.flush();
            link.close(registry);
        }
    }

    /// One poll and what it brought: socket events, due reconnections, keep-alives.
    fn turn(&mut self, events: &mut Events, wait: Duration) -> Result<(), SimError> {
        match self.poll.poll(events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(SimError::Io(e)),
        }
        for event in events.iter() {
            let token = event.token();
            let mut got = std::mem::take(&mut self.got);
            let result = link_of(&mut self.sensors, &mut self.watcher, token)
                .map_or(Ok(()), |link| link.ready(event, &mut got));
            // Packets read before a break still count (PUBACKs, then the close).
            let handled = self.handle(token, &mut got);
            self.got = got;
            let broken = match (result, handled) {
                (_, Err(Lost::Fatal(e))) => return Err(e),
                (Err(why), _) | (Ok(()), Err(Lost::Link(why))) => Some(why),
                (Ok(()), Ok(())) => None,
            };
            if let Some(why) = broken {
                self.lost(token, &why);
            }
        }
        self.reconnect();
        Ok(())
    }

    /// Acts on the packets of `token`'s link, then writes what that queued.
    fn handle(&mut self, token: Token, got: &mut Vec<Incoming>) -> Result<(), Lost> {
        for packet in got.drain(..) {
            match packet {
                Incoming::Connack(c) if c.code != ConnackCode::Accepted => {
                    if token == WATCHER {
                        eprintln!("bizzy sim: the occupancy watcher was refused ({:?}): no visible latency", c.code);
                        self.watcher = None;
                        return Ok(());
                    }
                    let id = self.sensors[token.0].link.client_id().to_string();
                    return Err(Lost::Fatal(SimError::Refused(id, c.code)));
                }
                Incoming::Connack(_) => self.opened(token),
                Incoming::Puback(pkid) => self.acked(token, pkid),
                Incoming::Suback => {
                    if let (WATCHER, Some(w)) = (token, &mut self.watcher) {
                        w.subscribed = true;
                    }
                }
                Incoming::Publish(p) => self.delivered(token, &p.topic, &p.payload),
            }
        }
        link_of(&mut self.sensors, &mut self.watcher, token)
            .map_or(Ok(()), Link::flush)
            .map_err(Lost::Link)
    }

    fn opened(&mut self, token: Token) {
        self.connecting = self.connecting.saturating_sub(1);
        if token == WATCHER {
            if let Some(w) = &mut self.watcher {
                w.link.opened();
                w.link.subscribe("hives/+/occupancy", QoS::AtMostOnce);
            }
            return;
        }
        let s = &mut self.sensors[token.0];
        let again = s.link.opened();
        self.counts.resent += again.len() as u64;
        self.counts.status_resent += again
            .iter()
            .filter(|w| **w == What::Report(Channel::Status))
            .count() as u64;
        self.counts.reconnects += u64::from(s.was_open);
        s.was_open = true;
        let commands = s.topics[3].clone();
        s.link.subscribe(&commands, QoS::AtLeastOnce);
        self.wants_more(token.0);
    }

    fn acked(&mut self, token: Token, pkid: u16) {
        let Some(s) = self.sensors.get_mut(token.0) else {
            return;
        };
        if let Some(m) = s.link.acked(pkid) {
            let now = Instant::now();
            self.counts.acked += 1;
            if m.what != What::Bad {
                self.puback.record(now.duration_since(m.sent_at));
            }
            self.last_ack = Some(now);
            self.wants_more(token.0);
        }
    }

    /// A message from the server: a configuration for a sensor (which answers with a status
    /// message), or an occupancy for the watcher.
    fn delivered(&mut self, token: Token, topic: &str, payload: &[u8]) {
        if token == WATCHER {
            if let Some(w) = &mut self.watcher {
                if let Some((hive, occupancy)) = occupancy_of(payload) {
                    w.visible.seen(hive, occupancy, Instant::now());
                }
            }
            return;
        }
        let i = token.0;
        if topic != self.sensors[i].topics[3] {
            return;
        }
        if let Ok(Payload::Configuration(c)) = decode_payload(Channel::Configuration, payload) {
            self.counts.configurations += 1;
            let s = &mut self.sensors[i];
            s.sim.configured(c.configuration_id);
            let out = s.sim.status(utc_now());
            self.emit(i, out);
        }
    }

    /// `token`'s connection broke: it waits for its back-off, keeping its messages.
    fn lost(&mut self, token: Token, why: &Broken) {
        let now = Instant::now();
        let registry = self.poll.registry();
        let Some(link) = link_of(&mut self.sensors, &mut self.watcher, token) else {
            return;
        };
        if matches!(link.state, State::Connecting | State::Handshake) {
            self.connecting = self.connecting.saturating_sub(1);
        }
        if link.state == State::Open && token == WATCHER {
            eprintln!("bizzy sim: the occupancy watcher's connection broke ({why}); reconnecting");
        }
        let at = link.down(registry, now);
        self.retries.push(Reverse((at, token.0)));
    }

    /// Opens the links whose turn came, at most [`MAX_CONNECTING`] at a time.
    fn reconnect(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, i))) = self.retries.peek().copied() {
            if at > now {
                break;
            }
            self.retries.pop();
            self.to_open.push_back(i);
        }
        while self.connecting < MAX_CONNECTING {
            let Some(i) = self.to_open.pop_front() else {
                break;
            };
            let token = Token(i);
            let registry = self.poll.registry();
            let Some(link) = link_of(&mut self.sensors, &mut self.watcher, token) else {
                continue;
            };
            if link.state != State::Down {
                continue;
            }
            let addr = match token {
                WATCHER => self.addrs[0],
                _ => self.addrs[i % self.addrs.len()],
            };
            match link.open(addr, registry, token) {
                Ok(()) => self.connecting += 1,
                Err(_) => {
                    let at = link.down(registry, now);
                    self.retries.push(Reverse((at, i)));
                }
            }
        }
        if now >= self.next_keep_alive {
            self.next_keep_alive = now + Duration::from_secs(1);
            for link in links(&mut self.sensors, &mut self.watcher) {
                link.keep_alive(now);
            }
        }
    }

    /// Flat out: sensor `i` may take more; it is topped up by [`Sim::feed_hungry`].
    fn wants_more(&mut self, i: usize) {
        if self.publishing && self.opts.rate.is_none() && !self.queued[i] {
            self.queued[i] = true;
            self.hungry.push_back(i);
        }
    }

    /// Tops up every hungry sensor to its window (at QoS 0, a bounded number of messages each
    /// round, so that no sensor starves the others).
    fn feed_hungry(&mut self) {
        for _ in 0..self.hungry.len() {
            let Some(i) = self.hungry.pop_front() else {
                break;
            };
            self.queued[i] = false;
            let mut budget = self.opts.inflight.max(1);
            while budget > 0 && self.sensors[i].link.has_room(self.opts.inflight) {
                self.send_report(i);
                budget -= 1;
            }
            if self.sensors[i].link.flush().is_err() {
                continue;
            }
            if self.opts.qos == QoS::AtMostOnce && self.sensors[i].link.has_room(self.opts.inflight)
            {
                self.wants_more(i);
            }
        }
    }

    /// The next sensor with room, round robin; `None` when none has room.
    fn next_with_room(&mut self) -> Option<usize> {
        let n = self.sensors.len();
        (0..n).find_map(|_| {
            let i = self.cursor;
            self.cursor = (self.cursor + 1) % n;
            self.sensors[i]
                .link
                .has_room(self.opts.inflight)
                .then_some(i)
        })
    }

    /// Paced: the next sensor with room sends a report; false when none has room.
    fn send_paced(&mut self) -> bool {
        let Some(i) = self.next_with_room() else {
            return false;
        };
        self.send_report(i);
        let _ = self.sensors[i].link.flush();
        true
    }

    /// A malformed payload from the next sensor with room; false when none has room.
    fn send_bad(&mut self) -> bool {
        let Some(i) = self.next_with_room() else {
            return false;
        };
        let s = &mut self.sensors[i];
        let (channel, raw) = s.sim.bad();
        let topic = s.topic(channel).to_string();
        s.link.publish(topic, raw, self.opts.qos, What::Bad);
        let _ = s.link.flush();
        self.counts.sent += 1;
        self.counts.bad += 1;
        self.first_publish.get_or_insert_with(Instant::now);
        true
    }

    /// Sensor `i`'s next report. A report that would take out more people than the sensor
    /// brought in (which the generator avoids, and the model's rules may still read so) is
    /// drawn again with entries only: the expectation must not depend on the order of sensors.
    fn send_report(&mut self, i: usize) {
        let at = utc_now();
        let inside = self.model.inside(i);
        let entries_only = self.opts.measure;
        let sim = &self.sensors[i].sim;
        let mut next = sim.clone();
        let mut out = next.next(at, inside, entries_only);
        if self
            .model
            .preview(i, &out.payload, at)
            .is_some_and(|d| inside + d.net() < 0)
        {
            next = sim.clone();
            out = next.next(at, inside, true);
        }
        self.sensors[i].sim = next;
        self.emit(i, out);
    }

    /// Publishes `out` for sensor `i` and applies it to the model.
    fn emit(&mut self, i: usize, out: Outgoing) {
        let now = Instant::now();
        let fate = self.model.apply(i, &out.payload, &out.raw, utc_now());
        if let (Some(w), Fate::Stored { delta: Some(d) }) = (&mut self.watcher, fate) {
            let hive = self.model.hive_of(i);
            if let Some(h) = self.model.hives().get(&hive) {
                if d.net() > 0 && h.sensors == 1 {
                    w.visible.expect(hive, h.state.occupancy, now);
                }
            }
        }
        let s = &mut self.sensors[i];
        let channel = out.channel();
        let topic = s.topic(channel).to_string();
        s.link
            .publish(topic, out.raw, self.opts.qos, What::Report(channel));
        self.counts.sent += 1;
        self.first_publish.get_or_insert(now);
    }

    fn flush_all(&mut self) {
        for s in &mut self.sensors {
            let _ = s.link.flush();
        }
    }

    fn progress(&self, start: Instant) {
        let down = self
            .sensors
            .iter()
            .filter(|s| s.link.state != State::Open)
            .count();
        eprintln!(
            "bizzy sim: {:.0}s sent={} acked={} in_flight={} reconnects={} not_connected={}",
            start.elapsed().as_secs_f64(),
            self.counts.sent,
            self.counts.acked,
            self.sensors
                .iter()
                .map(|s| s.link.in_flight())
                .sum::<usize>(),
            self.counts.reconnects,
            down
        );
    }
}

/// Why handling a link's event stopped.
enum Lost {
    /// The link broke: it connects again.
    Link(Broken),
    /// The run cannot go on.
    Fatal(SimError),
}

/// The link of `token`: a sensor's, or the watcher's (`None` once the watcher was refused).
fn link_of<'s>(
    sensors: &'s mut [Sensor],
    watcher: &'s mut Option<Watcher>,
    token: Token,
) -> Option<&'s mut Link> {
    match token {
        WATCHER => watcher.as_mut().map(|w| &mut w.link),
        Token(i) => sensors.get_mut(i).map(|s| &mut s.link),
    }
}

/// Every link: the sensors', then the watcher's.
fn links<'s>(
    sensors: &'s mut [Sensor],
    watcher: &'s mut Option<Watcher>,
) -> impl Iterator<Item = &'s mut Link> {
    let watcher = watcher.as_mut().map(|w| &mut w.link);
    sensors.iter_mut().map(|s| &mut s.link).chain(watcher)
}

/// The wall clock, as the server reads it for a report's receive time.
fn utc_now() -> DateTime<Utc> {
    std::time::SystemTime::now().into()
}

/// The hive and occupancy of a `hives/{id}/occupancy` message (DESIGN.md section 8's JSON).
fn occupancy_of(payload: &[u8]) -> Option<(i64, u32)> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let hive = v.get("hive_id")?.as_i64()?;
    let occupancy = u32::try_from(v.get("occupancy")?.as_u64()?).ok()?;
    Some((hive, occupancy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occupancy_messages_are_read_by_their_design_shape() {
        let json = br#"{"hive_id": 7, "occupancy": 42, "capacity": 120, "percent": 35.0,
                        "updated_at": "2026-11-22T18:30:05Z", "stale": false, "degraded": false}"#;
        assert_eq!(occupancy_of(json), Some((7, 42)));
        assert_eq!(occupancy_of(b"{\"hive_id\": 7}"), None);
        assert_eq!(occupancy_of(b"not json"), None);
    }
}
