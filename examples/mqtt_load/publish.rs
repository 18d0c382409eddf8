//! Publishing scenarios: `qos1` (PUBACKs per second with a fixed window in flight), `qos0`
//! (messages per second the broker read) and `fanout` (many publishers, one wildcard
//! subscriber), and the publisher loops they share.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::conn::{Conn, LoadError};
use crate::fleet::connect_all;
use crate::stats::{now_ns, Errors, Latencies, Outcome};
use crate::sub::{receive_until, Received};
use crate::wire::{self, Packet};
use crate::Opts;

/// Chunks of QoS 0 PUBLISHes written whose PINGRESP has not come yet, at most.
const QOS0_PINGS: usize = 2;
/// QoS 0 PUBLISHes all connections together may have unconfirmed: about 0.3 s of a broker's
/// work, enough to keep it busy, little enough to drain soon after the deadline.
const QOS0_BACKLOG: u64 = 100_000;

/// QoS 0 PUBLISHes per write (each write ends with a PINGREQ): at most 512 (about 14 KB), fewer
/// with many connections so that all of them together stay within `QOS0_BACKLOG`.
fn qos0_chunk(conns: usize) -> u64 {
    (QOS0_BACKLOG / QOS0_PINGS as u64 / conns.max(1) as u64).clamp(16, 512)
}

/// What one publisher achieved.
#[derive(Default)]
pub struct Tally {
    pub msgs: u64,
    pub last_ns: u64,
    pub lat: Latencies,
}

/// Publishes to `sensors/{id}/counter` until `deadline_ns`, then waits for what is owed and
/// disconnects. Counts what the broker confirmed even if the connection fails later.
/// `window`: QoS 1 PUBLISHes in flight, or QoS 0 PUBLISHes per PINGREQ.
pub async fn publisher(
    mut conn: Conn,
    id: usize,
    qos: u8,
    window: usize,
    deadline_ns: u64,
) -> (Tally, Option<LoadError>) {
    let topic = format!("sensors/{id}/counter");
    let mut tally = Tally::default();
    let r = if qos == 0 {
        qos0(
            &mut conn,
            topic.as_bytes(),
            window as u64,
            deadline_ns,
            &mut tally,
        )
        .await
    } else {
        qos1(&mut conn, topic.as_bytes(), window, deadline_ns, &mut tally).await
    };
    if r.is_ok() {
        wire::disconnect(&mut conn.out);
        let _ = conn.flush().await;
    }
    (tally, r.err())
}

/// Keeps `window` QoS 1 PUBLISHes in flight: every PUBACK frees its packet identifier, which
/// goes out again at once with a fresh timestamp. Latency is PUBLISH written -> PUBACK read.
async fn qos1(
    conn: &mut Conn,
    topic: &[u8],
    window: usize,
    deadline_ns: u64,
    tally: &mut Tally,
) -> Result<(), LoadError> {
    const FREE: u64 = u64::MAX;
    let mut sent_at = vec![FREE; window];
    let mut seq = 0u64;
    let now = now_ns();
    for (slot, at) in sent_at.iter_mut().enumerate() {
        wire::publish(
            &mut conn.out,
            topic,
            1,
            slot as u16 + 1,
            &wire::payload(now, seq),
        );
        seq += 1;
        *at = now;
    }
    conn.flush().await?;
    let mut busy = window;
    while busy > 0 {
        let mut p = conn.next("PUBACK").await?;
        let now = now_ns();
        loop {
            let Packet::PubAck { pkid } = p else {
                return Err(LoadError::Unexpected(p));
            };
            let slot = usize::from(pkid).wrapping_sub(1);
            match sent_at.get_mut(slot) {
                Some(at) if *at != FREE => {
                    tally.lat.record(*at, now);
                    tally.msgs += 1;
                    tally.last_ns = now;
                    if now < deadline_ns {
                        wire::publish(&mut conn.out, topic, 1, pkid, &wire::payload(now, seq));
                        seq += 1;
                        *at = now;
                    } else {
                        *at = FREE;
                        busy -= 1;
                    }
                }
                _ => return Err(LoadError::Unexpected(p)),
            }
            match conn.try_next()? {
                Some(next) => p = next,
                None => break,
            }
        }
        conn.flush().await?;
    }
    Ok(())
}

