//! The business API's calls: [`route`] turns a request (method, path, query, body, caller) into
//! a [`Call`] on the event loop, answering what needs no database (404 and 405 for the path,
//! 401 without a caller, 400 and 413 for the body); [`Call::run`] does the database work on the
//! worker's I/O thread and gives the [`Json`] answer.
//!
//! ```text
//! /v1/accounts                       GET list, POST create (platform admin)
//! /v1/accounts/{id}                  GET
//! /v1/accounts/{id}/admins/{uid}     PUT, DELETE (platform admin)
//! /v1/accounts/{id}/hives            GET list, POST create
//! /v1/accounts/{id}/sensors          GET list, POST register
//! /v1/accounts/{id}/tokens           GET list, POST create
//! /v1/hives/{id}                     GET (anonymous), PATCH, DELETE
//! /v1/hives/{id}/occupancy           GET (anonymous)
//! /v1/hives/{id}/history             GET (premium: the feature `history`)
//! /v1/hives/{id}/peak-hours          GET (premium: the feature `peak_hours`)
//! /v1/sensors/{device_id}            GET (health), PATCH, DELETE
//! /v1/sensors/{device_id}/config     PUT
//! /v1/tokens/{id}                    DELETE (revoke)
//! /v1/me...                          the caller's own resources ([`super::me`])
//! ```

use tokio_postgres::Client;

use super::accounts::{self, AccountCall};
use super::anon::What;
use super::body::{self, Obj};
use super::caller::Caller;
use super::db::Who;
use super::error::ApiError;
use super::hives::{self, HiveCall};
use super::me::{self, MeCall};
use super::page::Page;
use super::premium::{self, PremiumCall};
use super::public::{self, search::Search};
use super::sensors::{self, SensorCall};
use super::tokens::{self, TokenCall};

/// One API call, parsed and validated on the event loop (no database yet): Send + 'static,
/// because it is moved to the worker's I/O thread.
#[derive(Debug)]
pub enum Call {
    Account(AccountCall),
    Hive(HiveCall),
    Sensor(SensorCall),
    Token(TokenCall),
    /// A public resource, answered from the worker's cache and the replica ([`super::anon`]).
    Anon(What),
    /// `GET /v1/hives`: the search, from PostgreSQL.
    Search(Search),
    /// A premium read of a hive: history or peak hours ([`super::premium`]).
    Premium(PremiumCall),
    /// The signed-in caller's own resources, `/v1/me...`.
    Me(MeCall),
    /// `GET /v1/hives/{id}/live`: the hive's state now, then its changes, streamed by the
    /// worker ([`crate::modules::live`]); run here, it is the state now.
    Live(i64),
}

/// An answer: status and JSON body (empty for 204).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The request as the parsers of each resource see it.
#[derive(Debug, Clone, Copy)]
pub struct Req<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    pub caller: Option<&'a Caller>,
}

impl Req<'_> {
    /// The signed-in caller, or 401.
    pub fn who(&self) -> Result<Who, ApiError> {
        self.caller
            .map(Who::from)
            .ok_or_else(|| ApiError::unauthorized("this call needs a signed-in caller"))
    }

    /// The platform admin calling, or 401 (anonymous) / 403 (anyone else).
    pub fn platform_admin(&self) -> Result<Who, ApiError> {
        let who = self.who()?;
        if !who.platform_admin {
            return Err(ApiError::forbidden("only a platform admin may do this"));
        }
        Ok(who)
    }

    /// The page a list asks for.
    pub fn page(&self) -> Result<Page, ApiError> {
        Page::parse(self.query)
    }

    /// The body as a JSON object of `allowed` keys.
    pub fn object(&self, allowed: &[&str]) -> Result<Obj, ApiError> {
        body::object(self.body, allowed)
    }

    fn not_allowed(&self) -> ApiError {
        ApiError::method_not_allowed(self.method, self.path)
    }

    fn not_found(&self) -> ApiError {
        ApiError::new(
            404,
            "not_found",
            format!("no API resource at {}", self.path),
        )
    }
}

