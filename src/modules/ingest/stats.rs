//! Ingest counters shared by all workers for `/metrics`: one row per worker slot in a
//! shared-memory zone, written only by that worker, summed by the reader. Each field has one
//! writing thread: the loop thread's ingest hook, or (the spool's figures) the I/O thread.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::shm::Zone;
use crate::core::stats::{self, bump};
use crate::modules::ingest::batch::Stored;

pub const ZONE: &str = "ingest.stats";

/// Why a sensor message was not taken, as `bizzy_ingest_rejected_total{reason=...}` says it:
/// the decoders' reasons (PROTOCOL.md), then the store's.
pub const REASONS: [&str; 9] = [
    "length",
    "marker",
    "version",
    "reserved",
    "event_type",
    "event_count",
    "range",
    "unknown_sensor",
    "mode_mismatch",
];

#[repr(C)]
pub struct Row {
    /// Valid reports taken from MQTT.
    pub accepted: AtomicU64,
    pub rejected: [AtomicU64; REASONS.len()],
    /// Reports committed, and duplicates among them (stored once, before).
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    /// Batches committed, and the reports in them.
    pub batches: AtomicU64,
    pub batched: AtomicU64,
    /// Reports handed to the writer and not yet committed (a gauge).
    pub queued: AtomicU64,
    /// Receive to commit of the last batch's oldest report, in milliseconds (a gauge).
    pub lag_ms: AtomicU64,
    /// Reports acknowledged once appended to a spool (PostgreSQL unreachable).
    pub spooled: AtomicU64,
    /// Reports and bytes waiting in the spool files this worker holds (gauges; I/O thread).
    pub spool_reports: AtomicU64,
    pub spool_bytes: AtomicU64,
    /// Spooled reports committed on replay, duplicates among them, those of no sensor and
    /// those not in their sensor's counting mode (I/O thread).
    pub replayed: AtomicU64,
    pub replayed_duplicates: AtomicU64,
    pub replayed_unknown: AtomicU64,
    pub replayed_mode_mismatch: AtomicU64,
    /// Database connections of the worker's I/O thread pool handed out, and tasks waiting for
    /// one (I/O thread).
    pub db_in_use: AtomicU64,
    pub db_waiting: AtomicU64,
    /// Jobs handed to the I/O thread and not yet answered (loop thread).
    pub io_jobs: AtomicU64,
    /// 1 while this worker's LISTEN connection is lost: PostgreSQL is probably unreachable
    /// (loop thread).
    pub db_lost: AtomicU64,
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

    fn row(&self) -> &Row {
        &table(&self.zone)[self.slot]
    }

    /// The worker slot whose row this is.
    pub fn slot(&self) -> usize {
        self.slot
    }

    pub fn accepted(&self) {
        bump(&self.row().accepted, 1);
    }

    /// A message refused for `reason` (one of [`REASONS`]).
    pub fn rejected(&self, reason: &str) {
        let i = REASONS.iter().position(|r| *r == reason).unwrap_or(0);
        bump(&self.row().rejected[i], 1);
    }

    /// A batch committed: what became of its reports, and how long the oldest waited. A
    /// spooled batch is not committed: only its reports are counted, as spooled.
    pub fn committed(&self, stored: &[Stored], lag_ms: u64) {
        let r = self.row();
        let spooled = stored.iter().filter(|s| **s == Stored::Spooled).count() as u64;
        if spooled > 0 {
            bump(&r.spooled, spooled);
            if spooled == stored.len() as u64 {
                return;
            }
        }
        bump(&r.batches, 1);
        bump(&r.batched, stored.len() as u64);
        for s in stored {
            match s {
                Stored::Stored => bump(&r.stored, 1),
                Stored::Duplicate => {
                    bump(&r.stored, 1);
                    bump(&r.duplicates, 1);
                }
                Stored::UnknownSensor => self.rejected("unknown_sensor"),
                Stored::ModeMismatch => {
                    bump(&r.stored, 1);
                    self.rejected("mode_mismatch");
                }
                Stored::Spooled => {}
            }
        }
        r.lag_ms.store(lag_ms, Ordering::Relaxed);
    }