/// Writes QoS 0 PUBLISHes as fast as the broker reads them, and counts only what it read.
///
/// Bytes written are not bytes the broker read: they may wait in socket buffers, megabytes per
/// connection on loopback. So every `chunk` PUBLISHes go out with a PINGREQ behind them,
/// in one write. A broker reads a connection's packets in order, so its PINGRESP proves that
/// the chunk before it was read; only then is the chunk counted. At most `QOS0_PINGS` chunks
/// are unconfirmed at a time, which bounds what sits in buffers, so the run ends (last
/// PINGRESP) shortly after the deadline. `tally.lat` gets the PINGREQ round trips.
async fn qos0(
    conn: &mut Conn,
    topic: &[u8],
    chunk: u64,
    deadline_ns: u64,
    tally: &mut Tally,
) -> Result<(), LoadError> {
    let mut pings = VecDeque::with_capacity(QOS0_PINGS);
    let mut seq = 0u64;
    loop {
        let now = now_ns();
        if now >= deadline_ns && pings.is_empty() {
            return Ok(());
        }
        if now >= deadline_ns || pings.len() == QOS0_PINGS {
            match conn.next("PINGRESP").await? {
                Packet::PingResp => {}
                p => return Err(LoadError::Unexpected(p)),
            }
            let now = now_ns();
            let sent = pings.pop_front().expect("a PINGREQ is outstanding");
            tally.lat.record(sent, now);
            tally.msgs += chunk;
            tally.last_ns = now;
            continue;
        }
        for _ in 0..chunk {
            wire::publish(&mut conn.out, topic, 0, 0, &wire::payload(now, seq));
            seq += 1;
        }
        wire::pingreq(&mut conn.out);
        pings.push_back(now);
        conn.flush().await?;
    }
}

/// Connects `opts.conns` publishers and runs them for `opts.duration` from one start time.
/// Returns the start time, the broker's CPU time then, and what each publisher achieved.
async fn run_publishers(
    opts: &Opts,
    qos: u8,
    errors: &Arc<Errors>,
) -> (u64, Option<f64>, Vec<Tally>) {
    let members = connect_all(&opts.plan("pub", None, 0, 4096), opts.conns, errors).await;
    let window = match qos {
        0 => qos0_chunk(opts.conns) as usize,
        _ => opts.inflight.unwrap_or(10),
    };
    let cpu = opts.server.read();
    let start = now_ns();
    let deadline = start + opts.duration.as_nanos() as u64;
    let mut handles = Vec::with_capacity(members.len());
    for m in members {
        let h = tokio::spawn(publisher(m.conn, m.id, qos, window, deadline));
        handles.push((m.id, h));
    }
    let mut tallies = Vec::with_capacity(handles.len());
    for (id, h) in handles {
        match h.await {
            Ok((tally, err)) => {
                if let Some(e) = err {
                    errors.report(&format!("publisher {id}"), &e);
                }
                tallies.push(tally);
            }
            Err(e) => eprintln!("mqtt_load: publisher task {id} failed: {e}"),
        }
    }
    (start, cpu, tallies)
}

fn sum(outcome: &mut Outcome, start: u64, tallies: Vec<Tally>) -> u64 {
    let mut last = start;
    for t in tallies {
        outcome.msgs += t.msgs;
        last = last.max(t.last_ns);
        outcome.lat.merge(t.lat);
    }
    last - start
}

