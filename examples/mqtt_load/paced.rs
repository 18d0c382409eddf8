//! `paced`: one publisher sends `opts.rate` messages per second, evenly paced (every
//! millisecond it sends what is due so far), to one subscriber for `opts.duration`. Reports the
//! messages lost and duplicated (by sequence number) and the delivery latency from the
//! timestamp in each payload.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{interval, MissedTickBehavior};

use crate::conn::{Conn, LoadError};
use crate::fleet::connect_all;
use crate::stats::{now_ns, Errors, Outcome};
use crate::sub::{receive_until, Received};
use crate::wire::{self, Packet};
use crate::Opts;

/// After the publisher is done, the subscriber waits this long for a missing message.
const QUIET: Duration = Duration::from_secs(2);

fn paced_topic(_: usize) -> String {
    format!("bench/paced/{}", std::process::id())
}

pub async fn paced(opts: Arc<Opts>) -> Outcome {
    let errors = Arc::new(Errors::default());
    let mut outcome = Outcome::new("paced", 1);
    let total = (opts.rate as f64 * opts.duration.as_secs_f64()).round() as u64;
    let sub_qos = opts.sub_qos.unwrap_or(1);
    let sub_plan = opts.plan("sub", Some(paced_topic), sub_qos, 1 << 16);
    let sub = connect_all(&sub_plan, 1, &errors).await.pop();
    let publ = connect_all(&opts.plan("pub", None, 0, 4096), 1, &errors)
        .await
        .pop();
    let (Some(sub), Some(publ)) = (sub, publ) else {
        outcome.errors = errors.count();
        return outcome;
    };
    let expected = Arc::new(AtomicU64::new(u64::MAX));
    let subscriber = tokio::spawn({
        let expected = expected.clone();
        let mut conn = sub.conn;
        async move {
            let mut rx = Received::default();
            let mut seen = vec![false; total as usize];
            let (mut unique, mut dups, mut known_ns) = (0u64, 0u64, 0u64);
            let on_msg = |seq: u64, _| match seen.get_mut(seq as usize) {
                Some(s) if !*s => {
                    *s = true;
                    unique += 1;
                }
                _ => dups += 1,
            };
            let done = |rx: &Received| {
                let exp = expected.load(Ordering::Acquire);
                if exp == u64::MAX {
                    return false;
                }
                let now = now_ns();
                if known_ns == 0 {
                    known_ns = now;
                }
                rx.count >= exp
                    || now.saturating_sub(rx.last_ns.max(known_ns)) > QUIET.as_nanos() as u64
            };
            let r = receive_until(&mut conn, &mut rx, on_msg, done).await;
            (rx, unique, dups, r.err())
        }
    });
    let cpu = opts.server.read();
    let start = now_ns();
    let mut conn = publ.conn;
    let sent = match pace(&mut conn, opts.qos, opts.rate, total).await {
        Ok(sent) => sent,
        Err((sent, e)) => {
            errors.report("publisher", &e);
            sent
        }
    };
    expected.store(sent, Ordering::Release);
    let received = subscriber.await;
    outcome.server_cpu_s = opts.server.since(cpu);
    if let Ok((rx, unique, dups, err)) = received {
        if let Some(e) = err {
            errors.report("subscriber", &e);
        }
        outcome.msgs = unique;
        outcome.elapsed_ns = rx.last_ns.saturating_sub(start);
        outcome.lat = rx.lat;
        outcome.extra.push(("foreign", rx.foreign.to_string()));
        outcome
            .extra
            .push(("lost", sent.saturating_sub(unique).to_string()));
        outcome.extra.push(("dups", dups.to_string()));
    }
    outcome.extra.push(("sent", sent.to_string()));
    outcome.extra.push(("target_rate", opts.rate.to_string()));
    outcome.extra.push(("pub_qos", opts.qos.to_string()));
    outcome.extra.push(("sub_qos", sub_qos.to_string()));
    outcome.errors = errors.count();
    outcome
}

/// Sends `total` messages at `rate` per second; with QoS 1 waits for every PUBACK at the end.
/// Returns how many were sent, also when it failed part way.
async fn pace(conn: &mut Conn, qos: u8, rate: u64, total: u64) -> Result<u64, (u64, LoadError)> {
    let start = now_ns();
    let mut tick = interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let topic = paced_topic(0);
    let (mut sent, mut acked) = (0u64, 0u64);
    while sent < total {
        tick.tick().await;
        let now = now_ns();
        let due = (u128::from(now - start) * u128::from(rate) / 1_000_000_000) as u64;
        for seq in sent..due.min(total) {
            let pkid = (seq % 65535) as u16 + 1;
            wire::publish(
                &mut conn.out,
                topic.as_bytes(),
                qos,
                pkid,
                &wire::payload(now, seq),
            );
        }
        sent = sent.max(due.min(total));
        conn.flush().await.map_err(|e| (sent, e))?;
        if qos > 0 {
            acked += count_acks(conn).map_err(|e| (sent, e))?;
            if sent - acked >= 65535 {
                return Err((
                    sent,
                    LoadError::Timeout("PUBACK before its packet identifier came round"),
                ));
            }
        }
    }
    while qos > 0 && acked < sent {
        match conn.next("PUBACK").await.map_err(|e| (sent, e))? {
            Packet::PubAck { .. } => acked += 1,
            p => return Err((sent, LoadError::Unexpected(p))),
        }
    }
    Ok(sent)
}

/// PUBACKs that arrived so far, read without waiting.
pub fn count_acks(conn: &mut Conn) -> Result<u64, LoadError> {
    let mut n = 0;
    loop {
        while let Some(p) = conn.try_next()? {
            match p {
                Packet::PubAck { .. } => n += 1,
                other => return Err(LoadError::Unexpected(other)),
            }
        }
        if !conn.try_fill()? {
            return Ok(n);
        }
    }
}
