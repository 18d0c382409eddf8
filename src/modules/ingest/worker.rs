//! The event loop's side of the worker's I/O thread, shared by every hook of the worker that
//! needs the database: the ingest hook sends its batches through it, the sensor authority its
//! lookups. One thread per worker, started by whichever hook asks first; each answer is handed
//! to the part that asked, on the loop thread.

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;

use crate::core::io::Io;
use crate::core::process::WorkerCtx;
use crate::core::queue::SendError;
use crate::modules::database::DatabaseConf;
use crate::modules::ingest::conf::IngestConf;
use crate::modules::ingest::stats::{self, Stats};
use crate::modules::ingest::writer::{Answer, Done, Job, Writer};
use crate::mqtt::ingest::Acks;

/// The loop's side of the worker's I/O thread.
pub struct WorkerDb {
    io: RefCell<Io<Writer>>,
    parts: Rc<Parts>,
}

/// Who gets the answers: filled in as the hooks are made.
struct Parts {
    /// The broker's held acknowledgements, once the ingest hook is made.
    acks: OnceCell<Acks>,
    /// Reports sent to the writer and not yet answered.
    queued: Cell<usize>,
    stats: Stats,
}

impl WorkerDb {
    /// Starts the worker's I/O thread.
    pub fn start(
        ctx: &WorkerCtx<'_>,
        db: &DatabaseConf,
        conf: &IngestConf,
    ) -> std::io::Result<Rc<WorkerDb>> {
        let zone = ctx.zones.get(stats::ZONE).ok_or_else(|| {
            std::io::Error::other("the ingest stats zone was not made for this cycle")
        })?;
        let parts = Rc::new(Parts {
            acks: OnceCell::new(),
            queued: Cell::new(0),
            stats: Stats::new(zone.clone(), ctx.slot),
        });
        let on_answer = {
            let parts = Rc::clone(&parts);
            move |d: Done| match d {
                Done::Stored(a) => parts.stored(a),
            }
        };
        let (url, dir) = (db.url.clone(), db.spool_dir.clone());
        let (conf, stats) = (conf.clone(), parts.stats.clone());
        let make = move || Writer::new(url, dir, conf, stats);
        let name = format!("bizzy-io-{}", ctx.slot);
        let io = Io::start(&name, make, &ctx.posted, on_answer)?;
        Ok(Rc::new(WorkerDb {
            io: RefCell::new(io),
            parts,
        }))
    }

    /// The ingest hook's acknowledgements: committed tickets are completed through them.
    pub fn set_acks(&self, acks: &Acks) {
        let _ = self.parts.acks.set(acks.clone());
    }

    pub fn stats(&self) -> &Stats {
        &self.parts.stats
    }

    /// Hands a job to the I/O thread; a full pipe hands it back (back-pressure).
    pub fn send(&self, job: Job) -> Result<(), SendError<Job>> {
        let n = match &job {
            Job::Store(r) => r.len(),
        };
        self.io.borrow_mut().send(job)?;
        if n > 0 {
            self.parts.queued.set(self.parts.queued.get() + n);
            self.parts.stats.queued(self.parts.queued.get());
        }
        Ok(())
    }

    /// Reports handed to the writer and not yet committed.
    pub fn queued(&self) -> usize {
        self.parts.queued.get()
    }

    /// Jobs sent and not yet answered: a draining worker waits for them.
    pub fn in_flight(&self) -> usize {
        self.io.borrow().in_flight()
    }
}

impl Parts {
    fn stored(&self, a: Answer) {
        self.queued
            .set(self.queued.get().saturating_sub(a.tickets.len()));
        self.stats.queued(self.queued.get());
        let now: chrono::DateTime<chrono::Utc> = std::time::SystemTime::now().into();
        let lag = a
            .oldest
            .map_or(0, |t| (now - t).num_milliseconds().max(0) as u64);
        self.stats.committed(&a.written.stored, lag);
        if let Some(acks) = self.acks.get() {
            for t in a.tickets.into_iter().flatten() {
                acks.durable(t);
            }
        }
    }
}
