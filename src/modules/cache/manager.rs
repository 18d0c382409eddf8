//! The cache manager process (`bizzy: cache manager process`): one per node and cycle, started
//! by the master after the workers when the configuration has a `[cache]` section. It keeps
//! the memcached replica of the public resources in step with PostgreSQL (DESIGN.md section 7),
//! so that it is never older than `cache.max_stale`.
//!
//! ```text
//!   LISTEN bizzy_occupancy  -> the occupancy answers of the hives named      -> set occ:{id}
//!   LISTEN bizzy_hive       -> a hive's details and occupancy (or delete both) -> set hive:{id}
//!                              '' -> the hive types                           -> set types
//!   every max_stale / 4     -> what changed since the last pass (2 s margin)  -> set / delete
//!                              the hive types; a full refill of any server that lost its data,
//!                              and every hive once each quarter hour (vs_usual follows the
//!                              clock) -> set pass = the pass's start (unix ms)
//!   after each: NOTIFY bizzy_replica with the hive ids written ('' for everything), so
//!   every worker expires its micro-cached answers of them at once
//! ```
//!
//! Notifications that arrive together are answered together (their occupancies in one query).
//! A notification missed (no LISTEN connection at the time, PostgreSQL down) is caught up by
//! the next pass, which reads from the start of the last pass that succeeded. PostgreSQL or
//! memcached down is logged once per outage and never ends the process. Runs on a
//! current-thread runtime of its own; the memcached writes block (short timeouts), which is
//! fine in this process and nowhere else.

use std::future::{poll_fn, Future};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::time::{sleep_until, Instant, Sleep};
use tokio_postgres::Client;

use crate::core::config::Conf;
use crate::core::process::{AppError, Helper, HelperCtx, Stop, StopKind};
use crate::log;
use crate::modules::api::public::{self, Changed};
use crate::modules::cache::store::Store;
use crate::modules::cache::{keys, CacheConf, REPLICA_CHANNEL};
use crate::modules::database::listen::{self, Heard};
use crate::modules::database::pool::{describe, Pool};
use crate::modules::database::DatabaseConf;
use crate::modules::occupancy;

/// The LISTEN channel of changes to a hive's details (migration 0013): the hive id, or '' for
/// the hive types.
pub const HIVE_CHANNEL: &str = "bizzy_hive";

/// How long the replica's entries live unless a change writes them again: a worker that misses
/// reads PostgreSQL.
const EXPIRY_SECS: u32 = 24 * 60 * 60;
/// How far before the last pass's start a pass reads: a change's time is its transaction's
/// start, which precedes its commit.
const MARGIN: Duration = Duration::from_secs(2);
/// Hives per query of a full refill.
const PAGE: i64 = 500;
/// Every hive's entries are written again once in each such stretch of the clock: an
/// occupancy's `vs_usual` compares with the usual of the current local hour, which moves on
/// its own (at :00, :30 or :45 past a UTC hour, as the hive's time zone has it).
const REWRITE_EVERY: Duration = Duration::from_secs(15 * 60);
/// The shortest time between passes.
const PASS_MIN: Duration = Duration::from_secs(1);
/// The most bytes of one [`REPLICA_CHANNEL`] notification (PostgreSQL takes below 8,000).
const NOTICE_MAX: usize = 7_000;
/// How long one query may take before the pass gives up (and the next one tries again).
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The cache manager of a cycle.
pub struct CacheManager {
    conf: CacheConf,
    /// `[database]`'s URL, when the section is written.
    database: Option<String>,
}

impl CacheManager {
    /// The cycle's cache manager: only when `[cache]` is written in the configuration.
    pub fn new(conf: &Conf) -> Option<CacheManager> {
        conf.written::<CacheConf>().then(|| CacheManager {
            conf: conf.section::<CacheConf>().clone(),
            database: conf
                .written::<DatabaseConf>()
                .then(|| conf.section::<DatabaseConf>().url.clone()),
        })
    }

