//! `qos1` through rumqttc (`--client rumqttc`), as a cross-check of the raw client: same
//! topics, payloads and window (rumqttc's `inflight`), latency from rumqttc's
//! `Outgoing::Publish` event to the `PubAck`. On this 2-core machine rumqttc costs the
//! generator much more CPU per message than the raw client, so the raw client is the default
//! for the measurements; this mode shows that both see the same broker behaviour.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::time::timeout;

use crate::conn::STALL;
use crate::fleet::KEEP_ALIVE_S;
use crate::publish::Tally;
use crate::stats::{now_ns, Outcome};
use crate::wire;
use crate::Opts;

/// Connects through rumqttc and waits for the CONNACK.
async fn open(opts: &Opts, id: usize, window: usize) -> Result<(AsyncClient, EventLoop), String> {
    let mut mo = MqttOptions::new(
        format!("{}-rq-{id}", opts.tag),
        opts.addr.ip().to_string(),
        opts.addr.port(),
    );
    mo.set_keep_alive(Duration::from_secs(KEEP_ALIVE_S.into()));
    mo.set_clean_session(true);
    mo.set_inflight(window as u16);
    let (client, mut events) = AsyncClient::new(mo, window * 2);
    loop {
        match timeout(STALL, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return Ok((client, events)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("rumqttc: {e}")),
            Err(_) => return Err("rumqttc: no CONNACK".to_string()),
        }
    }
}

/// Publishes until `deadline_ns`, then polls until every PUBLISH written has its PUBACK.
async fn run(
    client: AsyncClient,
    mut events: EventLoop,
    id: usize,
    deadline_ns: u64,
) -> Result<Tally, String> {
    let mut producer = tokio::spawn(async move {
        let topic = format!("sensors/{id}/counter");
        let mut seq = 0u64;
        while now_ns() < deadline_ns {
            let p = wire::payload(now_ns(), seq).to_vec();
            if client
                .publish(topic.as_str(), QoS::AtLeastOnce, false, p)
                .await
                .is_err()
            {
                break;
            }
            seq += 1;
        }
        seq
    });
    let mut tally = Tally::default();
    let mut sent_at = HashMap::new();
    let mut queued = u64::MAX;
    while queued == u64::MAX || tally.msgs < queued {
        if queued == u64::MAX && producer.is_finished() {
            queued = (&mut producer)
                .await
                .map_err(|e| format!("producer task: {e}"))?;
        }
        let ev = match timeout(Duration::from_millis(50), events.poll()).await {
            Ok(r) => r.map_err(|e| format!("rumqttc: {e}"))?,
            Err(_) if now_ns() > deadline_ns + STALL.as_nanos() as u64 => {
                return Err("rumqttc: PUBACKs missing".to_string())
            }
            Err(_) => continue,
        };
        let now = now_ns();
        match ev {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                sent_at.insert(pkid, now);
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(at) = sent_at.remove(&ack.pkid) {
                    tally.lat.record(at, now);
                }
                tally.msgs += 1;
                tally.last_ns = now;
            }
            _ => {}
        }
    }
    Ok(tally)
}

pub async fn qos1(opts: Arc<Opts>) -> Outcome {
    let mut outcome = Outcome::new("qos1", opts.conns);
    let window = opts.inflight.unwrap_or(10).clamp(1, 65535);
    let mut conns = Vec::with_capacity(opts.conns);
    for id in 0..opts.conns {
        match open(&opts, id, window).await {
            Ok(c) => conns.push((id, c)),
            Err(e) => eprintln!("mqtt_load: publisher {id}: {e}"),
        }
    }
    let mut failed = opts.conns - conns.len();
    let cpu = opts.server.read();
    let start = now_ns();
    let deadline = start + opts.duration.as_nanos() as u64;
    let handles: Vec<_> = conns
        .into_iter()
        .map(|(id, (client, events))| (id, tokio::spawn(run(client, events, id, deadline))))
        .collect();
    let mut last = start;
    for (id, h) in handles {
        match h.await {
            Ok(Ok(t)) => {
                outcome.msgs += t.msgs;
                last = last.max(t.last_ns);
                outcome.lat.merge(t.lat);
            }
            Ok(Err(e)) => {
                failed += 1;
                eprintln!("mqtt_load: publisher {id}: {e}");
            }
            Err(e) => {
                failed += 1;
                eprintln!("mqtt_load: publisher task {id}: {e}");
            }
        }
    }
    outcome.server_cpu_s = opts.server.since(cpu);
    outcome.elapsed_ns = last - start;
    outcome.errors = failed as u64;
    outcome.extra.push(("inflight", window.to_string()));
    outcome.extra.push(("client", "rumqttc".to_string()));
    outcome
}
