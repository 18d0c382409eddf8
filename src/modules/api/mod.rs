//! `handler = "api"`: the JSON API under `/v1/` (DESIGN.md section 8).
//!
//! A request is handled in two steps, nginx's upstream done the I/O thread's way:
//!
//! ```text
//!   on the loop: body size, Authorization (a verified token, cached), route + validation
//!        |  errors answered here, without the database
//!        v
//!   WorkerDb::ask(call.run) -> Flow::Wait, parked for at most database.query_timeout
//!        |
//!   the I/O thread runs the call on a pooled connection; its answer wakes the connection
//!        v
//!   the same handler again: the answer as JSON, or 503 with Retry-After (time up, no database)
//! ```
//!
//! Every answer is JSON, errors included ([`error`]); none closes a keep-alive connection.

pub mod accounts;
pub mod anon;
pub mod body;
pub mod caller;
pub mod config;
pub mod db;
pub mod error;
pub mod hives;
pub mod me;
pub mod micro;
pub mod page;
pub mod premium;
pub mod public;
pub mod route;
pub mod routes;
pub mod sensors;
pub mod stats;
pub mod tokens;

use std::rc::Rc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::http::conf::LocationConf;
use crate::http::module::{ContentKey, InitError, Module, Registry};
use crate::http::parse::Method;
use crate::http::phase::{ContentHandler, Cx};
use crate::http::{Flow, HttpError, Request, Response};
use crate::log;
use crate::modules::auth::Auth;
use crate::modules::cache::CacheConf;
use crate::modules::database::query::{Answer, Asked, Pending};
use crate::modules::ingest::worker::WorkerDbSlot;
use crate::modules::live::{self, sse::Live, Bus, LiveConf};

use anon::{Anon, Lookup, What};
use caller::Caller;
use error::ApiError;
use micro::Micro;
use route::{Call, Json};

/// The `handler` of the locations this module answers.
const HANDLER: &str = "api";

pub struct ApiModule;

/// The API of one cycle: the worker's I/O thread and the token verifier, when configured, and
/// the worker's cached reads.
struct Api {
    db: Option<Rc<WorkerDbSlot>>,
    auth: Option<Rc<Auth>>,
    timeout: Duration,
    micro: Micro,
    /// The public resources' answers.
    anon: Rc<Anon>,
    /// Whether `anon` follows the cache manager's word on this worker yet (from the first
    /// public read on: nothing is kept before).
    following: std::cell::Cell<bool>,
    /// The zone of the public reads' figures; `anon` counts in this worker's row from its
    /// first read on.
    counters: Option<crate::core::shm::Zone>,
    /// The worker's bus of occupancy changes, and `[live]`.
    live: Option<Rc<Bus>>,
    live_conf: LiveConf,
}

impl Module for ApiModule {
    fn name(&self) -> &'static str {
        HANDLER
    }

    fn zones(&self, _conf: &crate::core::config::Conf) -> Vec<(String, usize)> {
        vec![(stats::ZONE.to_string(), stats::zone_size())]
    }

    fn handlers(&self) -> &[&'static str] {
        &[HANDLER]
    }

    fn init(&self, reg: &mut Registry<'_>) -> Result<(), InitError> {
        let db = reg.shared.get::<WorkerDbSlot>();
        let auth = reg.shared.get::<Auth>();
        let timeout = db
            .as_ref()
            .and_then(|d| d.conf())
            .map_or(Duration::from_secs(5), |c| c.query_timeout.0);
        let cache = reg.conf.section::<CacheConf>();
        let micro = Micro::new(cache.micro_ttl.0);
        let ingest = reg.zones.get(crate::modules::ingest::stats::ZONE).cloned();
        let anon = Rc::new(Anon::new(cache.micro_ttl.0, cache.max_stale.0, ingest));
        let counters = reg.zones.get(stats::ZONE).cloned();
        let live = reg.shared.get::<Bus>();
        let live_conf = reg.conf.section::<LiveConf>().clone();
        let api = Rc::new(Api {
            db,
            auth,
            timeout,
            micro,
            anon,
            following: std::cell::Cell::new(false),
            counters,
            live,
            live_conf,
        });
        reg.content(
            ContentKey::Handler(HANDLER),
            Box::new(move |_: &LocationConf| Ok(Rc::clone(&api) as Rc<dyn ContentHandler>)),
        );
        Ok(())
    }
}

