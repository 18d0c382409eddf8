//! The ingest hook on the worker's event loop ([`crate::mqtt::ingest::Ingest`]): every PUBLISH
//! on a sensor topic is decoded here, at once; a malformed one is counted and logged (once per
//! sensor per minute) and goes no further; a valid one joins the loop turn's batch, its
//! acknowledgement held. At the end of a loop turn, when the writer on the worker's I/O thread
//! ([`super::writer`]) holds no reports, what the turns gathered goes to it, cut into batches of
//! `ingest.max_batch`; when a batch is committed, its held acknowledgements leave ([`Acks`]).
//! This is a group commit: a lone report waits for nothing, and under a flood each commit's wait
//! gathers the next batch, so batches grow with the load instead of staying one loop turn's
//! worth (a few reports) each waiting for its own commit.
//!
//! The hook takes at most [`MAX_QUEUED`] reports that are not yet committed: past that, the
//! broker stops reading PUBLISH packets until the writer catches up (TCP back-pressure, never
//! unbounded memory). Messages on other topics are not its business: acknowledged at once.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::core::process::WorkerCtx;
use crate::log;
use crate::modules::ingest::batch::Report;
use crate::modules::ingest::decode::{decode, DecodeError, Rejected, SensorTopic};
use crate::modules::ingest::login::SensorAuthority;
use crate::modules::ingest::stats::Stats;
use crate::modules::ingest::worker::{WorkerDb, WorkerDbSlot};
use crate::modules::live::Bus;
use crate::mqtt::auth::{Authority, FileAuthority, Verdicts};
use crate::mqtt::codec::QoS;
use crate::mqtt::ingest::{Ack, Acks, Ingest, Origin, Outbox};
use crate::mqtt::session::Message;

/// Reports taken and not yet committed, past which the broker stops reading publishes.
pub const MAX_QUEUED: usize = 20_000;
/// A sensor's malformed payloads are logged at most once in this long.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The worker's ingest hook.
pub struct IngestHook {
    db: Rc<WorkerDb>,
    /// `ingest.max_batch`: most reports in one transaction.
    max_batch: usize,
    /// This loop turn's reports.
    batch: Vec<Report>,
    /// When each sensor's last malformed payload was logged.
    logged: HashMap<String, Instant>,
    stats: Stats,
    /// The worker's bus of occupancy changes, fed with every retained occupancy kept.
    live: Option<Rc<Bus>>,
}

impl IngestHook {
    /// The hook over the worker's I/O thread, handing it at most `max_batch` reports per
    /// transaction; committed tickets are completed through `acks`, changed occupancy is
    /// published through `outbox`.
    pub fn new(db: Rc<WorkerDb>, acks: &Acks, outbox: &Outbox, max_batch: usize) -> IngestHook {
        db.attach(acks, outbox);
        let stats = db.stats().clone();
        IngestHook {
            db,
            // Validated >= 1; a 0 here would drop every batch it was given.
            max_batch: max_batch.max(1),
            batch: Vec::new(),
            logged: HashMap::new(),
            stats,
            live: None,
        }
    }

    /// Logs a malformed payload, once per sensor per [`LOG_EVERY`].
    fn rejected(&mut self, topic: &str, payload: &[u8], e: &DecodeError) {
        let DecodeError::Malformed(reason) = e else {
            return;
        };
        self.stats.rejected(reason.as_str());
        let Some(t) = SensorTopic::parse(topic) else {
            return;
        };
        let now = Instant::now();
        if self
            .logged
            .get(t.device_id)
            .is_some_and(|at| now.duration_since(*at) < LOG_EVERY)
        {
            return;
        }
        if self.logged.len() > 100_000 {
            self.logged
                .retain(|_, at| now.duration_since(*at) < LOG_EVERY);
        }
        self.logged.insert(t.device_id.to_string(), now);
        let line = Rejected {
            device_id: t.device_id,
            topic,
            payload,
            reason,
        };
        log!(Warn, "{line}");
    }
}