/// Parses method + path (already percent-decoded and normalised, e.g. "/v1/hives/7"),
/// the raw query string (without '?'), and the body. Validation errors (bad JSON, unknown
/// field, out of range, bad time zone...) are answered here, before any database work.
/// `caller` is None for an anonymous request: calls that need a signed-in caller answer 401 here.
/// Unknown path: 404 not_found; known path with another method: 405.
pub fn route(
    method: &str,
    path: &str,
    query: Option<&str>,
    body: &[u8],
    caller: Option<&Caller>,
) -> Result<Call, ApiError> {
    let req = Req {
        method,
        path,
        query,
        body,
        caller,
    };
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(req.not_found());
    };
    if body.len() > body::MAX_BODY {
        return Err(ApiError::too_large(body::MAX_BODY));
    }
    let segs: Vec<&str> = rest.split('/').collect();
    match segs.as_slice() {
        ["accounts", rest @ ..] => under_accounts(&req, rest),
        ["hives"] => match method {
            "GET" => public::search::parse(query).map(Call::Search),
            _ => Err(req.not_allowed()),
        },
        ["hive-types"] => match method {
            "GET" => Ok(Call::Anon(What::Types)),
            _ => Err(req.not_allowed()),
        },
        ["hives", id, rest @ ..] => under_hives(&req, id_of(&req, id)?, rest),
        ["sensors", rest @ ..] => under_sensors(&req, rest),
        ["me", rest @ ..] => me::route(&req, rest).map(Call::Me),
        ["tokens", id] => {
            let id = id_of(&req, id)?;
            match method {
                "DELETE" => tokens::revoke(&req, id).map(Call::Token),
                _ => Err(req.not_allowed()),
            }
        }
        _ => Err(req.not_found()),
    }
}

/// `/v1/accounts...`
fn under_accounts(req: &Req<'_>, segs: &[&str]) -> Result<Call, ApiError> {
    let m = req.method;
    let (id, rest) = match segs {
        [] => {
            return match m {
                "GET" => accounts::list(req),
                "POST" => accounts::create(req),
                _ => Err(req.not_allowed()),
            }
            .map(Call::Account)
        }
        [id, rest @ ..] => (id_of(req, id)?, rest),
    };
    match (rest, m) {
        ([], "GET") => accounts::get(req, id).map(Call::Account),
        (["admins", uid], "PUT") => accounts::add_admin(req, id, uid).map(Call::Account),
        (["admins", uid], "DELETE") => accounts::remove_admin(req, id, uid).map(Call::Account),
        (["hives"], "GET") => hives::list(req, id).map(Call::Hive),
        (["hives"], "POST") => hives::create(req, id).map(Call::Hive),
        (["sensors"], "GET") => sensors::list(req, id).map(Call::Sensor),
        (["sensors"], "POST") => sensors::register(req, id).map(Call::Sensor),
        (["tokens"], "GET") => tokens::list(req, id).map(Call::Token),
        (["tokens"], "POST") => tokens::create(req, id).map(Call::Token),
        ([] | ["admins", _] | ["hives" | "sensors" | "tokens"], _) => Err(req.not_allowed()),
        _ => Err(req.not_found()),
    }
}

/// `/v1/hives/{id}...`
fn under_hives(req: &Req<'_>, id: i64, segs: &[&str]) -> Result<Call, ApiError> {
    match (segs, req.method) {
        ([], "GET") => Ok(Call::Anon(What::Hive(id))),
        ([], "PATCH") => hives::patch(req, id).map(Call::Hive),
        ([], "DELETE") => hives::delete(req, id).map(Call::Hive),
        (["occupancy"], "GET") => Ok(Call::Anon(What::Occupancy(id))),
        (["live"], "GET" | "HEAD") => Ok(Call::Live(id)),
        ([] | ["occupancy"] | ["live"], _) => Err(req.not_allowed()),
        _ => premium_of_hive(req, id, segs),
    }
}

