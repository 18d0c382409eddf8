//! The public reads' figures for `/metrics`: one row per worker slot in a shared-memory zone,
//! written only by that worker's loop, summed by the reader.
//!
//! ```text
//!   bizzy_cache_answers_total{how="fresh"}     answered from the worker's copy, younger than micro_ttl
//!   bizzy_cache_answers_total{how="expired"}   answered from an expired copy while it is refreshed
//!   bizzy_cache_answers_total{how="waited"}    no copy: the request waited for the I/O thread
//!   bizzy_cache_reads_total{from="replica"}    reads (refreshes and waits) the replica answered
//!   bizzy_cache_reads_total{from="database"}   ... PostgreSQL answered (memcached missed or down)
//!   bizzy_cache_reads_total{from="none"}       ... nobody answered (the copy kept, marked stale)
//!   bizzy_live_streams                          live streams open (a gauge, zeroed when a worker exits)
//!   bizzy_live_events_total                     occupancy events sent on them
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::shm::Zone;
use crate::core::stats::{self, bump};

pub const ZONE: &str = "api.stats";

#[repr(C)]
pub struct Row {
    pub fresh: AtomicU64,
    pub expired: AtomicU64,
    pub waited: AtomicU64,
    pub replica: AtomicU64,
    pub database: AtomicU64,
    pub none: AtomicU64,
    pub streams: AtomicU64,
    pub events: AtomicU64,
}

pub const fn zone_size() -> usize {
    stats::table_size::<Row>()
}

fn table(z: &Zone) -> &[Row] {
    // SAFETY: the zone is made with `zone_size()` bytes; Row is made of atomics.
    unsafe { stats::rows::<Row>(z) }
}

/// How a public read was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    Fresh,
    Expired,
    Waited,
}

/// Who answered a read on the I/O thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Replica,
    Database,
    Nobody,
}

/// One worker's row.
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
        Stats { zone, slot }
    }

    fn row(&self) -> &Row {
        &table(&self.zone)[self.slot]
    }

    pub fn answered(&self, how: Answered) {
        let r = self.row();
        bump(
            match how {
                Answered::Fresh => &r.fresh,
                Answered::Expired => &r.expired,
                Answered::Waited => &r.waited,
            },
            1,
        );
    }

    /// Live streams open on this worker now.
    pub fn streams(&self, n: usize) {
        self.row().streams.store(n as u64, Ordering::Relaxed);
    }

    /// An event went out on a live stream.
    pub fn event(&self) {
        bump(&self.row().events, 1);
    }

    pub fn read(&self, from: Source) {
        let r = self.row();
        bump(
            match from {
                Source::Replica => &r.replica,
                Source::Database => &r.database,
                Source::Nobody => &r.none,
            },
            1,
        );
    }
}

/// The node's figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub fresh: u64,
    pub expired: u64,
    pub waited: u64,
    pub replica: u64,
    pub database: u64,
    pub none: u64,
    pub streams: u64,
    pub events: u64,
}

/// A worker exited: its gauge goes (its counters stay in the totals).
pub fn reap(zone: &Zone, slot: usize) {
    table(zone)[slot].streams.store(0, Ordering::Relaxed);
}

pub fn totals(zone: &Zone) -> Totals {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    table(zone).iter().fold(Totals::default(), |t, r| Totals {
        fresh: t.fresh + get(&r.fresh),
        expired: t.expired + get(&r.expired),
        waited: t.waited + get(&r.waited),
        replica: t.replica + get(&r.replica),
        database: t.database + get(&r.database),
        none: t.none + get(&r.none),
        streams: t.streams + get(&r.streams),
        events: t.events + get(&r.events),
    })
}
