//! `idle`: opens `opts.conns` connections, each CONNECT + SUBSCRIBE (QoS 1) to its own
//! `commands/sensor/{id}` in one write, prints how long until all were connected (CONNACK)
//! and subscribed (SUBACK), then holds them open until stdin reaches end of file or
//! `opts.hold` has passed, so a script can read the broker's memory meanwhile. Last it prints
//! how many were still open.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::fleet::connect_all;
use crate::stats::{now_ns, Errors, Outcome};
use crate::Opts;

fn command_topic(id: usize) -> String {
    format!("commands/sensor/{id}")
}

/// Runs the scenario and prints its `RESULT` line before holding, then a `HOLD` line.
pub async fn idle(opts: Arc<Opts>, cpu_before: f64) -> u64 {
    let errors = Arc::new(Errors::default());
    let mut outcome = Outcome::new("idle", opts.conns);
    let cpu = opts.server.read();
    let start = now_ns();
    let mut members = connect_all(
        &opts.plan("idle", Some(command_topic), 1, 64),
        opts.conns,
        &errors,
    )
    .await;
    let connack = members.iter().map(|m| m.connack_ns).max().unwrap_or(start) - start;
    let suback = members.iter().map(|m| m.suback_ns).max().unwrap_or(start) - start;
    for m in &members {
        outcome.lat.record(m.began_ns, m.suback_ns);
    }
    outcome.server_cpu_s = opts.server.since(cpu);
    outcome.msgs = members.len() as u64;
    outcome.elapsed_ns = suback;
    let failed = errors.count();
    outcome.errors = failed;
    outcome.extra.push(("connected", members.len().to_string()));
    outcome
        .extra
        .push(("connack_ms", format!("{:.1}", connack as f64 / 1e6)));
    outcome
        .extra
        .push(("suback_ms", format!("{:.1}", suback as f64 / 1e6)));
    outcome.extra.push(("lanes", opts.lanes.to_string()));
    outcome.print(cpu_before);

    let held = hold(opts.hold).await;
    let alive = members
        .iter_mut()
        .filter_map(|m| m.conn.is_open().then_some(()))
        .count();
    println!(
        "HOLD scenario=idle conns={} alive={alive} closed_by_broker={} held_s={held:.1}",
        members.len(),
        members.len() - alive,
    );
    failed
}

/// Waits until stdin reaches end of file or `limit` has passed; the seconds it waited.
pub async fn hold(limit: Duration) -> f64 {
    let stdin_closed = Arc::new(AtomicBool::new(false));
    std::thread::spawn({
        let flag = stdin_closed.clone();
        move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            flag.store(true, Ordering::Release);
        }
    });
    let held_from = now_ns();
    let until = held_from + limit.as_nanos() as u64;
    while now_ns() < until && !stdin_closed.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (now_ns() - held_from) as f64 / 1e9
}