    /// Time between passes: a quarter of `max_stale`, 1 s at least.
    fn every(&self) -> Duration {
        (self.conf.max_stale.0 / 4).max(PASS_MIN)
    }
}

impl Helper for CacheManager {
    fn name(&self) -> &'static str {
        "cache manager"
    }

    fn run(&self, ctx: &HelperCtx<'_>) -> Result<(), AppError> {
        let Some(url) = self.database.clone() else {
            log!(
                Error,
                "cache manager: no [database] section: the memcached replica cannot be kept"
            );
            wait_for_stop(ctx.stop);
            return Ok(());
        };
        if self.conf.memcached.is_empty() {
            log!(
                Notice,
                "cache manager: no memcached server: nothing to keep"
            );
            wait_for_stop(ctx.stop);
            return Ok(());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let local = tokio::task::LocalSet::new();
        let replica = Replica::new(&url, &self.conf.memcached);
        local.block_on(&rt, replica.run(url, self.every(), ctx.stop))
    }
}

/// Sleeps until a stop is asked (nothing to do meanwhile).
fn wait_for_stop(stop: &Stop) {
    let mut p = libc::pollfd {
        fd: stop.fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    while stop.requested().is_none() {
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, -1) };
    }
}

/// What wakes the manager.
enum Event {
    Stop,
    Heard(Vec<Heard>),
    Pass,
}

/// The stop's descriptor, borrowed with the stop: it stays open while this lives.
struct StopFd<'a>(&'a Stop);

impl AsRawFd for StopFd<'_> {
    fn as_raw_fd(&self) -> RawFd {
        self.0.fd()
    }
}

/// Where the manager learns that it must stop.
struct Watch<'a> {
    stop: &'a Stop,
    fd: AsyncFd<StopFd<'a>>,
}

impl<'a> Watch<'a> {
    /// Watches `stop` (on the current runtime).
    fn new(stop: &'a Stop) -> std::io::Result<Watch<'a>> {
        // SAFETY: the descriptor is the stop's, which StopFd borrows: it stays open and the
        // same for as long as the AsyncFd lives.
        let fd = unsafe { AsyncFd::register_with_interest(StopFd(stop), Interest::READABLE) }?;
        Ok(Watch { stop, fd })
    }
}

impl Watch<'_> {
    /// The next thing to do: a stop first, then notifications (with every one already queued),
    /// then the pass due at `pass`.
    async fn next(
        &self,
        rx: &mut UnboundedReceiver<Heard>,
        pass: &mut std::pin::Pin<&mut Sleep>,
    ) -> Event {
        poll_fn(|cx| {
            if self.stop.requested().is_some() {
                return Poll::Ready(Event::Stop);
            }
            if self.fd.poll_read_ready(cx).is_ready() && self.stop.requested().is_some() {
                return Poll::Ready(Event::Stop);
            }
            if let Poll::Ready(Some(h)) = rx.poll_recv(cx) {
                let mut batch = vec![h];
                while let Ok(h) = rx.try_recv() {
                    batch.push(h);
                }
                return Poll::Ready(Event::Heard(batch));
            }
            if pass.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Pass);
            }
            Poll::Pending
        })
        .await
    }

    /// `work` to its end, unless a Terminate comes first (None). A Quit lets it finish.
    async fn unless_terminated<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let mut work = pin!(work);
        poll_fn(|cx| {
            if let Poll::Ready(v) = work.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            if self.stop.requested() == Some(StopKind::Terminate) {
                return Poll::Ready(None);
            }
            if self.fd.poll_read_ready(cx).is_ready()
                && self.stop.requested() == Some(StopKind::Terminate)
            {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }
}

/// Why a query did not answer.
enum Failure {
    Db(tokio_postgres::Error),
    Timeout,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Db(e) => f.write_str(&describe(e)),
            Failure::Timeout => write!(f, "no answer within {QUERY_TIMEOUT:?}"),
        }
    }
}

/// A query, with [`QUERY_TIMEOUT`].
async fn q<T>(query: impl Future<Output = Result<T, tokio_postgres::Error>>) -> Result<T, Failure> {
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(r) => r.map_err(Failure::Db),
        Err(_) => Err(Failure::Timeout),
    }
}

