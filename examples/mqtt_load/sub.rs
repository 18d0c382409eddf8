//! The receiving side of a scenario: a subscribed connection that counts PUBLISHes, takes the
//! latency from each payload's timestamp and acknowledges QoS 1 deliveries.

use std::time::Duration;

use crate::conn::{Conn, LoadError};
use crate::stats::{now_ns, Latencies};
use crate::wire::{self, Packet};

/// How often a waiting subscriber looks at its stop condition.
const TICK: Duration = Duration::from_millis(50);

#[derive(Default)]
pub struct Received {
    pub count: u64,
    pub last_ns: u64,
    pub lat: Latencies,
    /// PUBLISHes that were not this run's (left in the broker by an earlier run).
    pub foreign: u64,
}

/// Receives until `done` says so (asked at least every `TICK`). `on_msg(seq, now_ns)` sees the
/// sequence number of every generator payload.
pub async fn receive_until(
    conn: &mut Conn,
    rx: &mut Received,
    mut on_msg: impl FnMut(u64, u64),
    mut done: impl FnMut(&Received) -> bool,
) -> Result<(), LoadError> {
    while !done(rx) {
        let Some(mut p) = conn.next_within(TICK).await? else {
            continue;
        };
        let now = now_ns();
        loop {
            match p {
                Packet::Publish { qos, pkid, stamp } => {
                    if let Some((sent, seq)) = stamp {
                        rx.count += 1;
                        rx.last_ns = now;
                        rx.lat.record(sent, now);
                        on_msg(seq, now);
                    } else {
                        rx.foreign += 1;
                    }
                    if qos > 0 {
                        wire::puback(&mut conn.out, pkid);
                    }
                }
                other => return Err(LoadError::Unexpected(other)),
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
