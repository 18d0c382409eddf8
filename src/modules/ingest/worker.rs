//! The event loop's side of the worker's I/O thread, shared by every hook of the worker that
//! needs the database: the ingest hook sends its batches through it, the sensor authority its
//! lookups. One thread per worker, started by whichever hook asks first; each answer is handed
//! to the part that asked, on the loop thread. On one worker per node (slot 0) it also follows
//! the other nodes' occupancy ([`OtherNodes`]) and the new configurations ([`push::Configs`]).

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use crate::core::every::every;
use crate::core::io::Io;
use crate::core::process::WorkerCtx;
use crate::core::queue::SendError;
use crate::log;
use crate::modules::cache::CacheConf;
use crate::modules::database::listen::{Hear, Hearers, Missed};
use crate::modules::database::query::{Asked, Fetch, Pending, Queries, Query, Read, Run};
use crate::modules::database::DatabaseConf;
use crate::modules::ingest::batch::Report;
use crate::modules::ingest::conf::IngestConf;
use crate::modules::ingest::login::{self, store::Reply};
use crate::modules::ingest::push::{self, Configs, Published, Push, SensorEar};
use crate::modules::ingest::stats::{self, Stats};
use crate::modules::ingest::writer::{Answer, Done, Job, Retained, Setup, Writer};
use crate::modules::occupancy::{self, Occupancy};
use crate::mqtt::codec::QoS;
use crate::mqtt::ingest::{Acks, Outbox};
use crate::mqtt::session::Message;

/// How often one worker per node runs the periodic database work: a hive with no report is
/// reset, and a silent sensor's hive shown degraded, within this long.
pub const MAINTAIN_EVERY: Duration = Duration::from_secs(30);
/// Partitions and pruning every this many runs (hourly).
const HOUSEKEEPING_EVERY: u32 = 120;

/// The loop's side of the worker's I/O thread.
pub struct WorkerDb {
    io: RefCell<Io<Writer>>,
    /// `ingest.max_batch`.
    max_batch: usize,
    parts: Rc<Parts>,
    /// The followers this worker keeps alive ([`WorkerDb::follow`]; the listener holds them
    /// weakly).
    followers: RefCell<Vec<Rc<dyn Hear>>>,
}

/// The worker's I/O thread as the cycle's parts share it (the MQTT hooks, the HTTP API): made
/// in the master with the configuration, started in the worker by the first part that needs it.
pub struct WorkerDbSlot {
    database: Option<(DatabaseConf, IngestConf)>,
    worker: OnceCell<Option<Rc<WorkerDb>>>,
}

impl WorkerDbSlot {
    /// With a `[database]` section the workers get an I/O thread; without, none.
    pub fn new(conf: &crate::core::config::Conf) -> WorkerDbSlot {
        let database = conf.written::<DatabaseConf>().then(|| {
            (
                conf.section::<DatabaseConf>().clone(),
                conf.section::<IngestConf>().clone(),
            )
        });
        WorkerDbSlot {
            database,
            worker: OnceCell::new(),
        }
    }

    /// The `[database]` section, when there is one.
    pub fn conf(&self) -> Option<&DatabaseConf> {
        self.database.as_ref().map(|(db, _)| db)
    }

    /// The worker's I/O thread, started on the first call (after fork): `None` without
    /// `[database]`, or when it cannot start (logged once).
    pub fn start(&self, ctx: &WorkerCtx<'_>) -> Option<Rc<WorkerDb>> {
        self.worker
            .get_or_init(|| {
                let (db, conf) = self.database.as_ref()?;
                WorkerDb::start(ctx, db, conf)
                    .map_err(|e| {
                        log!(
                            Crit,
                            "cannot start the worker's I/O thread ({e}): reports are not stored \
                             and the API answers 503"
                        )
                    })
                    .ok()
            })
            .clone()
    }

    /// The I/O thread if it was started.
    pub fn get(&self) -> Option<Rc<WorkerDb>> {
        self.worker.get().cloned().flatten()
    }
}