    /// A spooled record committed on replay (called on the I/O thread).
    pub fn replayed(&self, stored: &[Stored]) {
        let r = self.row();
        for s in stored {
            match s {
                Stored::Stored => bump(&r.replayed, 1),
                Stored::Duplicate => {
                    bump(&r.replayed, 1);
                    bump(&r.replayed_duplicates, 1);
                }
                Stored::UnknownSensor => bump(&r.replayed_unknown, 1),
                Stored::ModeMismatch => {
                    bump(&r.replayed, 1);
                    bump(&r.replayed_mode_mismatch, 1);
                }
                Stored::Spooled => {}
            }
        }
    }

    /// The spool depth: reports and bytes waiting in the files this worker holds (called on
    /// the I/O thread).
    pub fn spool(&self, reports: u64, bytes: u64) {
        let r = self.row();
        r.spool_reports.store(reports, Ordering::Relaxed);
        r.spool_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The I/O thread's database connections: handed out, and tasks waiting for one.
    pub fn pool(&self, in_use: usize, waiting: usize) {
        let r = self.row();
        r.db_in_use.store(in_use as u64, Ordering::Relaxed);
        r.db_waiting.store(waiting as u64, Ordering::Relaxed);
    }

    /// Jobs out on the I/O thread.
    pub fn io_jobs(&self, n: usize) {
        self.row().io_jobs.store(n as u64, Ordering::Relaxed);
    }

    pub fn queued(&self, n: usize) {
        self.row().queued.store(n as u64, Ordering::Relaxed);
    }

    /// Whether this worker's LISTEN connection is lost (PostgreSQL probably unreachable).
    pub fn db_lost(&self, lost: bool) {
        self.row().db_lost.store(u64::from(lost), Ordering::Relaxed);
    }
}

/// Whether the node's numbers may be behind PostgreSQL's: reports wait in a spool, or a
/// worker lost its LISTEN connection. Cheap enough for an answer's making, not for every
/// request.
pub fn behind(zone: &Zone) -> bool {
    table(zone).iter().any(|r| {
        r.spool_reports.load(Ordering::Relaxed) > 0 || r.db_lost.load(Ordering::Relaxed) > 0
    })
}

/// The node's figures.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub accepted: u64,
    pub rejected: Vec<(&'static str, u64)>,
    pub stored: u64,
    pub duplicates: u64,
    pub batches: u64,
    pub batched: u64,
    pub queued: u64,
    /// The largest of the workers' last lags.
    pub lag_ms: u64,
    pub spooled: u64,
    pub spool_reports: u64,
    pub spool_bytes: u64,
    pub db_in_use: u64,
    pub db_waiting: u64,
    pub io_jobs: u64,
}

pub fn totals(zone: &Zone) -> Totals {
    let mut t = Totals {
        rejected: REASONS.iter().map(|r| (*r, 0)).collect(),
        ..Totals::default()
    };
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    for r in table(zone) {
        t.accepted += get(&r.accepted);
        for (i, x) in t.rejected.iter_mut().enumerate() {
            x.1 += get(&r.rejected[i]);
        }
        t.stored += get(&r.stored);
        t.duplicates += get(&r.duplicates);
        t.batches += get(&r.batches);
        t.batched += get(&r.batched);
        t.queued += get(&r.queued);
        t.lag_ms = t.lag_ms.max(get(&r.lag_ms));
        t.spooled += get(&r.spooled);
        t.spool_reports += get(&r.spool_reports);
        t.spool_bytes += get(&r.spool_bytes);
        t.db_in_use += get(&r.db_in_use);
        t.db_waiting += get(&r.db_waiting);
        t.io_jobs += get(&r.io_jobs);
        t.stored += get(&r.replayed);
        t.duplicates += get(&r.replayed_duplicates);
        for (reason, n) in [
            ("unknown_sensor", &r.replayed_unknown),
            ("mode_mismatch", &r.replayed_mode_mismatch),
        ] {
            if let Some(x) = t.rejected.iter_mut().find(|x| x.0 == reason) {
                x.1 += get(n);
            }
        }
    }
    t
}

/// Resets a worker's gauges (at its start, and by the master when it died).
pub fn reap(zone: &Zone, slot: usize) {
    let r = &table(zone)[slot];
    for g in [
        &r.queued,
        &r.lag_ms,
        &r.spool_reports,
        &r.spool_bytes,
        &r.db_in_use,
        &r.db_waiting,
        &r.io_jobs,
        &r.db_lost,
    ] {
        g.store(0, Ordering::Relaxed);
    }
}
