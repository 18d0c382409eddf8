//! `fleet`: the regime sensors produce. `--conns` connections (2,000) share a fixed total of
//! `--rate` QoS 1 messages per second (20,000), each connection publishing on its own even
//! schedule (10 a second each by default, their phases spread over the period) and waiting for
//! the PUBACK of one message before it sends the next. Unlike `qos1`, the broker never sees a
//! batch from a connection: every message is a wake-up of its own, so the figure that matters
//! is the broker's CPU per message (`server_cpu_s`) at a rate both brokers sustain, with the
//! latency PUBLISH written -> PUBACK read.
//!
//! A connection whose PUBACK comes later than its next slot sends the next message at once and
//! its schedule slides (the missed slots are not sent in a burst), so a slow broker shows as a
//! rate below the target (`target_rate=`) and a high p99, never as a queue in the generator.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use crate::conn::{Conn, LoadError};
use crate::fleet::connect_all;
use crate::publish::Tally;
use crate::stats::{now_ns, Errors, Outcome};
use crate::wire::{self, Packet};
use crate::Opts;

/// Publishes one message per `period` until `deadline`, starting at `first`; each waits for its
/// PUBACK. Counts what was acknowledged even if the connection fails later.
async fn sensor(
    mut conn: Conn,
    id: usize,
    first: Instant,
    period: Duration,
    deadline: Instant,
) -> (Tally, Option<LoadError>) {
    let topic = format!("sensors/{id}/counter");
    let mut tally = Tally::default();
    let mut due = first;
    let mut seq = 0u64;
    let r = loop {
        if due >= deadline {
            break Ok(());
        }
        sleep_until(due).await;
        let sent = now_ns();
        let pkid = (seq % 65535) as u16 + 1;
        wire::publish(
            &mut conn.out,
            topic.as_bytes(),
            1,
            pkid,
            &wire::payload(sent, seq),
        );
        seq += 1;
        if let Err(e) = conn.flush().await {
            break Err(e);
        }
        match conn.next("PUBACK").await {
            Ok(Packet::PubAck { pkid: p }) if p == pkid => {
                let now = now_ns();
                tally.lat.record(sent, now);
                tally.msgs += 1;
                tally.last_ns = now;
            }
            Ok(p) => break Err(LoadError::Unexpected(p)),
            Err(e) => break Err(e),
        }
        due = (due + period).max(Instant::now());
    };
    if r.is_ok() {
        wire::disconnect(&mut conn.out);
        let _ = conn.flush().await;
    }
    (tally, r.err())
}

pub async fn fleet(opts: Arc<Opts>) -> Outcome {
    let errors = Arc::new(Errors::default());
    let mut outcome = Outcome::new("fleet", opts.conns);
    let members = connect_all(&opts.plan("sensor", None, 0, 256), opts.conns, &errors).await;
    // Each connection's share of the total rate, as the time between its messages.
    let period = Duration::from_secs_f64(opts.conns as f64 / opts.rate as f64);
    let n = members.len().max(1) as u32;
    let cpu = opts.server.read();
    let start_ns = now_ns();
    let start = Instant::now();
    let deadline = start + opts.duration;
    let handles: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let first = start + period * i as u32 / n;
            let h = tokio::spawn(sensor(m.conn, m.id, first, period, deadline));
            (m.id, h)
        })
        .collect();
    let mut last = start_ns;
    for (id, h) in handles {
        match h.await {
            Ok((tally, err)) => {
                if let Some(e) = err {
                    errors.report(&format!("sensor {id}"), &e);
                }
                outcome.msgs += tally.msgs;
                last = last.max(tally.last_ns);
                outcome.lat.merge(tally.lat);
            }
            Err(e) => eprintln!("mqtt_load: sensor task {id} failed: {e}"),
        }
    }
    outcome.server_cpu_s = opts.server.since(cpu);
    outcome.elapsed_ns = last - start_ns;
    outcome.extra.push(("target_rate", opts.rate.to_string()));
    outcome
        .extra
        .push(("period_ms", format!("{:.1}", period.as_secs_f64() * 1e3)));
    outcome.errors = errors.count();
    outcome
}
