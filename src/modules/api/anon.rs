//! The anonymous reads of the public resources at nginx speed (DESIGN.md section 7): a hive's
//! occupancy, its details, the hive types. Each worker keeps the answers it made for
//! `cache.micro_ttl` and serves them on the loop, with no question to anybody:
//!
//! ```text
//!   fresh entry (younger than micro_ttl)  -> answered on the loop
//!   expired entry                         -> answered on the loop as it is, and one refresh
//!                                            goes to the I/O thread (nginx's
//!                                            proxy_cache_use_stale updating); its answer
//!                                            replaces the entry
//!   no entry                              -> the request waits for the I/O thread's read
//!
//!   I/O thread: memcached (the replica the cache manager keeps) -> hit: the answer
//!               miss or memcached down -> PostgreSQL, and the replica is filled (`add`)
//! ```
//!
//! An answer says `"stale": true` when its number may be behind: it came from the replica and
//! the cache manager's last pass is older than `cache.max_stale`, reports wait in a spool, a
//! worker lost PostgreSQL, or a refresh found neither memcached nor PostgreSQL (the old entry
//! is kept and served as stale). Every answer carries an ETag (304 on `If-None-Match`, by the
//! engine's not-modified filter) and `Cache-Control: public, max-age=<micro_ttl>`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::core::shm::Zone;
use crate::http::response::Text;
use crate::http::Response;
use crate::modules::api::error::ApiError;
use crate::modules::api::public;
use crate::modules::api::stats::{Answered, Source, Stats};
use crate::modules::cache::keys;
use crate::modules::database::listen::Hear;
use crate::modules::database::pool::describe;
use crate::modules::database::query::{Answer, Asked, Fetch, Sources};
use crate::modules::ingest::stats as istats;

/// How long a value a worker filled after a miss stays in memcached (the cache manager's
/// writes refresh what changes).
const FILL_EXPTIME: u32 = 86_400;
/// Entries kept at most per worker; past that, the expired go, and if none had, all.
const MAX_ENTRIES: usize = 100_000;

/// A public resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum What {
    Occupancy(i64),
    Hive(i64),
    Types,
}

impl What {
    /// The resource at `path` (`/v1/hives/{id}/occupancy`, `/v1/hives/{id}`,
    /// `/v1/hive-types`), if it is one.
    pub fn parse(path: &str) -> Option<What> {
        if path == "/v1/hive-types" {
            return Some(What::Types);
        }
        let rest = path.strip_prefix("/v1/hives/")?;
        let (id, tail) = match rest.split_once('/') {
            Some((id, tail)) => (id, Some(tail)),
            None => (rest, None),
        };
        let id = id_of(id)?;
        match tail {
            None => Some(What::Hive(id)),
            Some("occupancy") => Some(What::Occupancy(id)),
            Some(_) => None,
        }
    }

    fn name(&self) -> String {
        match self {
            What::Occupancy(id) | What::Hive(id) => format!("hive {id}"),
            What::Types => "the hive types".into(),
        }
    }
}

/// A positive decimal id without sign or leading zero, as the API writes them.
fn id_of(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

/// The parts of a resource as stored (the replica's bytes, `"stale":false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parts {
    Occupancy(Vec<u8>),
    Hive { hive: Vec<u8>, occupancy: Vec<u8> },
    Types(Vec<u8>),
}

/// What a read found on the I/O thread.
#[derive(Debug)]
pub enum Found {
    /// In the replica, with the start of the cache manager's last pass (unix ms) if known.
    Replica { parts: Parts, pass_ms: Option<u64> },
    /// In PostgreSQL (the replica missed, or memcached is down).
    Database(Parts),
    /// Nowhere: no live hive has that id.
    NotFound,
    /// Neither memcached nor PostgreSQL answered (why).
    Unreachable(String),
}

/// The read of `what`, for the I/O thread.
pub fn fetch(what: What) -> Fetch {
    Box::new(move |sources| Box::pin(async move { Box::new(find(what, sources).await) as Answer }))
}

