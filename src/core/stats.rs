//! Connection counters shared by all workers: a shared-memory zone with one row per worker
//! slot, written only by that worker and summed by whoever reads them (`/status`, `/metrics`).
//!
//! A row belongs to a worker slot, not a pid: when a worker is replaced its cumulative counts stay
//! (they are the node's totals since the master started); only its gauges are reset.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::shm::Zone;

/// Worker slots in a zone: twice the largest worker count, so old and new workers of a reload
/// both have rows.
pub const MAX_SLOTS: usize = 128;

/// The zone's name in the cycle.
pub const ZONE: &str = "core.stats";

#[repr(C)]
#[derive(Debug, Default)]
pub struct Row {
    pub pid: AtomicU64,
    pub accepted: AtomicU64,
    pub handled: AtomicU64,
    pub active: AtomicU64,
}

/// Size of a zone of one `R` per worker slot.
pub const fn table_size<R>() -> usize {
    std::mem::size_of::<R>() * MAX_SLOTS
}

/// A zone seen as one `R` per worker slot.
///
/// # Safety
/// The zone was made with [`table_size::<R>()`](table_size) bytes, and `R` is made of atomics
/// (valid when zero, shared through interior mutability only).
pub unsafe fn rows<R>(z: &Zone) -> &[R] {
    // SAFETY: the caller's promise, passed on.
    unsafe { z.as_slice::<R>(MAX_SLOTS) }
}

/// Size of the zone to ask for.
pub const fn zone_size() -> usize {
    table_size::<Row>()
}

fn table(z: &Zone) -> &[Row] {
    // SAFETY: the zone is made with `zone_size()` bytes; Row is made of atomics.
    unsafe { rows::<Row>(z) }
}

/// Adds one to a counter only this process writes: a plain load and store, no locked operation.
#[inline]
pub fn bump(c: &AtomicU64, by: u64) {
    c.store(
        c.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

#[inline]
pub fn drop_one(c: &AtomicU64) {
    c.store(
        c.load(Ordering::Relaxed).saturating_sub(1),
        Ordering::Relaxed,
    );
}

/// One worker's writer.
#[derive(Debug, Clone)]
pub struct ConnStats {
    zone: Zone,
    slot: usize,
}

impl ConnStats {
    pub fn new(zone: Zone, slot: usize) -> ConnStats {
        let s = ConnStats { zone, slot };
        let row = s.row();
        row.pid.store(std::process::id() as u64, Ordering::Relaxed);
        row.active.store(0, Ordering::Relaxed);
        s
    }

    #[inline]
    fn row(&self) -> &Row {
        &table(&self.zone)[self.slot]
    }

    #[inline]
    pub fn accepted(&self) {
        let r = self.row();
        bump(&r.accepted, 1);
        bump(&r.active, 1);
    }

    #[inline]
    pub fn handled(&self) {
        bump(&self.row().handled, 1);
    }

    /// A connection another worker accepted and handed over.
    pub fn adopted(&self) {
        bump(&self.row().active, 1);
    }

    #[inline]
    pub fn closed(&self) {
        drop_one(&self.row().active);
    }
}

/// Totals over every row.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub accepted: u64,
    pub handled: u64,
    pub active: u64,
}

pub fn totals(zone: &Zone) -> Totals {
    let mut t = Totals::default();
    for r in table(zone) {
        t.accepted += r.accepted.load(Ordering::Relaxed);
        t.handled += r.handled.load(Ordering::Relaxed);
        t.active += r.active.load(Ordering::Relaxed);
    }
    t
}

/// Per-worker rows that have ever been used: `(slot, pid, accepted, active)`.
pub fn per_worker(zone: &Zone) -> Vec<(usize, u64, u64, u64)> {
    table(zone)
        .iter()
        .enumerate()
        .filter(|(_, r)| r.pid.load(Ordering::Relaxed) != 0)
        .map(|(i, r)| {
            (
                i,
                r.pid.load(Ordering::Relaxed),
                r.accepted.load(Ordering::Relaxed),
                r.active.load(Ordering::Relaxed),
            )
        })
        .collect()
}

/// The master resets a dead worker's gauges (it could not).
pub fn reap(zone: &Zone, slot: usize) {
    let r = &table(zone)[slot];
    r.active.store(0, Ordering::Relaxed);
}