/// The replica and what the manager knows of it.
struct Replica {
    db: Pool,
    store: Store,
    /// The start of the last pass that read PostgreSQL whole: the next pass reads from there.
    last: Option<SystemTime>,
    /// PostgreSQL failed, and that was logged.
    db_down: bool,
    /// The stretch of [`REWRITE_EVERY`] in which every hive was last written.
    rewritten: Option<u64>,
}

impl Replica {
    fn new(url: &str, servers: &[String]) -> Replica {
        let settings = vec![("application_name".into(), "bizzy cache manager".into())];
        Replica {
            db: Pool::new(url, 1, settings),
            store: Store::new(servers),
            last: None,
            db_down: false,
            rewritten: None,
        }
    }

    /// Listens, passes and reacts until asked to stop.
    async fn run(mut self, url: String, every: Duration, stop: &Stop) -> Result<(), AppError> {
        let watch = Watch::new(stop)?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let channels = vec![occupancy::CHANNEL.to_string(), HIVE_CHANNEL.to_string()];
        listen::spawn(url, channels, move |h| {
            let _ = tx.send(h);
        });
        let mut pass = pin!(sleep_until(Instant::now()));
        loop {
            match watch.next(&mut rx, &mut pass).await {
                Event::Stop => return Ok(()),
                Event::Heard(batch) => {
                    let Some(again) = watch.unless_terminated(self.react(batch)).await else {
                        return Ok(());
                    };
                    if again {
                        pass.as_mut().reset(Instant::now());
                    }
                }
                Event::Pass => {
                    let start = Instant::now();
                    if watch.unless_terminated(self.pass()).await.is_none() {
                        return Ok(());
                    }
                    pass.as_mut().reset(start + every);
                }
            }
        }
    }

