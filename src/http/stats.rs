//! HTTP counters shared by all workers (stub_status's figures and requests by status), one row
//! per worker slot in a shared-memory zone, written only by that worker.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::shm::Zone;
use crate::core::stats::{self, bump, drop_one};

pub const ZONE: &str = "http.stats";

/// Statuses 100..=599 are counted one by one.
const CODES: usize = 500;

#[repr(C)]
pub struct Row {
    pub requests: AtomicU64,
    pub reading: AtomicU64,
    pub writing: AtomicU64,
    pub waiting: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub by_status: [AtomicU64; CODES],
}

pub const fn zone_size() -> usize {
    stats::table_size::<Row>()
}

fn table(z: &Zone) -> &[Row] {
    // SAFETY: the zone is made with `zone_size()` bytes; Row is made of atomics.
    unsafe { stats::rows::<Row>(z) }
}

/// What a connection is doing, for the stub_status gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    None,
    Reading,
    Writing,
    Waiting,
}

/// One worker's writer.
#[derive(Clone)]
pub struct Stats {
    zone: Zone,
    slot: usize,
}

impl Stats {
    pub fn new(zone: Zone, slot: usize) -> Stats {
        let s = Stats { zone, slot };
        let r = s.row();
        for g in [&r.reading, &r.writing, &r.waiting] {
            g.store(0, Ordering::Relaxed);
        }
        s
    }

    #[inline]
    fn row(&self) -> &Row {
        &table(&self.zone)[self.slot]
    }

    fn gauge(&self, s: State) -> Option<&AtomicU64> {
        let r = self.row();
        match s {
            State::None => None,
            State::Reading => Some(&r.reading),
            State::Writing => Some(&r.writing),
            State::Waiting => Some(&r.waiting),
        }
    }

    #[inline]
    pub fn transition(&self, from: State, to: State) {
        if from == to {
            return;
        }
        if let Some(g) = self.gauge(from) {
            drop_one(g);
        }
        if let Some(g) = self.gauge(to) {
            bump(g, 1);
        }
    }

    #[inline]
    pub fn request(&self, status: u16, bytes: u64) {
        let r = self.row();
        bump(&r.requests, 1);
        bump(&r.bytes_sent, bytes);
        if (100..600).contains(&status) {
            bump(&r.by_status[status as usize - 100], 1);
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub requests: u64,
    pub reading: u64,
    pub writing: u64,
    pub waiting: u64,
    pub bytes_sent: u64,
    /// (status, count) for every status seen.
    pub by_status: Vec<(u16, u64)>,
}

pub fn totals(zone: &Zone) -> Totals {
    let mut t = Totals::default();
    let mut codes = [0u64; CODES];
    for r in table(zone) {
        t.requests += r.requests.load(Ordering::Relaxed);
        t.reading += r.reading.load(Ordering::Relaxed);
        t.writing += r.writing.load(Ordering::Relaxed);
        t.waiting += r.waiting.load(Ordering::Relaxed);
        t.bytes_sent += r.bytes_sent.load(Ordering::Relaxed);
        for (c, v) in codes.iter_mut().zip(r.by_status.iter()) {
            *c += v.load(Ordering::Relaxed);
        }
    }
    t.by_status = codes
        .iter()
        .enumerate()
        .filter(|(_, v)| **v > 0)
        .map(|(i, v)| (i as u16 + 100, *v))
        .collect();
    t
}

/// The master resets a dead worker's gauges.
pub fn reap(zone: &Zone, slot: usize) {
    let r = &table(zone)[slot];
    for g in [&r.reading, &r.writing, &r.waiting] {
        g.store(0, Ordering::Relaxed);
    }
}