/// The replica first, then PostgreSQL (filling the replica).
async fn find(what: What, sources: Sources<'_>) -> Found {
    let wanted: Vec<String> = match what {
        What::Occupancy(id) => vec![keys::occupancy(id)],
        What::Hive(id) => vec![keys::hive(id), keys::occupancy(id)],
        What::Types => vec![keys::hive_types()],
    };
    if let Some(replica) = sources.replica {
        let mut ask = wanted.clone();
        ask.push(keys::pass());
        if let Ok(mut got) = replica.get(&ask).await {
            let pass_ms = got
                .remove(&keys::pass())
                .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok());
            let mut values = wanted.iter().map(|k| got.remove(k));
            let parts = match what {
                What::Occupancy(_) => values.next().flatten().map(Parts::Occupancy),
                What::Hive(_) => match (values.next().flatten(), values.next().flatten()) {
                    (Some(hive), Some(occupancy)) => Some(Parts::Hive { hive, occupancy }),
                    _ => None,
                },
                What::Types => values.next().flatten().map(Parts::Types),
            };
            if let Some(parts) = parts {
                return Found::Replica { parts, pass_ms };
            }
        }
    }
    let client = match sources.pool.get().await {
        Ok(c) => c,
        Err(e) => return Found::Unreachable(describe(&e)),
    };
    let read = async {
        Ok::<_, tokio_postgres::Error>(match what {
            What::Occupancy(id) => public::occupancy(&client, id).await?.map(Parts::Occupancy),
            What::Hive(id) => {
                let hive = public::hive(&client, id).await?;
                let occupancy = public::occupancy(&client, id).await?;
                match (hive, occupancy) {
                    (Some(hive), Some(occupancy)) => Some(Parts::Hive { hive, occupancy }),
                    _ => None,
                }
            }
            What::Types => Some(Parts::Types(public::hive_types(&client).await?)),
        })
    };
    match read.await {
        Ok(Some(parts)) => {
            if let Some(replica) = sources.replica {
                let fill = |key: String, v: &Vec<u8>| replica.add(key, v.clone(), FILL_EXPTIME);
                match (&parts, what) {
                    (Parts::Occupancy(o), What::Occupancy(id)) => fill(keys::occupancy(id), o),
                    (Parts::Hive { hive, occupancy }, What::Hive(id)) => {
                        fill(keys::hive(id), hive);
                        fill(keys::occupancy(id), occupancy);
                    }
                    (Parts::Types(t), _) => fill(keys::hive_types(), t),
                    _ => {}
                }
            }
            Found::Database(parts)
        }
        Ok(None) => Found::NotFound,
        Err(e) => Found::Unreachable(describe(&e)),
    }
}

/// One answer as the worker keeps it.
struct Entry {
    /// What it was made of (None: a 404), and whether it was marked stale.
    parts: Option<Parts>,
    stale: bool,
    response: Ready,
    made_ms: u64,
    /// A refresh is out: the expired entry is served meanwhile, and no second one is sent.
    refreshing: bool,
}

/// A made answer: shared, never copied.
#[derive(Clone)]
struct Ready {
    status: u16,
    body: Bytes,
    etag: Option<Rc<str>>,
}

/// What the loop does with a request for a public resource.
pub enum Lookup {
    /// Answer this now.
    Answer(Response),
    /// Answer this now, and refresh the entry (send [`fetch`], give its end to
    /// [`Anon::refreshed`]).
    AnswerAndRefresh(Response),
    /// Nothing kept: read it (send [`fetch`], the request waits; give the end to
    /// [`Anon::arrived`]).
    Read,
}

/// One worker's public answers.
pub struct Anon {
    ttl_ms: u64,
    max_stale_ms: u64,
    /// `Cache-Control` of every answer.
    cache_control: &'static str,
    /// The ingest figures of the node: reports in a spool, PostgreSQL lost.
    ingest: Option<Zone>,
    entries: RefCell<HashMap<What, Entry>>,
    /// The loop's clock at the last lookup: when a refresh that ends between requests is
    /// taken to be made (a little early at worst, so it expires a little early).
    seen_ms: Cell<u64>,
    /// This worker's figures, once it knows its slot.
    stats: std::cell::OnceCell<Stats>,
}

impl Anon {
    pub fn new(micro_ttl: Duration, max_stale: Duration, ingest: Option<Zone>) -> Anon {
        Anon {
            ttl_ms: micro_ttl.as_millis() as u64,
            max_stale_ms: max_stale.as_millis() as u64,
            cache_control: cache_control(micro_ttl),
            ingest,
            entries: RefCell::new(HashMap::new()),
            seen_ms: Cell::new(0),
            stats: std::cell::OnceCell::new(),
        }
    }