    /// One pass: what changed since the last one, a full refill of the servers that need it,
    /// the hive types, then `pass`.
    async fn pass(&mut self) {
        let start = SystemTime::now();
        let refill = self.store.check();
        let stretch = start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / REWRITE_EVERY.as_secs());
        let rewrite = self.rewritten != Some(stretch);
        match self.read(refill, rewrite).await {
            Ok(()) => {
                if refill {
                    self.store.refilled();
                }
                if rewrite {
                    self.rewritten = Some(stretch);
                }
                self.last = Some(start);
                self.store.set(&keys::pass(), unix_ms(start).as_bytes(), 0);
                self.db_ok();
            }
            Err(e) => self.db_failed(&e),
        }
    }

    /// The PostgreSQL part of a pass: what changed, then, for `refill`, every hive on the
    /// servers that lost their data, or, for `rewrite`, every hive.
    async fn read(&mut self, refill: bool, rewrite: bool) -> Result<(), Failure> {
        let db = q(self.db.get()).await?;
        let since = match self.last {
            Some(last) => Some(last),
            // A new process: what was deleted since the last manager's pass is still there.
            None => self.store.get(&keys::pass()).and_then(|v| from_unix_ms(&v)),
        };
        let mut wrote = Vec::new();
        if let Some(since) = since {
            let since = since.checked_sub(MARGIN).unwrap_or(UNIX_EPOCH);
            for c in q(public::changed_since(&db, since)).await? {
                write(&mut self.store, &c, false);
                wrote.push(c.id);
            }
        }
        if refill || rewrite {
            let t = std::time::Instant::now();
            let (mut after, mut n) = (0, 0);
            loop {
                let page = q(public::all_after(&db, after, PAGE)).await?;
                for c in &page {
                    write(&mut self.store, c, !rewrite);
                }
                n += page.len();
                match page.last() {
                    Some(c) if page.len() as i64 == PAGE => after = c.id,
                    _ => break,
                }
            }
            log!(
                Info,
                "cache manager: wrote {n} hives into memcached in {} ms ({})",
                t.elapsed().as_millis(),
                if refill {
                    "a server lost its data"
                } else {
                    "vs_usual follows the clock"
                }
            );
        }
        let types = q(public::hive_types(&db)).await?;
        self.store.set(&keys::hive_types(), &types, EXPIRY_SECS);
        announce(&db, (!refill && !rewrite).then_some(&wrote[..])).await
    }

    /// Answers notifications that came together; whether a pass should run at once (LISTEN
    /// took effect again: what was notified meanwhile was lost).
    async fn react(&mut self, batch: Vec<Heard>) -> bool {
        let news = News::of(batch);
        if let Err(e) = self.answer(&news).await {
            // The next pass reads from before these notifications.
            self.db_failed(&e);
        }
        news.listening
    }

    async fn answer(&mut self, news: &News) -> Result<(), Failure> {
        if news.occupancy.is_empty() && news.hives.is_empty() && !news.types {
            return Ok(());
        }
        let db = q(self.db.get()).await?;
        if !news.occupancy.is_empty() {
            let got = q(public::occupancies(&db, &news.occupancy)).await?;
            for id in &news.occupancy {
                match got.iter().find(|(g, _)| g == id) {
                    Some((_, v)) => self.store.set(&keys::occupancy(*id), v, EXPIRY_SECS),
                    None => self.store.delete(&keys::occupancy(*id)),
                }
            }
        }
        for &id in &news.hives {
            let hive = q(public::hive(&db, id)).await?;
            let occupancy = match hive {
                Some(_) => q(public::occupancy(&db, id)).await?,
                None => None,
            };
            write(
                &mut self.store,
                &Changed {
                    id,
                    hive,
                    occupancy,
                },
                false,
            );
        }
        if news.types {
            let types = q(public::hive_types(&db)).await?;
            self.store.set(&keys::hive_types(), &types, EXPIRY_SECS);
        }
        let mut wrote = [&news.occupancy[..], &news.hives[..]].concat();
        wrote.sort_unstable();
        announce(&db, (!news.types).then_some(&wrote[..])).await?;
        drop(db);
        self.db_ok();
        Ok(())
    }

    fn db_failed(&mut self, e: &Failure) {
        if !self.db_down {
            log!(
                Error,
                "cache manager: PostgreSQL: {e}; the replica keeps what it has and catches up \
                 once PostgreSQL is back"
            );
            self.db_down = true;
        }
    }

    fn db_ok(&mut self) {
        if self.db_down {
            log!(
                Notice,
                "cache manager: PostgreSQL is back: the replica catches up"
            );
            self.db_down = false;
        }
    }
}

/// Tells the workers of every node that the replica holds new answers of `hives` (None: of
/// everything, the hive types too), so they expire what they keep of them at once.
async fn announce(db: &Client, hives: Option<&[i64]>) -> Result<(), Failure> {
    let payloads = match hives {
        None => vec![String::new()],
        Some(ids) => replica_notices(ids),
    };
    if payloads.is_empty() {
        return Ok(());
    }
    let sql = "SELECT pg_notify($1, n) FROM unnest($2::text[]) AS n";
    q(db.execute(sql, &[&REPLICA_CHANNEL, &payloads])).await?;
    Ok(())
}