/// Who gets the answers: filled in as the hooks are made.
struct Parts {
    /// The broker's held acknowledgements and the server's own messages, once the ingest hook
    /// is made.
    acks: OnceCell<Acks>,
    outbox: OnceCell<Outbox>,
    /// Reports sent to the writer and not yet answered.
    queued: Cell<usize>,
    /// Jobs sent to the I/O thread and not yet answered.
    jobs: Cell<usize>,
    /// The periodic work is out: the next tick does not send it again.
    maintaining: Cell<bool>,
    stats: Stats,
    /// The sensor authority's answers, once it is made.
    logins: OnceCell<Box<dyn Fn(Reply)>>,
    /// Who follows each LISTEN channel.
    hearers: Hearers,
    /// The questions parked HTTP requests wait for.
    queries: Queries,
    /// The newest configuration published per sensor.
    published: Published,
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
            outbox: OnceCell::new(),
            queued: Cell::new(0),
            jobs: Cell::new(0),
            maintaining: Cell::new(false),
            stats: Stats::new(zone.clone(), ctx.slot),
            logins: OnceCell::new(),
            hearers: Hearers::default(),
            queries: Queries::default(),
            published: Published::default(),
        });
        let on_answer = {
            let parts = Rc::clone(&parts);
            move |d: Done| {
                if !d.is_news() {
                    parts.jobs.set(parts.jobs.get().saturating_sub(1));
                    parts.stats.io_jobs(parts.jobs.get());
                }
                parts.answered(d);
            }
        };
        let node = node_name();
        let setup = Setup {
            url: db.url.clone(),
            spool_dir: db.spool_dir.clone(),
            conf: conf.clone(),
            stats: parts.stats.clone(),
            node: node.clone(),
            // The worker that runs the periodic work applies what the master could not.
            migrate: ctx.slot == 0 && db.migrate_on_start,
            other_nodes: ctx.slot == 0,
            pool_size: db.pool_size,
            memcached: if ctx.conf.written::<CacheConf>() {
                ctx.conf.section::<CacheConf>().memcached.clone()
            } else {
                Vec::new()
            },
        };
        let make = move || Writer::new(setup);
        let name = format!("bizzy-io-{}", ctx.slot);
        let mut io = Io::start(&name, make, &ctx.posted, on_answer)?;
        // A worker starts with no retained messages unless a sibling has them: the server's
        // own come from the database (a node starting, a lone worker respawned, an upgrade).
        match io.send(Job::Retained) {
            Ok(()) => parts.sent(),
            Err(_) => log!(Crit, "ingest: the I/O thread took no request at start"),
        }
        let db = Rc::new(WorkerDb {
            io: RefCell::new(io),
            max_batch: conf.max_batch,
            parts,
            followers: RefCell::default(),
        });
        if ctx.slot == 0 {
            db.maintain_every(&ctx.posted);
            db.follow(node);
        }
        Ok(db)
    }

    /// What one worker per node follows: the other nodes' occupancy changes, republished
    /// here, and the new configurations, published here for the whole node (with the sensor
    /// logins, for what it published).
    fn follow(self: &Rc<Self>, node: String) {
        let followers: [(&str, Rc<dyn Hear>); 3] = [
            (occupancy::CHANNEL, OtherNodes::new(self, node)),
            (push::CHANNEL, Configs::new(self)),
            (login::CHANNEL, SensorEar::new(self)),
        ];
        for (channel, f) in followers {
            self.hear(channel, Rc::downgrade(&f));
            self.followers.borrow_mut().push(f);
        }
    }

    /// Sends the periodic work ([`Job::Maintain`]) every [`MAINTAIN_EVERY`], the housekeeping
    /// every [`HOUSEKEEPING_EVERY`]th time from the first: one worker per node does it.
    fn maintain_every(self: &Rc<Self>, posted: &crate::core::event::Posted) {
        let db = Rc::downgrade(self);
        let mut ticks = 0u32;
        every(posted, Duration::from_secs(1), move || {
            let Some(db) = db.upgrade() else {
                return MAINTAIN_EVERY;
            };
            if !db.parts.maintaining.get() {
                let housekeeping = ticks % HOUSEKEEPING_EVERY == 0;
                if db.send(Job::Maintain { housekeeping }).is_ok() {
                    db.parts.maintaining.set(true);
                    ticks = ticks.wrapping_add(1);
                }
            }
            MAINTAIN_EVERY
        });
    }

    /// The ingest hook's handles: committed tickets are completed through `acks`, changed
    /// occupancy is published through `outbox`.
    pub fn attach(&self, acks: &Acks, outbox: &Outbox) {
        let _ = self.parts.acks.set(acks.clone());
        let _ = self.parts.outbox.set(outbox.clone());
    }

    /// `ingest.max_batch`.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    pub fn stats(&self) -> &Stats {
        &self.parts.stats
    }

    /// Where the sensor authority's answers go.
    pub fn set_logins(&self, to: impl Fn(Reply) + 'static) {
        let _ = self.parts.logins.set(Box::new(to));
    }

    /// `hear` follows LISTEN channel `channel` (one of [`super::writer::CHANNELS`], or the
    /// occupancy channel on the worker that follows the other nodes).
    pub fn hear(&self, channel: &str, hear: std::rc::Weak<dyn Hear>) {
        self.parts.hearers.add(channel, hear);
    }

    /// Asks the I/O thread to `run` with a pooled connection within `timeout`, for the parked
    /// request of connection `token` (woken through `posted` when the answer is in). `None`:
    /// the I/O thread takes no more now (answer 503).
    pub fn ask(
        &self,
        run: Run,
        timeout: Duration,
        token: mio::Token,
        posted: &crate::core::event::Posted,
    ) -> Option<Pending> {
        self.question(token, posted, |id| Job::Query(Query { id, timeout, run }))
    }

    /// Asks the I/O thread to `fetch` within `timeout` for the parked request of connection
    /// `token`, as [`WorkerDb::ask`] does; the read picks its own sources.
    pub fn read(
        &self,
        fetch: Fetch,
        timeout: Duration,
        token: mio::Token,
        posted: &crate::core::event::Posted,
    ) -> Option<Pending> {
        self.question(token, posted, |id| Job::Read(Read { id, timeout, fetch }))
    }

    /// Sends the question `job(id)` for the parked request of connection `token`.
    fn question(
        &self,
        token: mio::Token,
        posted: &crate::core::event::Posted,
        job: impl FnOnce(u64) -> Job,
    ) -> Option<Pending> {
        let (id, pending) = self.parts.queries.ask(token, posted);
        // Refused, the pending question is dropped here, which forgets it.
        self.send(job(id)).ok()?;
        Some(pending)
    }

    /// Asks the I/O thread to `fetch` within `timeout` with nobody waiting: its end goes to
    /// `then`, on the loop. False when the I/O thread takes no more now (`then` is dropped).
    pub fn read_then(
        &self,
        fetch: Fetch,
        timeout: Duration,
        then: impl FnOnce(Asked) + 'static,
    ) -> bool {
        let id = self.parts.queries.ask_then(then);
        if self.send(Job::Read(Read { id, timeout, fetch })).is_err() {
            self.parts.queries.forget(id);
            return false;
        }
        true
    }

    /// Publishes each configuration newer than the one last published for its sensor.
    pub fn push(&self, configurations: &[Push]) {
        self.parts.push(configurations);
    }

    /// Asks the I/O thread for what a follower missed while LISTEN was down (`what`, logged
    /// when the I/O thread takes no more).
    pub(super) fn catch_up(&self, job: Job, what: &str) {
        if self.send(job).is_err() {
            log!(
                Warn,
                "ingest: the I/O thread took no request for missed {what}"
            );
        }
    }

    /// Forgets which configuration was published for `device_id` (every sensor: `None`).
    pub fn forget_pushed(&self, device_id: Option<&str>) {
        self.parts.published.forget(device_id);
    }

    /// Hands a job to the I/O thread; a full pipe hands it back (back-pressure).
    pub fn send(&self, job: Job) -> Result<(), SendError<Job>> {
        self.io.borrow_mut().send(job)?;
        self.parts.sent();
        Ok(())
    }

    /// Hands a batch of reports to the writer; with no room in the pipe, hands it back (the
    /// caller keeps it for the next turn). A writer that is gone is logged: the batch's
    /// acknowledgements never leave, so its clients send it again elsewhere.
    pub fn store(&self, batch: Vec<Report>) -> Result<(), Vec<Report>> {
        let mut io = self.io.borrow_mut();
        if !io.has_room() {
            return Err(batch);
        }
        let n = batch.len();
        if let Err(e) = io.send(Job::Store(batch)) {
            log!(
                Crit,
                "ingest: the I/O thread is gone ({e}); {n} reports not stored"
            );
            return Ok(());
        }
        self.parts.sent();
        self.parts.queued.set(self.parts.queued.get() + n);
        self.parts.stats.queued(self.parts.queued.get());
        Ok(())
    }

    /// Reports handed to the writer and not yet durable: a draining worker waits for them
    /// (and not for the other jobs, which a new worker does again).
    pub fn queued(&self) -> usize {
        self.parts.queued.get()
    }
}