/// A parked request's question, and what it reads (a `GET`: its answer is kept in the
/// micro-cache) or that it writes (`None`). The connection keeps the wait's deadline.
struct Waiting {
    pending: Pending,
    read: Option<micro::Key>,
}

/// A parked read of a public resource; `live`: the state a live stream starts with.
struct AnonWaiting {
    what: What,
    pending: Pending,
    live: bool,
}

impl ContentHandler for Api {
    fn handle(&self, req: &mut Request, cx: &mut Cx<'_>) -> Result<Flow, HttpError> {
        if let Some(w) = req.ctx_mut::<Waiting>() {
            return Ok(self.waited(w, cx));
        }
        if let Some(w) = req.ctx_mut::<AnonWaiting>() {
            let (what, live) = (w.what, w.live);
            return Ok(match (self.anon_waited(w, cx), what) {
                (Flow::Done(r), What::Occupancy(hive)) if live => self.stream(req, hive, r, cx),
                (flow, _) => flow,
            });
        }
        if matches!(req.method(), Method::Get | Method::Head) {
            if let Some(what) = What::parse(&req.path) {
                return Ok(self.anon(req, what, cx));
            }
        }
        match self.start(req, cx) {
            Ok(flow) => Ok(flow),
            Err(e) => Ok(Flow::Done(e.response())),
        }
    }
}

impl Api {
    /// The loop's step: checks, then the question to the I/O thread.
    fn start(&self, req: &mut Request, cx: &mut Cx<'_>) -> Result<Flow, ApiError> {
        let caller = self.caller(req)?;
        let query = req.query().map(String::from_utf8_lossy);
        let read = (req.method_str() == "GET" && self.micro.on()).then(|| {
            let target = match &query {
                Some(q) => format!("{}?{q}", req.path),
                None => req.path.clone(),
            };
            (caller.as_ref().map(|c| c.uid.clone()), target)
        });
        if let Some((body, etag)) = read.as_ref().and_then(|k| self.micro.get(k, cx.now_ms)) {
            return Ok(Flow::Done(self.read_response(body, etag, read.as_ref())));
        }
        let call = route::route(
            req.method_str(),
            &req.path,
            query.as_deref(),
            &req.body,
            caller.as_ref(),
        )?;
        match call {
            Call::Anon(what) => return Ok(self.anon(req, what, cx)),
            Call::Live(hive) => return Ok(self.live(req, hive, cx)),
            _ => {}
        }
        let db = self.db.as_ref().and_then(|s| s.get()).ok_or_else(|| {
            ApiError::unavailable("this server has no database configured for the API")
        })?;
        let pending = db
            .ask(run(call), self.timeout, cx.token, cx.posted)
            .ok_or_else(|| ApiError::unavailable("too many requests wait for the database"))?;
        req.set_ctx(Waiting { pending, read });
        cx.wait = Some(self.timeout);
        Ok(Flow::Wait)
    }

    /// A public resource: kept (answered now, refreshed in the background when expired) or
    /// read, the request waiting.
    fn anon(&self, req: &mut Request, what: What, cx: &mut Cx<'_>) -> Flow {
        let Some(db) = self.db.as_ref().and_then(|s| s.get()) else {
            return Flow::Done(
                ApiError::unavailable("this server has no database configured for the API")
                    .response(),
            );
        };
        if let What::Hive(hive) = what {
            if req.header("authorization").is_some() {
                match self.caller(req) {
                    Ok(Some(c)) => self.visited(&db, c.uid, hive),
                    Ok(None) => {}
                    Err(e) => return Flow::Done(e.response()),
                }
            }
        }
        if !self.following.replace(true) {
            let hear: Rc<dyn crate::modules::database::listen::Hear> = self.anon.clone();
            db.hear(crate::modules::cache::REPLICA_CHANNEL, Rc::downgrade(&hear));
            if let Some(z) = &self.counters {
                let row = stats::Stats::new(z.clone(), db.stats().slot());
                if let Some(bus) = &self.live {
                    bus.count_in(row.clone());
                }
                self.anon.count_in(row);
            }
        }
        match self.anon.lookup(what, cx.now_ms) {
            Lookup::Answer(r) => Flow::Done(r),
            Lookup::AnswerAndRefresh(r) => {
                let anon = Rc::clone(&self.anon);
                let sent = db.read_then(anon::fetch(what), self.timeout, move |asked| {
                    anon.refreshed(what, asked)
                });
                if !sent {
                    self.anon.refresh_refused(what);
                }
                Flow::Done(r)
            }
            Lookup::Read => match db.read(anon::fetch(what), self.timeout, cx.token, cx.posted) {
                Some(pending) => {
                    req.set_ctx(AnonWaiting {
                        what,
                        pending,
                        live: false,
                    });
                    cx.wait = Some(self.timeout);
                    Flow::Wait
                }
                None => Flow::Done(
                    ApiError::unavailable("too many requests wait for the database").response(),
                ),
            },
        }
    }

