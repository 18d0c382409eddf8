//! MQTT counters shared by all workers for `/metrics`: one row per worker slot in a
//! shared-memory zone, written only by that worker, summed by the reader.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::shm::Zone;
use crate::core::stats::{self, bump, drop_one};

pub const ZONE: &str = "mqtt.stats";

/// Why a message was not delivered to a subscriber (or not accepted from a publisher).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// QoS 0 to a client whose output buffer is full (it does not read fast enough).
    SlowQos0,
    /// QoS 1/2 to a session whose queue is at `mqtt.max_queued` (online or offline).
    QueueFull,
    /// A PUBLISH the ACL refused.
    NotAuthorised,
    /// A message for a sibling worker whose link is backed up.
    PeerBackedUp,
}

const DROPS: [(Drop, &str); 4] = [
    (Drop::SlowQos0, "slow_qos0"),
    (Drop::QueueFull, "queue_full"),
    (Drop::NotAuthorised, "not_authorised"),
    (Drop::PeerBackedUp, "peer_backed_up"),
];

#[repr(C)]
pub struct Row {
    pub connected: AtomicU64,
    pub sessions: AtomicU64,
    pub retained: AtomicU64,
    pub received: [AtomicU64; 3],
    pub sent: [AtomicU64; 3],
    pub dropped: [AtomicU64; 4],
    pub connects: AtomicU64,
    pub refused: AtomicU64,
    pub handed_over: AtomicU64,
}

pub const fn zone_size() -> usize {
    stats::table_size::<Row>()
}

fn table(z: &Zone) -> &[Row] {
    // SAFETY: the zone is made with `zone_size()` bytes; Row is made of atomics.
    unsafe { stats::rows::<Row>(z) }
}

/// One worker's writer.
#[derive(Clone)]
pub struct Stats {
    zone: Zone,
    slot: usize,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats").field("slot", &self.slot).finish()
    }
}

impl Stats {
    pub fn new(zone: Zone, slot: usize) -> Stats {
        let s = Stats { zone, slot };
        reap(&s.zone, slot);
        s
    }

    #[cfg(test)]
    pub fn zone(&self) -> Zone {
        self.zone.clone()
    }

    #[inline]
    fn row(&self) -> &Row {
        &table(&self.zone)[self.slot]
    }

    pub fn connected(&self, up: bool) {
        let r = self.row();
        if up {
            bump(&r.connected, 1);
            bump(&r.connects, 1);
        } else {
            drop_one(&r.connected);
        }
    }

    pub fn sessions(&self, n: usize) {
        self.row().sessions.store(n as u64, Ordering::Relaxed);
    }

    pub fn retained(&self, n: usize) {
        self.row().retained.store(n as u64, Ordering::Relaxed);
    }

    #[inline]
    pub fn received(&self, qos: u8) {
        bump(&self.row().received[usize::from(qos.min(2))], 1);
    }

    #[inline]
    pub fn sent(&self, qos: u8) {
        bump(&self.row().sent[usize::from(qos.min(2))], 1);
    }

    pub fn dropped(&self, why: Drop) {
        let i = DROPS.iter().position(|(d, _)| *d == why).unwrap_or(0);
        bump(&self.row().dropped[i], 1);
    }

    pub fn refused(&self) {
        bump(&self.row().refused, 1);
    }

    pub fn handed_over(&self) {
        bump(&self.row().handed_over, 1);
    }
}

/// The node's figures.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub connected: u64,
    pub sessions: u64,
    /// Every worker holds the whole retained store: the largest count, not the sum.
    pub retained: u64,
    pub received: [u64; 3],
    pub sent: [u64; 3],
    pub dropped: Vec<(&'static str, u64)>,
    pub connects: u64,
    pub refused: u64,
    pub handed_over: u64,
}

pub fn totals(zone: &Zone) -> Totals {
    let mut t = Totals {
        dropped: DROPS.iter().map(|(_, n)| (*n, 0)).collect(),
        ..Totals::default()
    };
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    for r in table(zone) {
        t.connected += get(&r.connected);
        t.sessions += get(&r.sessions);
        t.retained = t.retained.max(get(&r.retained));
        for q in 0..3 {
            t.received[q] += get(&r.received[q]);
            t.sent[q] += get(&r.sent[q]);
        }
        for (i, d) in t.dropped.iter_mut().enumerate() {
            d.1 += get(&r.dropped[i]);
        }
        t.connects += get(&r.connects);
        t.refused += get(&r.refused);
        t.handed_over += get(&r.handed_over);
    }
    t
}

/// Resets a worker's gauges (at its start, and by the master when it died).
pub fn reap(zone: &Zone, slot: usize) {
    let r = &table(zone)[slot];
    for g in [&r.connected, &r.sessions, &r.retained] {
        g.store(0, Ordering::Relaxed);
    }
}