impl Ingest for IngestHook {
    fn retained(&mut self, msg: &Message) {
        let Some(live) = &self.live else {
            return;
        };
        let hive = msg
            .topic
            .strip_prefix("hives/")
            .and_then(|t| t.strip_suffix("/occupancy"))
            .and_then(|id| id.parse::<i64>().ok());
        if let Some(hive) = hive {
            live.changed(hive, msg.payload.clone());
        }
    }

    fn publish(&mut self, _origin: Origin<'_>, msg: &Message, ticket: u64) -> Ack {
        let (topic, payload) = match decode(&msg.topic, &msg.payload) {
            Ok(d) => d,
            Err(e) => {
                self.rejected(&msg.topic, &msg.payload, &e);
                return Ack::Now;
            }
        };
        if !topic.channel.sent_by_sensor() {
            return Ack::Now;
        }
        let held = msg.qos != QoS::AtMostOnce;
        self.stats.accepted();
        self.batch.push(Report {
            ticket: held.then_some(ticket),
            device_id: topic.device_id.to_string(),
            payload,
            raw: msg.payload.to_vec(),
            received_at: std::time::SystemTime::now().into(),
        });
        if held {
            Ack::Later
        } else {
            Ack::Now
        }
    }

    fn flush(&mut self) {
        // Group commit: while the writer holds reports, the turns gather the next batch.
        if self.db.queued() > 0 {
            return;
        }
        // Cut into batches by moving each report once: `max_batch = 1` must not turn a busy
        // turn into a quadratic copy.
        let mut pending = std::mem::take(&mut self.batch).into_iter();
        loop {
            let batch: Vec<Report> = pending.by_ref().take(self.max_batch).collect();
            if batch.is_empty() {
                return;
            }
            if let Err(back) = self.db.store(batch) {
                // The writer's queue is full: this turn's reports wait for the next turn.
                self.batch = back;
                self.batch.extend(pending);
                return;
            }
        }
    }

    fn has_room(&self) -> bool {
        self.batch.len() + self.db.queued() < MAX_QUEUED
    }

    fn busy(&self) -> bool {
        !self.batch.is_empty() || self.db.queued() > 0
    }
}

/// The MQTT hooks of the ingest module: with a `[database]` section, every worker gets an
/// [`IngestHook`] on the worker's I/O thread; without one, MQTT runs as a plain broker.
pub struct IngestHooks {
    worker: Rc<WorkerDbSlot>,
    live: Rc<Bus>,
}

impl IngestHooks {
    /// Hooks on the worker's I/O thread that `worker` starts (shared with the HTTP API).
    /// Every retained occupancy the worker keeps goes to `live`, the worker's bus.
    pub fn new(worker: Rc<WorkerDbSlot>, live: Rc<Bus>) -> IngestHooks {
        IngestHooks { worker, live }
    }

    fn worker(&self, ctx: &WorkerCtx<'_>) -> Option<Rc<WorkerDb>> {
        self.worker.start(ctx)
    }
}

impl crate::mqtt::service::Hooks for IngestHooks {
    /// With a database, sensors log in from it ([`SensorAuthority`]); the files answer for
    /// everyone else.
    fn authority(
        &self,
        ctx: &WorkerCtx<'_>,
        files: Rc<FileAuthority>,
        verdicts: &Verdicts,
    ) -> Rc<dyn Authority> {
        match self.worker(ctx) {
            Some(db) => SensorAuthority::start(db, files, verdicts),
            None => files,
        }
    }

    fn ingest(&self, ctx: &WorkerCtx<'_>, acks: &Acks, outbox: &Outbox) -> Box<dyn Ingest> {
        match self.worker(ctx) {
            Some(db) => {
                let max_batch = db.max_batch();
                let mut hook = IngestHook::new(db, acks, outbox, max_batch);
                hook.live = Some(Rc::clone(&self.live));
                Box::new(hook)
            }
            None => Box::new(crate::mqtt::ingest::NoIngest),
        }
    }
}