    /// `GET /v1/hives/{id}/live`: the occupancy read as the public read does it (kept, or read,
    /// the request waiting), then the stream.
    fn live(&self, req: &mut Request, hive: i64, cx: &mut Cx<'_>) -> Flow {
        match self.anon(req, What::Occupancy(hive), cx) {
            Flow::Done(r) => self.stream(req, hive, r, cx),
            Flow::Wait => {
                if let Some(w) = req.ctx_mut::<AnonWaiting>() {
                    w.live = true;
                }
                Flow::Wait
            }
            other => other,
        }
    }

    /// The live stream of `hive`, whose occupancy read answered `read`: an error stays the
    /// answer (404, 503); a state starts the stream.
    fn stream(&self, req: &Request, hive: i64, read: Response, cx: &mut Cx<'_>) -> Flow {
        let fallback = match read.body {
            crate::http::response::Body::Bytes(ref b) if read.status == 200 => b.clone(),
            _ => return Flow::Done(read),
        };
        let Some(bus) = &self.live else {
            return Flow::Done(
                ApiError::unavailable("this server streams no live updates").response(),
            );
        };
        let live = Live::open(
            bus,
            live::sse::Open {
                hive,
                fallback,
                last_event_id: req.header("last-event-id"),
                heartbeat: self.live_conf.heartbeat.0,
                retry: self.live_conf.retry.0,
                now_ms: cx.now_ms,
                token: cx.token,
                posted: cx.posted,
            },
        );
        let mut r = Response::new(200);
        r.content_type = Some("text/event-stream".into());
        r.header("Cache-Control", "no-cache");
        r.header("X-Accel-Buffering", "no");
        r.body = crate::http::response::Body::Stream(Box::new(live));
        Flow::Done(r)
    }

