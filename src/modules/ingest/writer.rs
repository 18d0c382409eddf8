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
use tokio_postgres::Client;

use crate::core::io::{News, Served, Work};
use crate::log;
use crate::modules::cache::client::Client as Replica;
use crate::modules::database::listen::{self, Heard};
use crate::modules::database::migrate::{self, redact, MIGRATIONS};
use crate::modules::database::pool::{self, Pool};
use crate::modules::database::query::{self, Asked, Query, Read, Sources};
use crate::modules::ingest::batch::{Report, Stored, Written};
use crate::modules::ingest::conf::IngestConf;
use crate::modules::ingest::login::{self, store::Logins};
use crate::modules::ingest::push::{self, Push};
use crate::modules::ingest::spool::{replay, Spool};
use crate::modules::ingest::stats::Stats;
use crate::modules::ingest::store::{self, maintain};
use crate::modules::occupancy::{self, Occupancy};

/// First and longest wait before trying PostgreSQL again.
pub(super) const RETRY_FIRST: Duration = Duration::from_millis(100);
pub(super) const RETRY_MAX: Duration = Duration::from_secs(5);

/// A batch's answer: its tickets (in batch order) and what the store said.
#[derive(Debug)]
pub struct Answer {
    pub tickets: Vec<Option<u64>>,
    pub written: Written,
    /// When the batch's oldest report was received (for the ingest lag).
    pub oldest: Option<chrono::DateTime<chrono::Utc>>,
}

/// The channels the worker's LISTEN connection follows ([`listen`]).
pub const CHANNELS: &[&str] = &[login::CHANNEL, login::token::CHANNEL];

/// The writer, made on the I/O thread.
pub struct Writer {
    url: String,
    conf: IngestConf,
    /// This node's name in the notifications it sends (`bizzy.node` on every connection).
    node: String,
    /// `database.migrate_on_start`: the periodic work applies the migrations first, until
    /// they are (the master's attempt may have found the database down).
    migrate: std::cell::Cell<bool>,
    /// LISTEN on [`occupancy::CHANNEL`] and [`push::CHANNEL`] too.
    other_nodes: bool,
    /// The connection; `None` until made, and again after it broke.
    client: tokio::sync::Mutex<Option<Client>>,
    /// The connections for the rest (retained topics, periodic work), so that a batch never
    /// waits behind them: `database.pool_size` less the batches' own.
    pool: Pool,
    /// The spool files this writer holds; shared with the replay task.
    spool: Rc<RefCell<Spool>>,
    /// Wakes the replay task when a batch is spooled.
    wake: Rc<Notify>,
    /// The sensor logins' password checks (their reads take connections of `pool`).
    logins: Logins,
    /// The memcached replica the API's reads look in first, when `[cache]` names servers.
    replica: Option<Replica>,
}

/// What a worker's writer is made of.
#[derive(Debug, Clone)]
pub struct Setup {
    pub url: String,
    pub spool_dir: PathBuf,
    pub conf: IngestConf,
    pub stats: Stats,
    /// This node's name in the notifications it sends.
    pub node: String,
    /// Whether this writer applies the migrations the master could not.
    pub migrate: bool,
    /// Whether it also follows the other nodes' occupancy changes ([`occupancy::CHANNEL`])
    /// and the new configurations ([`push::CHANNEL`]): one worker per node does.
    pub other_nodes: bool,
    pub pool_size: usize,
    /// The memcached servers of the replica (`cache.memcached`), empty for none.
    pub memcached: Vec<String>,
}

