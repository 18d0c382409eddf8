//! The replay task: one per writer, on the worker's I/O thread, for the life of the thread.
//! While the spool holds nothing it scans the spool directory for orphans every 5 s (and wakes
//! at once when the writer spools a batch); while it holds records it connects to PostgreSQL
//! on a connection of its own and applies them in order, whole records of about
//! `REPLAY_BATCH` reports per transaction; a failure
//! (PostgreSQL still away, a broken connection) waits 100 ms, doubling up to 5 s (the writer's
//! back-off), and scans again before the next try.
//!
//! A record PostgreSQL refuses while it is reachable (not a connection failure) is tried again
//! the same way: it stays at the head, logged, and later batches wait behind it in the spool,
//! acknowledged (the writer's module header says why such a batch is not skipped).
//!
//! Exactly once: [`apply`] writes a record's reports through [`store::write_in`] and, in the same
//! transaction, the file's progress in `spool_replay` (the offset where the applied record
//! ends), after checking that the record is not already behind that offset. Whoever holds the
//! file (the lock makes it one writer at a time) can stop anywhere: a transaction that did not
//! commit applied nothing, one that did is skipped by the next holder. A replayed file is
//! removed, then its progress row forgotten (a row left by a failure is harmless: ids are
//! never reused).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::Spool;
use crate::log;
use crate::modules::database::migrate::redact;
use crate::modules::database::pool;
use crate::modules::ingest::batch::{Report, Written};
use crate::modules::ingest::conf::IngestConf;
use crate::modules::ingest::decode::{decode, SensorTopic};
use crate::modules::ingest::stats::Stats;
use crate::modules::ingest::store;
use crate::modules::ingest::writer::{connect, RETRY_FIRST, RETRY_MAX};

use super::record::Spooled;

/// Records are applied in transactions of about this many reports (whole records, in order):
/// an outage's spool, written one small batch per loop turn, is replayed at the rate of large
/// batches.
const REPLAY_BATCH: usize = 1000;

/// A failing replay is logged at most this often (the first failure of a spell at once).
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What the replay task needs besides the spool.
pub struct Replay {
    pub spool: Rc<RefCell<Spool>>,
    /// Woken by the writer when it spools a batch.
    pub wake: Rc<Notify>,
    pub url: String,
    /// The node its notifications name.
    pub node: String,
    pub conf: IngestConf,
    pub stats: Stats,
}

/// Why a replay step did not go through.
#[derive(Debug)]
enum StepError {
    Db(tokio_postgres::Error),
    File(std::io::Error),
    /// A replayed file could not be removed: it is let go, its progress row kept, and taken
    /// over again (and skipped to its end) on a later scan, after the back-off.
    Remove(std::io::Error),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Db(e) => f.write_str(&pool::describe(e)),
            StepError::File(e) => write!(f, "reading the spool: {e}"),
            StepError::Remove(e) => write!(f, "removing a replayed spool file: {e}"),
        }
    }
}

impl From<tokio_postgres::Error> for StepError {
    fn from(e: tokio_postgres::Error) -> StepError {
        StepError::Db(e)
    }
}

impl From<std::io::Error> for StepError {
    fn from(e: std::io::Error) -> StepError {
        StepError::File(e)
    }
}

/// The replay task's own state.
struct Replayer {
    r: Replay,
    client: Option<Client>,
    /// The file whose progress row was read on this connection.
    checked: Option<[u8; 16]>,
    wait: Duration,
    /// When the current spell of failures was last logged.
    logged: Option<Instant>,
}

/// Runs until the I/O thread ends (it is never awaited: spawned on the thread's `LocalSet`).
pub async fn run(r: Replay) {
    let mut me = Replayer {
        r,
        client: None,
        checked: None,
        wait: RETRY_FIRST,
        logged: None,
    };
    loop {
        me.r.spool.borrow_mut().adopt();
        if me.r.spool.borrow().head().is_none() {
            // Nothing to replay: the connection goes, the back-off starts over.
            me.client = None;
            me.wait = RETRY_FIRST;
            let _ = tokio::time::timeout(RETRY_MAX, me.r.wake.notified()).await;
            continue;
        }
        loop {
            match me.step().await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    me.failed(&e);
                    tokio::time::sleep(me.wait).await;
                    me.wait = (me.wait * 2).min(RETRY_MAX);
                    break;
                }
            }
        }
    }
}