    /// A signed-in caller opened hive `hive`: its visit is recorded for `/v1/me/recent` (the
    /// user's row made on the first call), behind the answer; a failure is only logged.
    fn visited(&self, db: &crate::modules::ingest::worker::WorkerDb, uid: String, hive: i64) {
        let fetch: crate::modules::database::query::Fetch = Box::new(move |sources| {
            Box::pin(async move {
                let done = async {
                    let client = sources.pool.get().await?;
                    client
                        .execute(
                            "WITH u AS (
                                 INSERT INTO app_user (firebase_uid) VALUES ($1)
                                 ON CONFLICT (firebase_uid) DO UPDATE SET firebase_uid = EXCLUDED.firebase_uid
                                 RETURNING id)
                             INSERT INTO user_hive (user_id, hive_id, last_visited_at)
                             SELECT u.id, h.id, now() FROM u, hive h
                             WHERE h.id = $2 AND h.deleted_at IS NULL
                             ON CONFLICT (user_id, hive_id) DO UPDATE SET last_visited_at = now()",
                            &[&uid, &hive],
                        )
                        .await
                };
                let r: Result<u64, tokio_postgres::Error> = done.await;
                Box::new(r.map_err(|e| crate::modules::database::pool::describe(&e)))
                    as crate::modules::database::query::Answer
            })
        });
        let sent = db.read_then(fetch, self.timeout, |asked| {
            let why = match asked {
                crate::modules::database::query::Asked::Answer(a) => {
                    match a.downcast::<Result<u64, String>>() {
                        Ok(r) => match *r {
                            Ok(_) => return,
                            Err(why) => why,
                        },
                        Err(_) => "an answer of an unknown kind".into(),
                    }
                }
                crate::modules::database::query::Asked::Unreachable(why) => why,
                crate::modules::database::query::Asked::TimedOut => "no answer in time".into(),
            };
            log!(Warn, "api: a visit was not recorded: {why}");
        });
        if !sent {
            log!(
                Warn,
                "api: a visit was not recorded: the I/O thread takes no more now"
            );
        }
    }

    /// Run again after a public read's wait.
    fn anon_waited(&self, w: &mut AnonWaiting, cx: &mut Cx<'_>) -> Flow {
        match w.pending.take() {
            Some(asked) => Flow::Done(self.anon.arrived(w.what, asked, cx.now_ms)),
            None if cx.expired => Flow::Done(self.anon.arrived(
                w.what,
                crate::modules::database::query::Asked::TimedOut,
                cx.now_ms,
            )),
            None => Flow::Wait,
        }
    }

    /// Run again after a wait: the answer, 503 when the time is up, or wait on (woken early:
    /// the connection keeps the deadline set when the wait began).
    fn waited(&self, w: &mut Waiting, cx: &mut Cx<'_>) -> Flow {
        match w.pending.take() {
            Some(asked) => Flow::Done(self.answer(asked, w.read.take(), cx.now_ms)),
            None if cx.expired => Flow::Done(
                ApiError::unavailable(format!(
                    "the database did not answer within {}",
                    crate::core::config::Dur(self.timeout)
                ))
                .response(),
            ),
            None => Flow::Wait,
        }
    }

    /// The signed-in caller, if the request says who it is: a token that does not verify is
    /// 401 whatever the call.
    fn caller(&self, req: &Request) -> Result<Option<Caller>, ApiError> {
        let Some(value) = req.header("authorization") else {
            return Ok(None);
        };
        let token = bearer(value).ok_or_else(|| {
            ApiError::unauthorized("the Authorization field must be \"Bearer <Firebase ID token>\"")
        })?;
        let auth = self
            .auth
            .as_ref()
            .ok_or_else(|| ApiError::unauthorized("this server verifies no tokens ([auth])"))?;
        auth.caller(token, SystemTime::now())
            .map(|(uid, platform_admin)| {
                Some(Caller {
                    uid,
                    platform_admin,
                })
            })
            .map_err(|e| ApiError::unauthorized(format!("the token is refused: {e}")))
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The call as the I/O thread runs it.
fn run(call: Call) -> crate::modules::database::query::Run {
    Box::new(move |client| Box::pin(async move { Box::new(call.run(client).await) as Answer }))
}

impl Api {
    /// The response to a question's end. A read answered 200 is kept for the micro-cache's
    /// time; a write that succeeded empties it.
    fn answer(&self, asked: Asked, read: Option<micro::Key>, now_ms: u64) -> Response {
        let Asked::Answer(a) = asked else {
            return unanswered(asked);
        };
        let json = match a.downcast::<Result<Json, ApiError>>() {
            Ok(done) => match *done {
                Ok(json) => json,
                Err(e) => return e.response(),
            },
            Err(_) => {
                return ApiError::new(500, "internal", "an answer of an unknown kind").response()
            }
        };
        let body = Bytes::from(json.body);
        match read {
            Some(key) if json.status == 200 => {
                let etag = anon::etag(&body);
                let r = self.read_response(body.clone(), Rc::clone(&etag), Some(&key));
                self.micro.put(key, body, etag, now_ms);
                r
            }
            None if json.status < 300 => {
                self.micro.clear();
                json_response(json.status, body)
            }
            _ => json_response(json.status, body),
        }
    }

    /// A read's 200 answer with its validator; an anonymous one (the search) may be kept by
    /// anyone for the micro-cache's time.
    fn read_response(&self, body: Bytes, etag: Rc<str>, key: Option<&micro::Key>) -> Response {
        let mut r = json_response(200, body);
        r.etag = Some(crate::http::response::Text::Shared(etag));
        if key.is_some_and(|(uid, _)| uid.is_none()) {
            r.header("Cache-Control", self.micro.cache_control());
        }
        r
    }
}

/// The response to a question that had no answer.
fn unanswered(asked: Asked) -> Response {
    match asked {
        Asked::Answer(_) => ApiError::new(500, "internal", "an answer out of place").response(),
        Asked::Unreachable(why) => {
            log!(Warn, "api: the database is unreachable: {why}");
            ApiError::unavailable("the database is unreachable").response()
        }
        Asked::TimedOut => ApiError::unavailable("the database did not answer in time").response(),
    }
}

fn json_response(status: u16, body: Bytes) -> Response {
    if body.is_empty() {
        return Response::new(status);
    }
    Response::with_body(status, "application/json", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_takes_the_token_of_the_bearer_scheme_only() {
        assert_eq!(bearer(b"Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer(b"bearer   abc "), Some("abc"));
        assert_eq!(bearer(b"Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearer"), None);
        assert_eq!(bearer(b"\xff\xfe"), None);
    }
}