impl Parts {
    /// A job went to the I/O thread.
    fn sent(&self) {
        self.jobs.set(self.jobs.get() + 1);
        self.stats.io_jobs(self.jobs.get());
    }

    /// An answer of the I/O thread, to the part that asked.
    fn answered(&self, d: Done) {
        match d {
            Done::Stored(a) => self.stored(a),
            Done::Retained(r) => self.restore(r),
            Done::Maintained(hives) => {
                self.maintaining.set(false);
                self.publish(&hives);
            }
            Done::Login(r) => {
                if let Some(to) = self.logins.get() {
                    to(r);
                }
            }
            Done::Changed(hives) => self.publish(&hives),
            Done::Queried(id, asked) => self.queries.answered(id, asked),
            Done::Configurations(c) => self.push(&c),
            Done::Listening { channels } => {
                self.stats.db_lost(false);
                self.hearers.listening(&channels);
            }
            Done::ListenLost => self.stats.db_lost(true),
            Done::Notified { channel, payload } => self.hearers.notified(&channel, &payload),
        }
    }

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
        self.publish(&a.written.hives);
    }

    /// Publishes the hives' new occupancy.
    pub(super) fn publish(&self, hives: &[Occupancy]) {
        if let Some(outbox) = self.outbox.get() {
            for o in hives {
                outbox.publish(occupancy_message(o));
            }
        }
    }

    /// The database's retained messages, for the topics this worker has none of.
    fn restore(&self, r: Retained) {
        let Some(outbox) = self.outbox.get() else {
            return;
        };
        for o in &r.hives {
            outbox.restore(occupancy_message(o));
        }
        for (device_id, c) in &r.configurations {
            if let Some(m) = push::configuration_message(device_id, c) {
                outbox.restore(m);
            }
        }
    }

    /// Publishes the configurations newer than those published before, each as the retained
    /// QoS 1 message of its sensor's commands topic.
    fn push(&self, configurations: &[Push]) {
        let Some(outbox) = self.outbox.get() else {
            return;
        };
        for (device_id, c) in configurations {
            if !self.published.newer(device_id, c.configuration_id) {
                continue;
            }
            if let Some(m) = push::configuration_message(device_id, c) {
                outbox.publish(m);
            }
        }
    }
}

