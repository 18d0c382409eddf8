//! `live` and `live-idle`: the server-sent events of `GET /v1/hives/{id}/live` (issue 12).
//!
//! Both open `opts.conns` streams over `opts.hives` hives (stream `j` on hive
//! `first_hive + j % hives`), `opts.lanes` being opened at a time, each counted open at its
//! first event (the hive's count when it opened).
//!
//! `live` then drives one sensor per hive over MQTT: sensor `live-{k}` of hive
//! `first_hive + k`, logged in with `opts.password`, QoS 1, reports paced at `opts.rate` per
//! second in total for `opts.duration`, the hives in turn. Every report is an event report of
//! one entry, so it raises its hive's count by exactly one and the events it shows can be told
//! apart (`ledger.rs`). Once the last report is out, the streams get `SETTLE` to show it. The
//! `RESULT` line gives publish-to-event latency over every (stream, report) pair, the events
//! received and the pairs expected, the streams left behind, and the server's and the
//! generator's CPU over the run (`client_run_cpu_s`: one thread, so near `elapsed_s` means
//! the generator was saturated and measured itself).
//!
//! `live-idle` prints its `RESULT` once every stream has its first event, then holds them as
//! `idle` does, so a script can read the workers' memory with the streams open.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bizzy::modules::ingest::decode::{encode, Event, EventType, Payload};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{interval, sleep, timeout, MissedTickBehavior};

use crate::conn::{Conn, LoadError, STALL};
use crate::fleet::connect_all;
use crate::idle::hold;
use crate::ledger::Ledger;
use crate::paced::count_acks;
use crate::sse::{self, Item, Parser};
use crate::stats::{now_ns, self_cpu_s, Errors, Outcome};
use crate::wire::{self, Packet};
use crate::Opts;

/// After the last report, how long the streams may take to show it.
const SETTLE: Duration = Duration::from_secs(5);
/// Longest time for opening every stream.
const OPENING: Duration = Duration::from_secs(120);
/// Sensors are `{ROLE}-{k}`: client id, user name and topic segment.
const ROLE: &str = "live";
/// Read buffer of a stream: an event is about 200 bytes.
const RBUF: usize = 2048;

/// Counters the stream tasks share.
#[derive(Default)]
struct Progress {
    opened: AtomicU64,
    /// Streams that ended before their first event.
    failed: AtomicU64,
    /// Streams that ended after it.
    closed: AtomicU64,
    heartbeats: AtomicU64,
    retries: AtomicU64,
    mismatches: AtomicU64,
}