    /// Counts this worker's answers and reads in `stats` from now on.
    pub fn count_in(&self, stats: Stats) {
        let _ = self.stats.set(stats);
    }

    fn answered(&self, how: Answered) {
        if let Some(s) = self.stats.get() {
            s.answered(how);
        }
    }

    fn read_by(&self, from: Source) {
        if let Some(s) = self.stats.get() {
            s.read(from);
        }
    }

    /// The answer for `what` at `now_ms` (the loop's clock), if one is kept.
    pub fn lookup(&self, what: What, now_ms: u64) -> Lookup {
        self.seen_ms.set(now_ms);
        let mut entries = self.entries.borrow_mut();
        let Some(e) = entries.get_mut(&what) else {
            self.answered(Answered::Waited);
            return Lookup::Read;
        };
        let r = self.response(&e.response);
        if now_ms < e.made_ms + self.ttl_ms {
            self.answered(Answered::Fresh);
            return Lookup::Answer(r);
        }
        self.answered(Answered::Expired);
        if e.refreshing {
            return Lookup::Answer(r);
        }
        e.refreshing = true;
        Lookup::AnswerAndRefresh(r)
    }

    /// A refresh could not be sent: the entry may be refreshed by the next request.
    pub fn refresh_refused(&self, what: What) {
        if let Some(e) = self.entries.borrow_mut().get_mut(&what) {
            e.refreshing = false;
        }
    }

    /// A refresh ended: the entry is replaced, or kept and marked stale when neither memcached
    /// nor PostgreSQL answered.
    pub fn refreshed(&self, what: What, asked: Asked) {
        let now_ms = self.seen_ms.get();
        match self.made(asked) {
            Ok((parts, stale, ready)) => self.keep(what, parts, stale, ready, now_ms),
            Err(why) => {
                let mut entries = self.entries.borrow_mut();
                let Some(e) = entries.get_mut(&what) else {
                    return;
                };
                e.refreshing = false;
                e.made_ms = now_ms;
                if let (Some(parts), false) = (&e.parts, e.stale) {
                    crate::log!(Warn, "api: {} served stale: {why}", what.name());
                    e.response = ready(parts, true);
                    e.stale = true;
                }
            }
        }
    }

    /// The read of a request that waited ended: its answer (kept for the others), or 503.
    pub fn arrived(&self, what: What, asked: Asked, now_ms: u64) -> Response {
        match self.made(asked) {
            Ok((parts, stale, ready)) => {
                let r = self.response(&ready);
                self.keep(what, parts, stale, ready, now_ms);
                r
            }
            Err(why) => {
                crate::log!(Warn, "api: {} cannot be read: {why}", what.name());
                ApiError::unavailable("neither the replica nor the database answered").response()
            }
        }
    }

    fn keep(&self, what: What, parts: Option<Parts>, stale: bool, response: Ready, now_ms: u64) {
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&what) {
            let ttl = self.ttl_ms;
            entries.retain(|_, e| now_ms < e.made_ms + ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            what,
            Entry {
                parts,
                stale,
                response,
                made_ms: now_ms,
                refreshing: false,
            },
        );
    }

    /// The answer a read's end makes: (parts, stale, answer), or why there is none.
    fn made(&self, asked: Asked) -> Result<(Option<Parts>, bool, Ready), String> {
        let found = match asked {
            Asked::Answer(a) => match a.downcast::<Found>() {
                Ok(f) => *f,
                Err(_) => return Err("an answer of an unknown kind".into()),
            },
            Asked::Unreachable(why) => {
                self.read_by(Source::Nobody);
                return Err(why);
            }
            Asked::TimedOut => {
                self.read_by(Source::Nobody);
                return Err("no answer in time".into());
            }
        };
        self.read_by(match &found {
            Found::Replica { .. } => Source::Replica,
            Found::Database(_) | Found::NotFound => Source::Database,
            Found::Unreachable(_) => Source::Nobody,
        });
        let (parts, stale) = match found {
            Found::Replica { parts, pass_ms } => {
                let old = pass_ms.is_none_or(|p| wall_ms().saturating_sub(p) > self.max_stale_ms);
                (parts, old || self.behind())
            }
            Found::Database(parts) => (parts, self.behind()),
            Found::NotFound => {
                let e = ApiError::not_found("this hive").response();
                let body = match e.body {
                    crate::http::response::Body::Bytes(b) => b,
                    _ => Bytes::new(),
                };
                let ready = Ready {
                    status: 404,
                    body,
                    etag: None,
                };
                return Ok((None, false, ready));
            }
            Found::Unreachable(why) => return Err(why),
        };
        let r = ready(&parts, stale);
        Ok((Some(parts), stale, r))
    }