/// `qos1` and `qos0`: publishers only, nobody subscribed.
pub async fn publish(opts: Arc<Opts>, qos: u8) -> Outcome {
    let errors = Arc::new(Errors::default());
    let mut outcome = Outcome::new(if qos == 0 { "qos0" } else { "qos1" }, opts.conns);
    let (start, cpu, tallies) = run_publishers(&opts, qos, &errors).await;
    outcome.server_cpu_s = opts.server.since(cpu);
    outcome.elapsed_ns = sum(&mut outcome, start, tallies);
    if qos == 0 {
        let drain = outcome
            .elapsed_ns
            .saturating_sub(opts.duration.as_nanos() as u64);
        outcome
            .extra
            .push(("drain_ms", format!("{:.1}", drain as f64 / 1e6)));
        let mut pings = std::mem::take(&mut outcome.lat);
        for (k, p) in [("ping_p50_ms", 50.0), ("ping_p99_ms", 99.0)] {
            let v = pings
                .percentile_ms(p)
                .map_or("-".to_string(), |v| format!("{v:.3}"));
            outcome.extra.push((k, v));
        }
        outcome
            .extra
            .push(("chunk", qos0_chunk(opts.conns).to_string()));
    } else {
        outcome
            .extra
            .push(("inflight", opts.inflight.unwrap_or(10).to_string()));
    }
    outcome.errors = errors.count();
    outcome
}

/// `fanout`: one subscriber on `sensors/+/counter`, publishers at `opts.qos`; the rate is what
/// the subscriber received, the latency publish -> delivery.
pub async fn fanout(opts: Arc<Opts>) -> Outcome {
    let errors = Arc::new(Errors::default());
    let mut outcome = Outcome::new("fanout", opts.conns);
    let sub_qos = opts.sub_qos.unwrap_or(0);
    let sub_plan = opts.plan(
        "sub",
        Some(|_| "sensors/+/counter".to_string()),
        sub_qos,
        1 << 16,
    );
    let Some(sub) = connect_all(&sub_plan, 1, &errors).await.pop() else {
        outcome.errors = errors.count();
        return outcome;
    };
    // Publishers store the total they sent here when they are done; until then u64::MAX.
    let expected = Arc::new(AtomicU64::new(u64::MAX));
    let quiet = Duration::from_secs(2).as_nanos() as u64;
    let subscriber = tokio::spawn({
        let expected = expected.clone();
        let mut conn = sub.conn;
        async move {
            let mut rx = Received::default();
            let mut known_ns = 0;
            let r = receive_until(
                &mut conn,
                &mut rx,
                |_, _| {},
                |rx| {
                    let exp = expected.load(Ordering::Acquire);
                    if exp == u64::MAX {
                        return false;
                    }
                    let now = now_ns();
                    if known_ns == 0 {
                        known_ns = now;
                    }
                    rx.count >= exp || now.saturating_sub(rx.last_ns.max(known_ns)) > quiet
                },
            )
            .await;
            (rx, r.err())
        }
    });
    let (start, cpu, tallies) = run_publishers(&opts, opts.qos, &errors).await;
    let sent: u64 = tallies.iter().map(|t| t.msgs).sum();
    expected.store(sent, Ordering::Release);
    match subscriber.await {
        Ok((rx, err)) => {
            if let Some(e) = err {
                errors.report("subscriber", &e);
            }
            outcome.msgs = rx.count;
            outcome.elapsed_ns = rx.last_ns.saturating_sub(start);
            outcome.lat = rx.lat;
            outcome.extra.push(("foreign", rx.foreign.to_string()));
        }
        Err(e) => eprintln!("mqtt_load: subscriber task failed: {e}"),
    }
    outcome.server_cpu_s = opts.server.since(cpu);
    outcome.extra.push(("sent", sent.to_string()));
    outcome
        .extra
        .push(("lost", sent.saturating_sub(outcome.msgs).to_string()));
    outcome.extra.push(("pub_qos", opts.qos.to_string()));
    outcome.extra.push(("sub_qos", sub_qos.to_string()));
    outcome.errors = errors.count();
    outcome
}