fn count(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// The open streams.
struct Streams {
    ledger: Arc<Mutex<Ledger>>,
    progress: Arc<Progress>,
    tasks: Vec<JoinHandle<()>>,
    /// From the first connect until every stream had its first event or failed.
    open_ns: u64,
}

impl Drop for Streams {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The ledger, also when a stream task panicked holding it (its figures are still counts).
fn lock(l: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

/// One entry of the event firmware (PROTOCOL.md section 3) at `unix_s`: `seq` makes the
/// payloads of a sensor differ, since an identical payload within the dedupe window would be a
/// duplicate, counted once.
pub fn report(seq: u64, unix_s: u32) -> Vec<u8> {
    let entry = Event {
        event_type: EventType::Entry,
        distance_mm: (seq % 65536) as u16,
        timestamp: unix_s,
    };
    let mut out = Vec::with_capacity(8);
    encode(&Payload::Events(vec![entry]), &mut out).expect("one event has a wire form");
    out
}

fn unix_now() -> u32 {
    let s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(s).unwrap_or(u32::MAX)
}

/// Opens every stream and waits until each had its first event or failed.
async fn open(opts: &Opts, errors: &Arc<Errors>) -> Streams {
    let ledger = Arc::new(Mutex::new(Ledger::new(
        opts.first_hive,
        opts.hives,
        opts.conns,
    )));
    let progress = Arc::new(Progress::default());
    let lanes = Arc::new(Semaphore::new(opts.lanes));
    let start = now_ns();
    let tasks = (0..opts.conns)
        .map(|j| {
            let hive_id = lock(&ledger).hive_of(j);
            let (ledger, progress) = (ledger.clone(), progress.clone());
            let (lanes, errors, addr) = (lanes.clone(), errors.clone(), opts.http);
            tokio::spawn(async move {
                let mut permit = lanes.acquire_owned().await.ok();
                let s = Stream {
                    j,
                    hive_id,
                    ledger: &ledger,
                    progress: &progress,
                    errors: &errors,
                };
                let Err(e) = s.run(addr, &mut permit).await;
                let ended = if permit.is_some() {
                    &progress.failed
                } else {
                    &progress.closed
                };
                ended.fetch_add(1, Ordering::Relaxed);
                errors.report(&format!("stream {j} of hive {hive_id}"), &e);
            })
        })
        .collect();
    let n = opts.conns as u64;
    let until = start + OPENING.as_nanos() as u64;
    while count(&progress.opened) + count(&progress.failed) < n && now_ns() < until {
        sleep(Duration::from_millis(10)).await;
    }
    Streams {
        ledger,
        progress,
        tasks,
        open_ns: now_ns() - start,
    }
}

/// One stream task's view.
struct Stream<'a> {
    j: usize,
    hive_id: i64,
    ledger: &'a Mutex<Ledger>,
    progress: &'a Progress,
    errors: &'a Errors,
}

impl Stream<'_> {
    /// Reads the stream until it fails; `permit` (an opening lane) is let go at the first
    /// event, and until then every wait is bounded by `STALL`.
    async fn run(
        &self,
        addr: SocketAddr,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<Infallible, LoadError> {
        let mut s = tcp(addr).await?;
        write_all(&mut s, &sse::request(self.hive_id)).await?;
        let mut parser = Parser::default();
        let (mut items, mut buf) = (Vec::new(), vec![0u8; RBUF]);
        loop {
            if permit.is_some() {
                match timeout(STALL, s.readable()).await {
                    Ok(r) => r.map_err(LoadError::Io)?,
                    Err(_) => return Err(LoadError::Timeout("first event")),
                }
            } else {
                s.readable().await.map_err(LoadError::Io)?;
            }
            let n = match s.try_read(&mut buf) {
                Ok(0) => return Err(LoadError::Sse(sse::SseError::Ended)),
                Ok(n) => n,
                Err(e) if retry(&e) => continue,
                Err(e) => return Err(LoadError::Io(e)),
            };
            let now = now_ns();
            parser.feed(&buf[..n], &mut items).map_err(LoadError::Sse)?;
            for item in items.drain(..) {
                self.take(item, now, permit);
            }
        }
    }

    fn take(&self, item: Item, now: u64, permit: &mut Option<OwnedSemaphorePermit>) {
        let p = self.progress;
        match item {
            Item::Occupancy(o) => match lock(self.ledger).on_event(self.j, &o, now) {
                Ok(true) => {
                    *permit = None;
                    p.opened.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => {}
                Err(m) => {
                    p.mismatches.fetch_add(1, Ordering::Relaxed);
                    let who = format!("stream {} of hive {}", self.j, self.hive_id);
                    self.errors.report(&who, &LoadError::Mismatch(m));
                }
            },
            Item::Heartbeat => {
                p.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
            Item::Retry(_) => {
                p.retries.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

async fn tcp(addr: SocketAddr) -> Result<TcpStream, LoadError> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(LoadError::Connect)?;
    match timeout(STALL, socket.connect(addr)).await {
        Ok(r) => r.map_err(LoadError::Connect),
        Err(_) => Err(LoadError::Timeout("TCP handshake")),
    }
}

async fn write_all(s: &mut TcpStream, mut bytes: &[u8]) -> Result<(), LoadError> {
    while !bytes.is_empty() {
        match s.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if retry(&e) => match timeout(STALL, s.writable()).await {
                Ok(r) => r.map_err(LoadError::Io)?,
                Err(_) => return Err(LoadError::Timeout("room to write")),
            },
            Err(e) => return Err(LoadError::Io(e)),
        }
    }
    Ok(())
}

/// One connected sensor of the `live` run.
struct Sensor {
    /// Index of its hive.
    hive: usize,
    topic: Vec<u8>,
    conn: Conn,
    sent: u64,
    acked: u64,
    failed: bool,
}

impl Sensor {
    /// Writes what `out` holds and counts the PUBACKs that came meanwhile.
    async fn flush(&mut self) -> Result<(), LoadError> {
        self.conn.flush().await?;
        self.acked += count_acks(&mut self.conn)?;
        Ok(())
    }

    /// Waits for the PUBACK of every report sent.
    async fn drain(&mut self) -> Result<(), LoadError> {
        while self.acked < self.sent {
            match self.conn.next("PUBACK").await? {
                Packet::PubAck { .. } => self.acked += 1,
                p => return Err(LoadError::Unexpected(p)),
            }
        }
        Ok(())
    }
}

/// Connects sensor `live-{k}` of every hive index `k`; the ones that fail are left out.
async fn sensors(opts: &Opts, errors: &Arc<Errors>) -> Vec<Sensor> {
    let mut plan = opts.plan(ROLE, None, 0, 256);
    plan.password = opts.password.clone();
    connect_all(&plan, opts.hives, errors)
        .await
        .into_iter()
        .map(|m| Sensor {
            hive: m.id,
            topic: format!("sensors/{ROLE}-{}/event", m.id).into_bytes(),
            conn: m.conn,
            sent: 0,
            acked: 0,
            failed: false,
        })
        .collect()
}

/// Publishes `opts.rate` reports per second for `opts.duration` over `sensors` in turn
/// (every millisecond what is due so far), each recorded in the ledger as it is written.
async fn drive(opts: &Opts, sensors: &mut [Sensor], ledger: &Mutex<Ledger>, errors: &Errors) {
    let total = (opts.rate as f64 * opts.duration.as_secs_f64()).round() as u64;
    let n = sensors.len() as u64;
    let start = now_ns();
    let mut tick = interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut next, mut touched) = (0u64, Vec::new());
    while next < total && n > 0 {
        tick.tick().await;
        let now = now_ns();
        let due = (u128::from(now - start) * u128::from(opts.rate) / 1_000_000_000) as u64;
        let due = due.min(total);
        if due > next {
            let unix = unix_now();
            let mut l = lock(ledger);
            for r in next..due {
                let i = (r % n) as usize;
                let s = &mut sensors[i];
                if s.failed {
                    continue;
                }
                l.sent(s.hive, now);
                let pkid = (s.sent % 65535) as u16 + 1;
                wire::publish(&mut s.conn.out, &s.topic, 1, pkid, &report(s.sent, unix));
                s.sent += 1;
                touched.push(i);
            }
            next = due;
        }
        touched.sort_unstable();
        touched.dedup();
        for i in touched.drain(..) {
            let s = &mut sensors[i];
            if let Err(e) = s.flush().await {
                s.failed = true;
                errors.report(&format!("sensor {ROLE}-{}", s.hive), &e);
            }
        }
    }
    for s in sensors.iter_mut().filter(|s| !s.failed) {
        if let Err(e) = s.drain().await {
            s.failed = true;
            errors.report(&format!("sensor {ROLE}-{}", s.hive), &e);
        }
    }
}

/// The `live` scenario.
pub async fn live(opts: Arc<Opts>) -> Outcome {
    let errors = Arc::new(Errors::default());
    let mut outcome = Outcome::new("live", opts.conns);
    let mut sensors = sensors(&opts, &errors).await;
    let streams = open(&opts, &errors).await;
    let cpu = opts.server.read();
    let own_cpu = self_cpu_s();
    let start = now_ns();
    drive(&opts, &mut sensors, &streams.ledger, &errors).await;
    let until = now_ns() + SETTLE.as_nanos() as u64;
    while !lock(&streams.ledger).settled() && now_ns() < until {
        sleep(Duration::from_millis(10)).await;
    }
    outcome.elapsed_ns = now_ns() - start;
    outcome.server_cpu_s = opts.server.since(cpu);
    let own_cpu = self_cpu_s() - own_cpu;
    let mut ledger = lock(&streams.ledger);
    let t = ledger.tally();
    let p = &streams.progress;
    outcome.conns = count(&p.opened) as usize;
    outcome.msgs = ledger.events;
    outcome.lat = std::mem::take(&mut ledger.lat);
    let max = outcome.lat.percentile_ms(100.0);
    let sent: u64 = sensors.iter().map(|s| s.sent).sum();
    let acked: u64 = sensors.iter().map(|s| s.acked).sum();
    let extra = [
        ("max_ms", max.map_or("-".into(), |m| format!("{m:.3}"))),
        ("streams", opts.conns.to_string()),
        ("hives", opts.hives.to_string()),
        ("sensors", sensors.len().to_string()),
        ("open_ms", format!("{:.0}", streams.open_ns as f64 / 1e6)),
        ("target_rate", opts.rate.to_string()),
        ("sent", sent.to_string()),
        ("acked", acked.to_string()),
        ("expected", t.expected.to_string()),
        ("covered", t.covered.to_string()),
        ("behind", t.behind.to_string()),
        ("unopened", t.unopened.to_string()),
        ("repeats", ledger.repeats.to_string()),
        ("heartbeats", count(&p.heartbeats).to_string()),
        ("mismatches", count(&p.mismatches).to_string()),
        ("closed", count(&p.closed).to_string()),
        ("client_run_cpu_s", format!("{own_cpu:.2}")),
    ];
    outcome.extra.extend(extra);
    drop(ledger);
    outcome.errors = errors.count();
    outcome
}

/// The `live-idle` scenario; returns the errors.
pub async fn live_idle(opts: Arc<Opts>, cpu_before: f64) -> u64 {
    let errors = Arc::new(Errors::default());
    let mut outcome = Outcome::new("live-idle", opts.conns);
    let cpu = opts.server.read();
    let streams = open(&opts, &errors).await;
    let p = &streams.progress;
    outcome.server_cpu_s = opts.server.since(cpu);
    outcome.conns = count(&p.opened) as usize;
    outcome.msgs = count(&p.opened);
    outcome.elapsed_ns = streams.open_ns;
    outcome.errors = errors.count();
    outcome.extra.extend([
        ("streams", opts.conns.to_string()),
        ("hives", opts.hives.to_string()),
        ("opened", count(&p.opened).to_string()),
        ("failed", count(&p.failed).to_string()),
        ("open_ms", format!("{:.0}", streams.open_ns as f64 / 1e6)),
        ("lanes", opts.lanes.to_string()),
    ]);
    outcome.print(cpu_before);
    let held = hold(opts.hold).await;
    let closed = count(&p.closed);
    println!(
        "HOLD scenario=live-idle conns={} alive={} closed_by_server={closed} heartbeats={} held_s={held:.1}",
        count(&p.opened),
        count(&p.opened) - closed,
        count(&p.heartbeats),
    );
    errors.count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bizzy::modules::ingest::decode::{decode_payload, Channel};

    #[test]
    fn a_report_is_one_entry_that_decodes() {
        let raw = report(70_000, 1_764_763_200);
        assert_eq!(raw.len(), 8);
        let expected = Payload::Events(vec![Event {
            event_type: EventType::Entry,
            distance_mm: 4464,
            timestamp: 1_764_763_200,
        }]);
        assert_eq!(decode_payload(Channel::Event, &raw), Ok(expected));
        assert_ne!(report(1, 5), report(2, 5), "a sensor's payloads differ");
    }
}