    /// Reports wait in a spool, or a worker lost PostgreSQL.
    fn behind(&self) -> bool {
        self.ingest.as_ref().is_some_and(istats::behind)
    }

    fn response(&self, r: &Ready) -> Response {
        let mut resp = Response::with_body(r.status, "application/json", r.body.clone());
        if let Some(etag) = &r.etag {
            resp.etag = Some(Text::Shared(Rc::clone(etag)));
        }
        resp.header("Cache-Control", self.cache_control);
        resp
    }
}

/// The cache manager's word that it wrote these hives to the replica
/// ([`crate::modules::cache::REPLICA_CHANNEL`]): their answers expire, so the next request
/// refreshes them (and is answered meanwhile with what was kept).
impl Hear for Anon {
    fn listening(&self) {
        self.expire(None);
    }

    fn notified(&self, payload: &str) {
        if payload.is_empty() {
            return self.expire(None);
        }
        let ids: Vec<i64> = payload
            .split(',')
            .filter_map(|id| id.trim().parse().ok())
            .collect();
        self.expire(Some(&ids));
    }
}

impl Anon {
    /// Expires the answers of `hives` (every answer, the hive types too: None).
    pub fn expire(&self, hives: Option<&[i64]>) {
        let mut entries = self.entries.borrow_mut();
        match hives {
            None => entries.values_mut().for_each(|e| e.made_ms = 0),
            Some(ids) => {
                for id in ids {
                    for w in [What::Occupancy(*id), What::Hive(*id)] {
                        if let Some(e) = entries.get_mut(&w) {
                            e.made_ms = 0;
                        }
                    }
                }
            }
        }
    }
}

/// The answer of `parts`, `"stale"` set as said.
fn ready(parts: &Parts, stale: bool) -> Ready {
    let body = match parts {
        Parts::Occupancy(o) => marked(o, stale),
        Parts::Types(t) => t.clone(),
        Parts::Hive { hive, occupancy } => with_occupancy(hive, &marked(occupancy, stale)),
    };
    let etag = etag(&body);
    Ready {
        status: 200,
        body: Bytes::from(body),
        etag: Some(etag),
    }
}

/// The details object `hive` with `"occupancy": occupancy` as its last member: the answer of
/// `GET /v1/hives/{id}`.
pub fn with_occupancy(hive: &[u8], occupancy: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(hive.len() + occupancy.len() + 16);
    match hive.iter().rposition(|&c| c == b'}') {
        Some(end) => {
            b.extend_from_slice(&hive[..end]);
            b.extend_from_slice(b",\"occupancy\":");
            b.extend_from_slice(occupancy);
            b.push(b'}');
        }
        None => b.extend_from_slice(hive),
    }
    b
}

/// `occupancy` with `"stale":true` when `stale` (the stored bytes say false).
fn marked(occupancy: &[u8], stale: bool) -> Vec<u8> {
    const FALSE: &[u8] = b"\"stale\":false";
    match (
        stale,
        occupancy.windows(FALSE.len()).position(|w| w == FALSE),
    ) {
        (true, Some(at)) => {
            let mut v = Vec::with_capacity(occupancy.len());
            v.extend_from_slice(&occupancy[..at]);
            v.extend_from_slice(b"\"stale\":true");
            v.extend_from_slice(&occupancy[at + FALSE.len()..]);
            v
        }
        _ => occupancy.to_vec(),
    }
}