/// A hive's occupancy as its retained message: the newest value is what matters, so QoS 0.
pub fn occupancy_message(o: &Occupancy) -> Message {
    Message {
        topic: o.topic().into(),
        payload: o.to_json().into(),
        qos: QoS::AtMostOnce,
        retain: true,
    }
}

/// The other nodes' occupancy changes ([`occupancy::CHANNEL`]), followed by one worker per
/// node (slot 0) and published here as this node's own: the committing worker's node published
/// them already, every other node does it once. A spool's replay announces under a name of
/// its own (see the writer), so that every node, this one too, publishes what it changed. When
/// LISTEN takes effect again after its connection was lost, the hives changed meanwhile are
/// read and published.
pub struct OtherNodes {
    db: std::rc::Weak<WorkerDb>,
    node: String,
    /// When the last notification came (from the first LISTEN on).
    missed: Missed,
}

impl OtherNodes {
    fn new(db: &Rc<WorkerDb>, node: String) -> Rc<OtherNodes> {
        Rc::new(OtherNodes {
            db: Rc::downgrade(db),
            node,
            missed: Missed::new(None, MISSED_MARGIN),
        })
    }
}

/// How far back a re-established LISTEN looks for changes it may have missed, before the last
/// notification it heard (a commit's notification is sent after its `updated_at`).
const MISSED_MARGIN: Duration = Duration::from_secs(5);

impl Hear for OtherNodes {
    fn listening(&self) {
        if let (Some(since), Some(db)) = (self.missed.listening(), self.db.upgrade()) {
            db.catch_up(Job::ChangedSince(since), "changes");
        }
    }

    fn notified(&self, payload: &str) {
        self.missed.heard();
        let Some((node, notice)) = payload.split_once(' ') else {
            return;
        };
        if node == self.node {
            return;
        }
        let Some(db) = self.db.upgrade() else {
            return;
        };
        match occupancy::from_notices(notice) {
            Some(changes) => db.parts.publish(&changes),
            None => log!(
                Warn,
                "ingest: an occupancy notification that does not read: {payload}"
            ),
        }
    }
}

/// This node's name in the notifications it sends: the host and the master's pid, the same
/// for every worker of the node and different for a second server on the same machine.
fn node_name() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", nix::unistd::getppid())
}