/// `/v1/hives/{id}/history` and `/v1/hives/{id}/peak-hours`.
fn premium_of_hive(req: &Req<'_>, id: i64, segs: &[&str]) -> Result<Call, ApiError> {
    match (segs, req.method) {
        (["history"], "GET") => premium::history(req, id).map(Call::Premium),
        (["peak-hours"], "GET") => premium::peak_hours(req, id).map(Call::Premium),
        (["history" | "peak-hours"], _) => Err(req.not_allowed()),
        _ => Err(req.not_found()),
    }
}

/// `/v1/sensors/{device_id}...`
fn under_sensors(req: &Req<'_>, segs: &[&str]) -> Result<Call, ApiError> {
    let (dev, rest) = match segs {
        [dev, rest @ ..] if sensors::valid_device_id(dev) => (dev.to_string(), rest),
        _ => return Err(req.not_found()),
    };
    match (rest, req.method) {
        ([], "GET") => sensors::health(req, dev),
        ([], "PATCH") => sensors::patch(req, dev),
        ([], "DELETE") => sensors::delete(req, dev),
        (["config"], "PUT") => sensors::config(req, dev),
        ([] | ["config"], _) => Err(req.not_allowed()),
        _ => Err(req.not_found()),
    }
    .map(Call::Sensor)
}

/// A positive id in the path; anything else names nothing (404).
fn id_of(req: &Req<'_>, s: &str) -> Result<i64, ApiError> {
    match s.parse::<i64>() {
        Ok(n) if n > 0 && !s.starts_with('+') => Ok(n),
        _ => Err(req.not_found()),
    }
}

impl Call {
    /// The database work, on the I/O thread. Errors of the connection (closed, refused,
    /// timed out) become ApiError::unavailable; unique violations 409, check violations 400.
    pub async fn run(self, db: &Client) -> Result<Json, ApiError> {
        match self {
            Call::Account(c) => c.run(db).await,
            Call::Hive(c) => c.run(db).await,
            Call::Sensor(c) => c.run(db).await,
            Call::Token(c) => c.run(db).await,
            Call::Anon(what) => anon_run(db, what).await,
            Call::Search(s) => public::search::run(db, &s).await,
            Call::Premium(c) => c.run(db).await,
            Call::Me(c) => c.run(db).await,
            Call::Live(id) => anon_run(db, What::Occupancy(id)).await,
        }
    }
}