impl Writer {
    /// The writer of one worker: it takes over the orphans in `spool_dir` at once and starts
    /// the spool's replay task. Called on the I/O thread, inside its `LocalSet` (the task is
    /// spawned there).
    pub fn new(s: Setup) -> Writer {
        let spool = Rc::new(RefCell::new(Spool::new(s.spool_dir, s.stats.clone())));
        spool.borrow_mut().adopt();
        let wake = Rc::new(Notify::new());
        // Nobody publishes what a replay changes as it commits: its notifications name a node
        // of their own, so that every node (this one too) republishes them.
        tokio::task::spawn_local(replay::run(replay::Replay {
            spool: Rc::clone(&spool),
            wake: Rc::clone(&wake),
            url: s.url.clone(),
            node: format!("{} replay", s.node),
            conf: s.conf.clone(),
            stats: s.stats.clone(),
        }));
        let settings = vec![("bizzy.node".to_string(), s.node.clone())];
        let stats = s.stats.clone();
        let pool = Pool::new(&s.url, s.pool_size.saturating_sub(1), settings)
            .watch(move |f| stats.pool(f.in_use.get(), f.waiting.get()));
        Writer {
            pool,
            logins: Logins::default(),
            url: s.url,
            conf: s.conf,
            node: s.node,
            migrate: std::cell::Cell::new(s.migrate),
            other_nodes: s.other_nodes,
            client: tokio::sync::Mutex::new(None),
            spool,
            wake,
            replica: (!s.memcached.is_empty()).then(|| Replica::new(&s.memcached)),
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
            match connect(&self.url, &self.node).await {
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
        if closed || crate::modules::database::unavailable(code) {
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
    /// Read what the server's retained topics hold, as soon as the database answers.
    Retained,
    /// The periodic work ([`store::maintain`]); with `housekeeping`, partitions and pruning too.
    Maintain { housekeeping: bool },
    /// A question of the sensor authority.
    Login(login::store::Ask),
    /// The occupancy of the hives that changed since this instant (notifications missed while
    /// the LISTEN connection was down), as soon as the database answers.
    ChangedSince(std::time::SystemTime),
    /// A question an HTTP request waits for ([`query`]).
    Query(Query),
    /// A read that picks its sources (the replica, then the database).
    Read(Read),
    /// The newest configuration of the sensors that got one since this instant
    /// (notifications missed while the LISTEN connection was down), as soon as the database
    /// answers.
    ConfigurationsSince(std::time::SystemTime),
}

/// The I/O thread's answer to a [`Job`], in kind.
#[derive(Debug)]
pub enum Done {
    Stored(Answer),
    Retained(Retained),
    /// The hives the periodic work changed (reset, degraded or not).
    Maintained(Vec<Occupancy>),
    Login(login::store::Reply),
    /// The hives of [`Job::ChangedSince`].
    Changed(Vec<Occupancy>),
    /// How question `id` ended.
    Queried(u64, Asked),
    /// The configurations of [`Job::ConfigurationsSince`].
    Configurations(Vec<Push>),
    /// LISTEN on `channels` took effect on a new connection (news, not an answer).
    Listening {
        channels: Vec<String>,
    },
    /// The LISTEN connection was lost (news, not an answer): PostgreSQL is probably
    /// unreachable until the next `Listening`.
    ListenLost,
    /// A notification on one of [`CHANNELS`] (news, not an answer).
    Notified {
        channel: String,
        payload: String,
    },
}

impl Done {
    /// Told by the I/O thread unasked ([`News`]): answers no job.
    pub fn is_news(&self) -> bool {
        matches!(
            self,
            Done::Listening { .. } | Done::ListenLost | Done::Notified { .. }
        )
    }
}

/// The server's retained messages as PostgreSQL has them: every live hive's occupancy and every
/// live sensor's newest configuration.
#[derive(Debug, Default)]
pub struct Retained {
    pub hives: Vec<Occupancy>,
    pub configurations: Vec<Push>,
}

impl Writer {
    /// Reads the retained topics' contents, trying again until the database answers.
    async fn retained(&self) -> Retained {
        until_read("the retained occupancy and configurations", || {
            self.read_retained()
        })
        .await
    }

    /// The periodic work, once: what fails is logged and tried again at the next tick.
    async fn maintain(&self, housekeeping: bool) -> Vec<Occupancy> {
        if self.migrate.get() {
            match migrate::run(&self.url, MIGRATIONS).await {
                Ok(report) => {
                    self.migrate.set(false);
                    for (_, name) in &report.applied {
                        log!(Notice, "applied migration {name}");
                    }
                }
                Err(e) => {
                    log!(Warn, "migrate: {e}");
                    return Vec::new();
                }
            }
        }
        let run = async {
            let mut c = self.pool.get().await?;
            let c = &mut *c;
            if housekeeping {
                maintain::housekeeping(c, self.conf.dedupe_window.into()).await?;
            }
            let now = std::time::SystemTime::now().into();
            maintain::integrate(c, now).await?;
            let mut changed = maintain::resets(c, now).await?;
            changed.extend(maintain::degraded(c).await?);
            Ok::<_, tokio_postgres::Error>(changed)
        };
        match run.await {
            Ok(changed) => changed,
            Err(e) => {
                log!(Warn, "ingest: the periodic database work failed: {e}");
                Vec::new()
            }
        }
    }

    /// The hives changed since `t`, trying again until the database answers.
    async fn changed_since(&self, t: std::time::SystemTime) -> Vec<Occupancy> {
        let sql = format!(
            "SELECT {} FROM hive_occupancy v WHERE v.updated_at >= $1 ORDER BY v.hive_id",
            occupancy::COLUMNS
        );
        until_read("the changed occupancy", || async {
            let c = self.pool.get().await?;
            let rows = c.query(&sql, &[&t]).await?;
            Ok(rows.iter().map(occupancy::from_row).collect())
        })
        .await
    }

    async fn read_retained(&self) -> Result<Retained, tokio_postgres::Error> {
        let c = self.pool.get().await?;
        let hives = c
            .query(
                &format!(
                    "SELECT {} FROM hive_occupancy v ORDER BY v.hive_id",
                    occupancy::COLUMNS
                ),
                &[],
            )
            .await?;
        Ok(Retained {
            hives: hives.iter().map(occupancy::from_row).collect(),
            configurations: push::newest(&c, None).await?,
        })
    }

    /// The configurations of [`Job::ConfigurationsSince`], trying again until the database
    /// answers.
    async fn configurations_since(&self, t: std::time::SystemTime) -> Vec<Push> {
        until_read("the missed configurations", || async {
            let c = self.pool.get().await?;
            push::newest(&c, Some(t)).await
        })
        .await
    }
}

/// What `read` reads, trying again (after [`RETRY_FIRST`], doubling up to [`RETRY_MAX`]) until
/// the database answers; each failure is logged as not reading `what`.
async fn until_read<T, F>(what: &str, read: impl Fn() -> F) -> T
where
    F: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
{
    let mut wait = RETRY_FIRST;
    loop {
        match read().await {
            Ok(v) => return v,
            Err(e) => {
                log!(Warn, "ingest: cannot read {what}: {e}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
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
                Job::Retained => Done::Retained(self.retained().await),
                Job::Maintain { housekeeping } => {
                    Done::Maintained(self.maintain(housekeeping).await)
                }
                Job::Login(ask) => Done::Login(self.logins.serve(ask, &self.pool).await),
                Job::ChangedSince(t) => Done::Changed(self.changed_since(t).await),
                Job::Query(q) => {
                    let (id, asked) = query::serve(&self.pool, q).await;
                    Done::Queried(id, asked)
                }
                Job::Read(r) => {
                    let sources = Sources {
                        pool: &self.pool,
                        replica: self.replica.as_ref(),
                    };
                    let (id, asked) = query::serve_read(sources, r).await;
                    Done::Queried(id, asked)
                }
                Job::ConfigurationsSince(t) => {
                    Done::Configurations(self.configurations_since(t).await)
                }
            }
        })
    }

    fn started(self: Rc<Self>, news: News<Done>) {
        let mut channels: Vec<String> = CHANNELS.iter().map(|c| c.to_string()).collect();
        if self.replica.is_some() {
            channels.push(crate::modules::cache::REPLICA_CHANNEL.to_string());
        }
        if self.other_nodes {
            channels.push(occupancy::CHANNEL.to_string());
            channels.push(push::CHANNEL.to_string());
        }
        listen::spawn(self.url.clone(), channels, move |h| {
            news.tell(match h {
                Heard::Listening(channels) => Done::Listening { channels },
                Heard::Notified { channel, payload } => Done::Notified { channel, payload },
                Heard::Lost(_) => Done::ListenLost,
            })
        });
    }
}

/// A connection to `url` that names `node` in its notifications; its driver runs as a task
/// of the I/O thread's runtime.
pub(super) async fn connect(url: &str, node: &str) -> Result<Client, tokio_postgres::Error> {
    pool::connect(url, &[("bizzy.node".to_string(), node.to_string())]).await
}