/// `ids` as the payloads of [`REPLICA_CHANNEL`]: separated by commas, each payload below
/// [`NOTICE_MAX`] bytes.
fn replica_notices(ids: &[i64]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for id in ids {
        let id = id.to_string();
        if !cur.is_empty() && cur.len() + 1 + id.len() > NOTICE_MAX {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(',');
        }
        cur.push_str(&id);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Writes a hive's entries (`refill`: only those on servers being refilled).
fn write(store: &mut Store, c: &Changed, refill: bool) {
    for (key, value) in [
        (keys::hive(c.id), &c.hive),
        (keys::occupancy(c.id), &c.occupancy),
    ] {
        if refill && !store.refills(&key) {
            continue;
        }
        match value {
            Some(v) => store.set(&key, v, EXPIRY_SECS),
            None => store.delete(&key),
        }
    }
}

/// What notifications that came together ask for.
#[derive(Debug, Default, PartialEq, Eq)]
struct News {
    /// Hives whose occupancy changed (and not their details), sorted.
    occupancy: Vec<i64>,
    /// Hives whose details changed, sorted.
    hives: Vec<i64>,
    /// The hive types changed.
    types: bool,
    /// LISTEN took effect (again).
    listening: bool,
}

impl News {
    fn of(batch: Vec<Heard>) -> News {
        let mut n = News::default();
        for h in batch {
            match h {
                Heard::Listening(_) => n.listening = true,
                // The passes say PostgreSQL is down, once per outage.
                Heard::Lost(_) => {}
                Heard::Notified { channel, payload } if channel == occupancy::CHANNEL => {
                    let changes = payload
                        .split_once(' ')
                        .and_then(|(_, json)| occupancy::from_notices(json));
                    match changes {
                        Some(c) => n.occupancy.extend(c.iter().map(|o| o.hive_id)),
                        None => log!(
                            Warn,
                            "cache manager: an occupancy notification that does not read: \
                             {payload}"
                        ),
                    }
                }
                Heard::Notified { payload, .. } if payload.is_empty() => n.types = true,
                Heard::Notified { payload, .. } => match payload.parse::<i64>() {
                    Ok(id) => n.hives.push(id),
                    Err(_) => log!(
                        Warn,
                        "cache manager: a {HIVE_CHANNEL} notification that is not a hive id: \
                         {payload}"
                    ),
                },
            }
        }
        n.hives.sort_unstable();
        n.hives.dedup();
        n.occupancy.sort_unstable();
        n.occupancy.dedup();
        n.occupancy.retain(|id| n.hives.binary_search(id).is_err());
        n
    }
}

/// `t` in milliseconds since the epoch, as ASCII.
fn unix_ms(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string()
}

/// [`unix_ms`] read back.
fn from_unix_ms(v: &[u8]) -> Option<SystemTime> {
    let ms: u64 = std::str::from_utf8(v).ok()?.trim().parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notified(channel: &str, payload: &str) -> Heard {
        Heard::Notified {
            channel: channel.into(),
            payload: payload.into(),
        }
    }

    #[test]
    fn notifications_that_came_together_make_one_question() {
        let occ = r#"node-a [{"hive_id":3,"occupancy":1,"capacity":null,"updated_at":1764547200123456,"degraded":false},{"hive_id":5,"occupancy":2,"capacity":10,"updated_at":1764547200123456,"degraded":false}]"#;
        let news = News::of(vec![
            notified(occupancy::CHANNEL, occ),
            notified(HIVE_CHANNEL, "5"),
            notified(HIVE_CHANNEL, "9"),
            notified(HIVE_CHANNEL, "5"),
            notified(occupancy::CHANNEL, " []"),
            notified(occupancy::CHANNEL, "not json"),
            notified(HIVE_CHANNEL, "x"),
            notified(HIVE_CHANNEL, ""),
        ]);
        assert_eq!(
            news,
            News {
                occupancy: vec![3],
                hives: vec![5, 9],
                types: true,
                listening: false,
            }
        );
        assert!(News::of(vec![Heard::Listening(vec![])]).listening);
    }

    #[test]
    fn written_hives_are_announced_in_payloads_postgresql_takes() {
        assert!(replica_notices(&[]).is_empty());
        assert_eq!(replica_notices(&[3, 5, 12]), ["3,5,12"]);
        let ids: Vec<i64> = (1_000_000..1_003_000).collect();
        let cut = replica_notices(&ids);
        assert!(cut.len() > 1 && cut.iter().all(|p| p.len() <= NOTICE_MAX));
        let back: Vec<i64> = cut
            .iter()
            .flat_map(|p| p.split(',').map(|id| id.parse::<i64>().unwrap()))
            .collect();
        assert_eq!(back, ids);
    }

    #[test]
    fn pass_times_read_back() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_547_200_123);
        assert_eq!(unix_ms(t), "1764547200123");
        assert_eq!(from_unix_ms(b"1764547200123"), Some(t));
        assert_eq!(from_unix_ms(b"soon"), None);
    }
}