/// A strong validator of `body`: 64 bits of its SHA-256, quoted.
pub fn etag(body: &[u8]) -> Rc<str> {
    use std::fmt::Write as _;
    let d = Sha256::digest(body);
    let mut s = String::with_capacity(18);
    s.push('"');
    for b in &d[..8] {
        let _ = write!(s, "{b:02x}");
    }
    s.push('"');
    Rc::from(s)
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `Cache-Control` for answers kept `ttl` by each worker: a client may keep them as long.
pub fn cache_control(ttl: Duration) -> &'static str {
    const SECONDS: [&str; 11] = [
        "no-cache",
        "public, max-age=1",
        "public, max-age=2",
        "public, max-age=3",
        "public, max-age=4",
        "public, max-age=5",
        "public, max-age=6",
        "public, max-age=7",
        "public, max-age=8",
        "public, max-age=9",
        "public, max-age=10",
    ];
    let s = ttl.as_secs() as usize;
    match SECONDS.get(s) {
        Some(v) => v,
        // Configured once per cycle: leaked once per reload, a few bytes.
        None => Box::leak(format!("public, max-age={s}").into_boxed_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(What::parse("/v1/hives/7"), Some(What::Hive(7)));
        assert_eq!(
            What::parse("/v1/hives/42/occupancy"),
            Some(What::Occupancy(42))
        );
        assert_eq!(What::parse("/v1/hive-types"), Some(What::Types));
        for no in [
            "/v1/hives",
            "/v1/hives/",
            "/v1/hives/07",
            "/v1/hives/-1",
            "/v1/hives/1/live",
            "/v1/hives/1/occupancy/x",
            "/v1/hives/99999999999999999999",
            "/v1/hive-types/1",
        ] {
            assert_eq!(What::parse(no), None, "{no}");
        }
    }

    #[test]
    fn stale_is_marked_in_the_occupancy_only() {
        let occ = br#"{"hive_id":1,"occupancy":3,"stale":false,"degraded":false}"#.to_vec();
        let hive = br#"{"id":1,"name":"\"stale\":false"}"#.to_vec();
        let r = ready(
            &Parts::Hive {
                hive: hive.clone(),
                occupancy: occ.clone(),
            },
            true,
        );
        assert_eq!(
            &r.body[..],
            br#"{"id":1,"name":"\"stale\":false","occupancy":{"hive_id":1,"occupancy":3,"stale":true,"degraded":false}}"#
        );
        let fresh = ready(&Parts::Occupancy(occ.clone()), false);
        assert_eq!(&fresh.body[..], &occ[..]);
        assert_ne!(fresh.etag, ready(&Parts::Occupancy(occ), true).etag);
    }

    #[test]
    fn entries_are_served_then_refreshed_once() {
        let a = Anon::new(Duration::from_secs(1), Duration::from_secs(120), None);
        let w = What::Occupancy(1);
        assert!(matches!(a.lookup(w, 0), Lookup::Read));
        let found = Found::Database(Parts::Occupancy(b"{\"stale\":false}".to_vec()));
        let r = a.arrived(w, Asked::Answer(Box::new(found)), 0);
        assert_eq!(r.status, 200);
        assert!(r.etag.is_some());
        assert_eq!(r.get("Cache-Control"), Some("public, max-age=1"));
        assert!(matches!(a.lookup(w, 999), Lookup::Answer(_)));
        assert!(matches!(a.lookup(w, 1000), Lookup::AnswerAndRefresh(_)));
        assert!(
            matches!(a.lookup(w, 1001), Lookup::Answer(_)),
            "one refresh"
        );
        a.refreshed(w, Asked::Unreachable("down".into()));
        let Lookup::Answer(r) = a.lookup(w, 1003) else {
            panic!("kept")
        };
        let crate::http::response::Body::Bytes(b) = r.body else {
            panic!()
        };
        assert_eq!(&b[..], b"{\"stale\":true}");
        assert!(matches!(a.lookup(w, 2002), Lookup::AnswerAndRefresh(_)));
        let found = Found::NotFound;
        a.refreshed(w, Asked::Answer(Box::new(found)));
        let Lookup::Answer(r) = a.lookup(w, 2004) else {
            panic!("kept")
        };
        assert_eq!(r.status, 404);
    }

    #[test]
    fn a_replica_answer_older_than_max_stale_is_stale() {
        let a = Anon::new(Duration::from_secs(1), Duration::from_secs(120), None);
        let w = What::Types;
        let old = Found::Replica {
            parts: Parts::Occupancy(b"{\"stale\":false}".to_vec()),
            pass_ms: Some(wall_ms() - 121_000),
        };
        let r = a.arrived(w, Asked::Answer(Box::new(old)), 0);
        let crate::http::response::Body::Bytes(b) = r.body else {
            panic!()
        };
        assert_eq!(&b[..], b"{\"stale\":true}");
        let none = a.arrived(w, Asked::Unreachable("x".into()), 0);
        assert_eq!(none.status, 503);
    }
}
