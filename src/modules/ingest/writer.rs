//! The ingest writer on the worker's I/O thread ([`crate::core::io::Work`]): stores each batch
//! the ingest hook hands it through [`store::write`], one transaction per batch, and answers
//! with the tickets whose acknowledgements may now leave.
//!
//! A batch is answered only once it is durable: committed, or, while PostgreSQL is
//! unreachable, appended and fsynced to the writer's spool file (`spool/`), whose replay task
//! stores it once PostgreSQL is back. While the spool holds records, later batches join them
//! there, so a worker's batches reach PostgreSQL in the order they came. A batch that can be
//! neither committed nor spooled (the spool directory cannot be written: logged at crit) is
//! tried again with a growing delay, its acknowledgements waiting: nothing acknowledged is ever
//! missing. Batches are written one at a time on one connection, in the order they came.
//!
//! Which failures spool a batch: PostgreSQL cannot be reached or logged into, the connection
//! broke or closed, or the server says it cannot serve now (SQLSTATE classes 08 connection,
//! 53 insufficient resources, 57 operator intervention such as a shutdown or a recovery, 58
//! system error, and 25006, a read-only standby after a failover). Any other error (a
//! deadlock, a serialization failure, a constraint a batch breaks) leaves PostgreSQL reachable:
//! the batch is tried again in place, since a transient conflict passes and a batch PostgreSQL
//! refuses would be refused on replay too, behind which every later batch would wait.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::{Client, Config, NoTls};

use crate::core::io::{Served, Work};
use crate::log;
use crate::modules::database::migrate::redact;
use crate::modules::ingest::batch::{Report, Stored, Written};
use crate::modules::ingest::conf::IngestConf;
use crate::modules::ingest::spool::{replay, Spool};
use crate::modules::ingest::stats::Stats;
use crate::modules::ingest::store;

/// First and longest wait before trying PostgreSQL again.
pub(super) const RETRY_FIRST: Duration = Duration::from_millis(100);
pub(super) const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long a connection attempt may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A batch's answer: its tickets (in batch order) and what the store said.
#[derive(Debug)]
pub struct Answer {
    pub tickets: Vec<Option<u64>>,
    pub written: Written,
    /// When the batch's oldest report was received (for the ingest lag).
    pub oldest: Option<chrono::DateTime<chrono::Utc>>,
}

/// The writer, made on the I/O thread.
pub struct Writer {
    url: String,
    conf: IngestConf,
    /// The connection; `None` until made, and again after it broke.
    client: tokio::sync::Mutex<Option<Client>>,
    /// The spool files this writer holds; shared with the replay task.
    spool: Rc<RefCell<Spool>>,
    /// Wakes the replay task when a batch is spooled.
    wake: Rc<Notify>,
}

impl Writer {
    /// The writer of one worker: it takes over the orphans in `spool_dir` at once and starts
    /// the spool's replay task. Called on the I/O thread, inside its `LocalSet` (the task is
    /// spawned there).
    pub fn new(url: String, spool_dir: PathBuf, conf: IngestConf, stats: Stats) -> Writer {
        let spool = Rc::new(RefCell::new(Spool::new(spool_dir, stats.clone())));
        spool.borrow_mut().adopt();
        let wake = Rc::new(Notify::new());
        tokio::task::spawn_local(replay::run(replay::Replay {
            spool: Rc::clone(&spool),
            wake: Rc::clone(&wake),
            url: url.clone(),
            conf: conf.clone(),
            stats,
        }));
        Writer {
            url,
            conf,
            client: tokio::sync::Mutex::new(None),
            spool,
            wake,
        }
    }

    /// Stores `reports`: committed, or spooled while PostgreSQL is unreachable or the spool
    /// holds older batches; tried again until one of the two succeeds.
    async fn store(&self, reports: &[Report]) -> Written {
        let mut wait = RETRY_FIRST;
        let mut client = self.client.lock().await;
        loop {
            let spool_it = if self.spool.borrow().is_empty() {
                match self.write(&mut client, reports).await {
                    Ok(w) => return w,
                    Err(Failure::Unreachable) => true,
                    Err(Failure::Refused) => false,
                }
            } else {
                true
            };
            if spool_it && self.spool.borrow_mut().append(reports) {
                self.wake.notify_one();
                return Written {
                    stored: vec![Stored::Spooled; reports.len()],
                    hives: Vec::new(),
                };
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// One attempt to commit `reports` on the writer's connection (made if needed).
    async fn write(
        &self,
        client: &mut Option<Client>,
        reports: &[Report],
    ) -> Result<Written, Failure> {
        if client.is_none() {
            match connect(&self.url).await {
                Ok(c) => *client = Some(c),
                Err(e) => {
                    log!(
                        Error,
                        "ingest: cannot connect to {}: {e}",
                        redact(&self.url)
                    );
                    return Err(Failure::Unreachable);
                }
            }
        }
        let c = client.as_mut().expect("connected just above");
        match store::write(c, reports, &self.conf).await {
            Ok(w) => Ok(w),
            Err(e) => {
                log!(
                    Error,
                    "ingest: a batch of {} not stored: {e}",
                    reports.len()
                );
                let failure = Failure::of(&e, c.is_closed());
                if failure == Failure::Unreachable {
                    *client = None;
                }
                Err(failure)
            }
        }
    }
}

/// Why a batch was not committed (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// PostgreSQL cannot take it now: spool it.
    Unreachable,
    /// PostgreSQL refused it: try again in place.
    Refused,
}

impl Failure {
    fn of(e: &tokio_postgres::Error, closed: bool) -> Failure {
        let Some(code) = e.code() else {
            // No SQLSTATE: the error is the connection's (I/O, closed, protocol).
            return Failure::Unreachable;
        };
        let code = code.code();
        let unavailable = ["08", "53", "57", "58"]
            .iter()
            .any(|class| code.starts_with(class))
            || code == "25006";
        if closed || unavailable {
            Failure::Unreachable
        } else {
            Failure::Refused
        }
    }
}

/// What the event loop asks of its I/O thread.
#[derive(Debug)]
pub enum Job {
    /// Store a batch of reports.
    Store(Vec<Report>),
}

/// The I/O thread's answer to a [`Job`], in kind.
#[derive(Debug)]
pub enum Done {
    Stored(Answer),
}

impl Work for Writer {
    type Request = Job;
    type Answer = Done;

    fn serve(self: Rc<Self>, job: Job) -> Served<Done> {
        Box::pin(async move {
            match job {
                Job::Store(reports) => {
                    let written = self.store(&reports).await;
                    Done::Stored(Answer {
                        tickets: reports.iter().map(|r| r.ticket).collect(),
                        written,
                        oldest: reports.iter().map(|r| r.received_at).min(),
                    })
                }
            }
        })
    }
}

/// A connection to `url`; its driver runs as a task of the I/O thread's runtime.
pub(super) async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config: Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let (client, connection) = config.connect(NoTls).await?;
    tokio::task::spawn_local(async move {
        if let Err(e) = connection.await {
            log!(Warn, "ingest: the database connection ended: {e}");
        }
    });
    Ok(client)
}
