//! `push`: configuration push to sensors. `opts.conns` sensors each subscribe (QoS 1) to
//! `push/sensor/{id}`; one backend connection publishes one QoS 1 message to each. A round is
//! timed from its first PUBLISH to the last sensor's delivery; rounds repeat, 50 ms apart, for
//! `opts.duration`. The real configurations go to `commands/sensor/{id}`, which only the server
//! may publish to (DESIGN.md section 6): the backend here is a client, so it uses a topic of the
//! same shape, one subscriber per topic, that a client may publish to.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::conn::{Conn, LoadError};
use crate::fleet::connect_all;
use crate::stats::{now_ns, Errors, Outcome};
use crate::sub::{receive_until, Received};
use crate::wire::{self, Packet};
use crate::Opts;

/// Longest wait for one round's deliveries once the backend has its PUBACKs.
const ROUND_WAIT: Duration = Duration::from_secs(5);
const ROUND_GAP: Duration = Duration::from_millis(50);

fn command_topic(id: usize) -> String {
    format!("push/sensor/{id}")
}

/// Shared by the sensors: deliveries so far and the time of the latest.
#[derive(Default)]
struct Deliveries {
    count: AtomicU64,
    last_ns: AtomicU64,
    stop: AtomicBool,
}

pub async fn push(opts: Arc<Opts>) -> Outcome {
    let errors = Arc::new(Errors::default());
    let mut outcome = Outcome::new("push", opts.conns);
    let sensor_plan = opts.plan("dev", Some(command_topic), 1, 1024);
    let sensors = connect_all(&sensor_plan, opts.conns, &errors).await;
    let backend = connect_all(&opts.plan("backend", None, 0, 1 << 16), 1, &errors)
        .await
        .pop();
    let Some(mut backend) = backend else {
        outcome.errors = errors.count();
        return outcome;
    };
    let ids: Vec<usize> = sensors.iter().map(|m| m.id).collect();
    let shared = Arc::new(Deliveries::default());
    let mut handles = Vec::with_capacity(sensors.len());
    for m in sensors {
        let shared = shared.clone();
        let mut conn = m.conn;
        handles.push(tokio::spawn(async move {
            let mut rx = Received::default();
            let on_msg = |_, now| {
                shared.count.fetch_add(1, Ordering::AcqRel);
                shared.last_ns.fetch_max(now, Ordering::AcqRel);
            };
            let stop = |_: &Received| shared.stop.load(Ordering::Acquire);
            let r = receive_until(&mut conn, &mut rx, on_msg, stop).await;
            (m.id, rx, r.err())
        }));
    }
    let window = opts.inflight.unwrap_or(ids.len()).clamp(1, 65535);
    let cpu = opts.server.read();
    let deadline = now_ns() + opts.duration.as_nanos() as u64;
    let mut all_ms = Vec::new();
    let mut expected = 0u64;
    let mut round = 0u64;
    loop {
        round += 1;
        let t0 = now_ns();
        if let Err(e) = push_round(&mut backend.conn, &ids, round, window).await {
            errors.report("backend", &e);
            break;
        }
        expected += ids.len() as u64;
        let wait_until = now_ns() + ROUND_WAIT.as_nanos() as u64;
        while shared.count.load(Ordering::Acquire) < expected && now_ns() < wait_until {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if shared.count.load(Ordering::Acquire) >= expected {
            let last = shared.last_ns.load(Ordering::Acquire);
            outcome.elapsed_ns += last - t0;
            all_ms.push((last - t0) as f64 / 1e6);
        }
        if now_ns() >= deadline {
            break;
        }
        tokio::time::sleep(ROUND_GAP).await;
    }
    outcome.server_cpu_s = opts.server.since(cpu);
    shared.stop.store(true, Ordering::Release);
    let mut foreign = 0;
    for h in handles {
        match h.await {
            Ok((id, rx, err)) => {
                if let Some(e) = err {
                    errors.report(&format!("sensor {id}"), &e);
                }
                outcome.lat.merge(rx.lat);
                foreign += rx.foreign;
            }
            Err(e) => eprintln!("mqtt_load: a sensor task failed: {e}"),
        }
    }
    let delivered = shared.count.load(Ordering::Acquire);
    outcome.msgs = delivered;
    all_ms.sort_by(f64::total_cmp);
    let pick = |q: f64| all_ms.get(((all_ms.len().max(1) - 1) as f64 * q).round() as usize);
    let ms = |v: Option<&f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    outcome.extra.push(("rounds", round.to_string()));
    outcome
        .extra
        .push(("complete_rounds", all_ms.len().to_string()));
    outcome
        .extra
        .push(("lost", expected.saturating_sub(delivered).to_string()));
    outcome.extra.push(("all_ms_p50", ms(pick(0.5))));
    outcome.extra.push(("all_ms_max", ms(all_ms.last())));
    outcome.extra.push(("window", window.to_string()));
    outcome.extra.push(("foreign", foreign.to_string()));
    outcome.errors = errors.count();
    outcome
}

/// One QoS 1 PUBLISH to each sensor's command topic, `window` unacknowledged at most; returns
/// when every PUBACK is in. Packet identifiers are the sensor's index (mod 65535) + 1, unique
/// while `window` <= 65535.
async fn push_round(
    conn: &mut Conn,
    ids: &[usize],
    round: u64,
    window: usize,
) -> Result<(), LoadError> {
    let pkid = |i: usize| (i % 65535) as u16 + 1;
    let mut next = 0;
    let mut acked = 0;
    while acked < ids.len() {
        while next < ids.len() && next - acked < window {
            let topic = command_topic(ids[next]);
            wire::publish(
                &mut conn.out,
                topic.as_bytes(),
                1,
                pkid(next),
                &wire::payload(now_ns(), round),
            );
            next += 1;
        }
        conn.flush().await?;
        let mut p = conn.next("PUBACK").await?;
        loop {
            match p {
                Packet::PubAck { .. } => acked += 1,
                other => return Err(LoadError::Unexpected(other)),
            }
            match conn.try_next()? {
                Some(n) => p = n,
                None => break,
            }
        }
    }
    Ok(())
}