/// A public resource straight from PostgreSQL (what a worker answers when the replica
/// misses, without the worker's cache).
async fn anon_run(db: &Client, what: What) -> Result<Json, ApiError> {
    let e = super::db::db_error;
    let body = match what {
        What::Occupancy(id) => public::occupancy(db, id).await.map_err(e)?,
        What::Hive(id) => match public::hive(db, id).await.map_err(e)? {
            Some(hive) => {
                let occupancy = public::occupancy(db, id).await.map_err(e)?;
                occupancy.map(|o| super::anon::with_occupancy(&hive, &o))
            }
            None => None,
        },
        What::Types => Some(public::hive_types(db).await.map_err(e)?),
    };
    let body = body.ok_or_else(|| ApiError::not_found("this hive"))?;
    Ok(Json { status: 200, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Caller {
        Caller {
            uid: "root".into(),
            platform_admin: true,
        }
    }

    fn status(method: &str, path: &str, body: &[u8], caller: Option<&Caller>) -> u16 {
        match route(method, path, None, body, caller) {
            Ok(_) => 200,
            Err(e) => e.status,
        }
    }

    #[test]
    fn paths_methods_and_callers() {
        let a = admin();
        let c = Some(&a);
        assert_eq!(status("GET", "/v1/nothing", b"", c), 404);
        assert_eq!(status("GET", "/v2/accounts", b"", c), 404);
        assert_eq!(status("GET", "/v1/hives/x", b"", c), 404);
        assert_eq!(status("GET", "/v1/hives/0", b"", c), 404);
        assert_eq!(status("GET", "/v1/sensors/bad%id", b"", c), 404);
        assert_eq!(status("GET", "/v1/hives/7/other", b"", c), 404);
        assert_eq!(status("POST", "/v1/hives/7", b"", c), 405);
        assert_eq!(status("PUT", "/v1/hives/7/occupancy", b"", c), 405);
        assert_eq!(status("PUT", "/v1/accounts/7/hives", b"", c), 405);
        assert_eq!(status("GET", "/v1/sensors/door-1/config", b"", c), 405);
        assert_eq!(status("GET", "/v1/hives/7", b"", None), 200);
        assert_eq!(status("GET", "/v1/hives/7/occupancy", b"", None), 200);
        assert_eq!(status("GET", "/v1/accounts", b"", None), 401);
        assert_eq!(status("DELETE", "/v1/tokens/3", b"", None), 401);
        assert_eq!(status("GET", "/v1/sensors/door-1", b"", c), 200);
        let big = vec![b' '; body::MAX_BODY + 1];
        assert_eq!(status("DELETE", "/v1/hives/7", &big, c), 413);
    }

    #[test]
    fn only_platform_admins_create_accounts_and_name_admins() {
        let user = Caller {
            uid: "u".into(),
            platform_admin: false,
        };
        assert_eq!(
            status("POST", "/v1/accounts", br#"{"name":"A"}"#, Some(&user)),
            403
        );
        assert_eq!(
            status("PUT", "/v1/accounts/1/admins/x", b"", Some(&user)),
            403
        );
        assert_eq!(
            status("POST", "/v1/accounts", br#"{"name":"A"}"#, Some(&admin())),
            200
        );
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(
            method in "(GET|POST|PUT|PATCH|DELETE|[A-Z]{1,7})",
            path in "/v1(/(accounts|hives|sensors|tokens|admins|config|occupancy|[0-9]{1,20}|[ -~]{0,12})){0,5}",
            query in proptest::option::of("[ -~]{0,40}"),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            signed_in in proptest::prelude::any::<bool>(),
        ) {
            let a = admin();
            let caller = signed_in.then_some(&a);
            let _ = route(&method, &path, query.as_deref(), &body, caller);
        }
    }

    /// Keys the calls take (and one they do not).
    const KEYS: &[&str] = &[
        "name",
        "type",
        "address",
        "street",
        "city",
        "zip",
        "country",
        "latitude",
        "longitude",
        "time_zone",
        "capacity",
        "reset_time",
        "hive_id",
        "device_id",
        "direction",
        "counter_modulus",
        "counting_mode",
        "threshold_cm",
        "reporting_interval_min",
        "status_interval_min",
        "event_threshold",
        "hive_ids",
        "other",
    ];

    fn value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::{json, Value};
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            "[ -~]{0,10}".prop_map(Value::String),
            Just(json!("04:00")),
            Just(json!("Europe/Bucharest")),
        ];
        leaf.prop_recursive(2, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6).prop_map(
                    |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                ),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn no_json_body_panics(
            target in proptest::sample::select(vec![
                ("POST", "/v1/accounts"), ("POST", "/v1/accounts/1/hives"),
                ("PATCH", "/v1/hives/1"), ("POST", "/v1/accounts/1/sensors"),
                ("PATCH", "/v1/sensors/d-1"), ("PUT", "/v1/sensors/d-1/config"),
                ("POST", "/v1/accounts/1/tokens"),
            ]),
            fields in proptest::collection::vec((proptest::sample::select(KEYS), value()), 0..10),
        ) {
            let body: serde_json::Map<String, serde_json::Value> =
                fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            let bytes = serde_json::to_vec(&body).expect("JSON");
            let a = admin();
            if let Err(e) = route(target.0, target.1, None, &bytes, Some(&a)) {
                proptest::prop_assert!(e.status == 400, "{e}");
            }
        }
    }

    #[test]
    fn calls_cross_to_the_io_thread() {
        fn send_static<T: Send + 'static>() {}
        send_static::<Call>();
    }
}