impl Replayer {
    /// Applies the head file's next record (or removes the file when none is left): `true`
    /// to go on at once, `false` when the spool holds nothing more.
    async fn step(&mut self) -> Result<bool, StepError> {
        let Some(id) = self.r.spool.borrow().head() else {
            return Ok(false);
        };
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(connect(&self.r.url, &self.r.node).await?);
            self.checked = None;
        }
        let client = self.client.as_mut().expect("connected just above");
        if self.checked != Some(id) {
            if let Some(end) = progress(client, &id).await? {
                self.r.spool.borrow_mut().skip_to(&id, end)?;
            }
            self.checked = Some(id);
        }
        let records = self.r.spool.borrow().read(&id, REPLAY_BATCH)?;
        if let Some(end) = records.last().map(|r| r.end) {
            let n: usize = records.iter().map(|r| r.reports.len()).sum();
            let reports = reports_of(records.into_iter().flat_map(|r| r.reports).collect());
            let written = apply(client, &id, end, &reports, &self.r.conf).await?;
            if let Some(w) = written {
                self.r.stats.replayed(&w.stored);
            }
            self.r.spool.borrow_mut().replayed(&id, end, n as u64);
        }
        self.finish(id).await?;
        if self.logged.take().is_some() {
            log!(Notice, "ingest: the spool's replay goes on");
        }
        self.wait = RETRY_FIRST;
        Ok(true)
    }

    /// Removes file `id` if it is replayed, and forgets its progress.
    async fn finish(&mut self, id: [u8; 16]) -> Result<(), StepError> {
        let removed = self.r.spool.borrow_mut().remove_if_drained(&id);
        match removed.map_err(StepError::Remove)? {
            Some(path) => log!(Info, "ingest: {} is replayed", path.display()),
            None => return Ok(()),
        }
        if self.checked == Some(id) {
            self.checked = None;
        }
        if let Some(c) = self.client.as_ref() {
            if let Err(e) = forget(c, &id).await {
                log!(
                    Warn,
                    "ingest: the progress row of a replayed spool stays: {e}"
                );
            }
        }
        Ok(())
    }

    fn failed(&mut self, e: &StepError) {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            match e {
                StepError::Db(_) => log!(
                    Error,
                    "ingest: the spool waits for {}: {e}",
                    redact(&self.r.url)
                ),
                StepError::File(_) | StepError::Remove(_) => {
                    log!(Error, "ingest: the spool's replay stalls: {e}")
                }
            }
            self.logged = Some(Instant::now());
        }
    }
}

/// The reports of a record, decoded again from their raw payloads. One that no longer decodes
/// (a decoder changed under a spool) cannot be stored: it is logged at crit and left out.
fn reports_of(spooled: Vec<Spooled>) -> Vec<Report> {
    let mut out = Vec::with_capacity(spooled.len());
    for s in spooled {
        let topic = SensorTopic {
            device_id: &s.device_id,
            channel: s.channel,
        }
        .to_string();
        match decode(&topic, &s.raw) {
            Ok((_, payload)) => out.push(Report {
                ticket: None,
                device_id: s.device_id,
                payload,
                raw: s.raw,
                received_at: s.received_at,
            }),
            Err(e) => log!(
                Crit,
                "ingest: a spooled report on {topic} no longer decodes ({e:?}): not stored"
            ),
        }
    }
    out
}

/// Applies records of spool file `id`, the last of them ending at `end`, in one transaction
/// with the file's progress: `None` when the progress row says they are already applied.
pub async fn apply(
    client: &mut Client,
    id: &[u8; 16],
    end: u64,
    reports: &[Report],
    conf: &IngestConf,
) -> Result<Option<Written>, tokio_postgres::Error> {
    let end = i64::try_from(end).expect("a spool file is below 2^63 bytes");
    let tx = client.transaction().await?;
    let done = tx
        .query_typed(
            "SELECT replayed FROM spool_replay WHERE spool_id = $1",
            &[(&id.as_slice(), Type::BYTEA)],
        )
        .await?;
    if done.first().is_some_and(|r| r.get::<_, i64>(0) >= end) {
        return Ok(None);
    }
    let written = store::write_in(&tx, reports, conf).await?;
    tx.query_typed(
        "INSERT INTO spool_replay (spool_id, replayed) VALUES ($1, $2)
         ON CONFLICT (spool_id) DO UPDATE SET replayed = excluded.replayed, updated_at = now()",
        &[(&id.as_slice(), Type::BYTEA), (&end, Type::INT8)],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(written))
}

/// How far spool file `id` was replayed, if it ever was.
pub async fn progress(
    client: &Client,
    id: &[u8; 16],
) -> Result<Option<u64>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "SELECT replayed FROM spool_replay WHERE spool_id = $1",
            &[(&id.as_slice(), Type::BYTEA)],
        )
        .await?;
    Ok(rows
        .first()
        .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
}

/// Forgets the progress of a removed file.
async fn forget(client: &Client, id: &[u8; 16]) -> Result<(), tokio_postgres::Error> {
    client
        .query_typed(
            "DELETE FROM spool_replay WHERE spool_id = $1",
            &[(&id.as_slice(), Type::BYTEA)],
        )
        .await
        .map(|_| ())
}
