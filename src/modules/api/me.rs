//! The signed-in user's own resources under `/v1/me` (DESIGN.md section 8): their settings
//! (nickname, time zone, quiet hours) and subscription, favourite hives with the occupancy now,
//! the hives they opened, their threshold rules and their inbox. [`route`] parses a call on the
//! event loop (404, 405, 401 and 400 answered there); [`MeCall::run`] does the database work on
//! the I/O thread.
//!
//! ```text
//! /v1/me                         GET, PATCH
//! /v1/me/favorites               GET (pages by hive id)
//! /v1/me/favorites/{id}          PUT, DELETE
//! /v1/me/recent                  GET (newest first, pages by (last_visited_at, hive id))
//! /v1/me/recent/{id}             POST (a visit)
//! /v1/me/notifications           GET, POST
//! /v1/me/notifications/{id}      PATCH, DELETE
//! /v1/me/inbox                   GET (newest first, ?unread=true)
//! /v1/me/inbox/{id}/read         POST
//! ```
//!
//! A caller's first call makes their `app_user` row, with the uid and nothing else. The rules
//! fire in PostgreSQL, where the occupancy changes (migration 0014): nothing here raises them.

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};
use tokio_postgres::{Client, Row};

use super::body::{checked, Field};
use super::db::{self, db_error, Who};
use super::error::ApiError;
use super::page::Page;
use super::public;
use super::route::{Json, Req};

/// A call on the caller's own resources.
#[derive(Debug)]
pub enum MeCall {
    Get { who: Who },
    Patch { who: Who, edit: Edit },
    Favorites { who: Who, page: Page },
    Favorite { who: Who, hive: i64, on: bool },
    Recent { who: Who, page: RecentPage },
    Visit { who: Who, hive: i64 },
    Rules { who: Who, page: Page },
    AddRule { who: Who, rule: NewRule },
    EditRule { who: Who, id: i64, edit: RuleEdit },
    DeleteRule { who: Who, id: i64 },
    Inbox { who: Who, page: Page, unread: bool },
    Read { who: Who, id: i64 },
}

/// `PATCH /v1/me`: `None` leaves a field; `Some(None)` clears nickname or quiet hours.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Edit {
    pub nickname: Option<Option<String>>,
    pub time_zone: Option<String>,
    /// ("HH:MM" from, "HH:MM" to).
    pub quiet_hours: Option<Option<(String, String)>>,
}

/// A threshold rule to create.
#[derive(Debug, PartialEq, Eq)]
pub struct NewRule {
    pub hive: i64,
    /// `below` or `above`.
    pub kind: String,
    pub threshold: i16,
}

/// A rule's edit: each field left when None.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RuleEdit {
    pub threshold: Option<i16>,
    pub enabled: Option<bool>,
}

/// A page of the recent hives: newest first, after (last_visited_at, hive id) of the page
/// before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentPage {
    pub limit: i64,
    pub after: Option<(SystemTime, i64)>,
}

/// The calls under `/v1/me` (`segs`: the path after it). The path first (404), then the method
/// (405), then the caller (401), then the body and query (400).
pub fn route(req: &Req<'_>, segs: &[&str]) -> Result<MeCall, ApiError> {
    let m = req.method;
    match segs {
        [] => match m {
            "GET" => Ok(MeCall::Get { who: req.who()? }),
            "PATCH" => patch(req),
            _ => Err(not_allowed(req)),
        },
        ["favorites"] | ["recent"] | ["notifications"] | ["inbox"] => lists(req, segs[0]),
        ["favorites", id] => {
            let hive = id_of(req, id)?;
            match m {
                "PUT" | "DELETE" => Ok(MeCall::Favorite {
                    who: req.who()?,
                    hive,
                    on: m == "PUT",
                }),
                _ => Err(not_allowed(req)),
            }
        }
        ["recent", id] => {
            let hive = id_of(req, id)?;
            match m {
                "POST" => Ok(MeCall::Visit {
                    who: req.who()?,
                    hive,
                }),
                _ => Err(not_allowed(req)),
            }
        }
        ["notifications", id] => {
            let id = id_of(req, id)?;
            match m {
                "PATCH" => edit_rule(req, id),
                "DELETE" => Ok(MeCall::DeleteRule {
                    who: req.who()?,
                    id,
                }),
                _ => Err(not_allowed(req)),
            }
        }
        ["inbox", id, "read"] => {
            let id = id_of(req, id)?;
            match m {
                "POST" => Ok(MeCall::Read {
                    who: req.who()?,
                    id,
                }),
                _ => Err(not_allowed(req)),
            }
        }
        _ => Err(not_found(req)),
    }
}

/// `GET` of the four lists, and `POST /v1/me/notifications`.
fn lists(req: &Req<'_>, what: &str) -> Result<MeCall, ApiError> {
    match (what, req.method) {
        ("favorites", "GET") => Ok(MeCall::Favorites {
            who: req.who()?,
            page: req.page()?,
        }),
        ("recent", "GET") => Ok(MeCall::Recent {
            who: req.who()?,
            page: recent_page(req.query)?,
        }),
        ("notifications", "GET") => Ok(MeCall::Rules {
            who: req.who()?,
            page: req.page()?,
        }),
        ("notifications", "POST") => add_rule(req),
        ("inbox", "GET") => Ok(MeCall::Inbox {
            who: req.who()?,
            page: req.page()?,
            unread: unread(req.query)?,
        }),
        _ => Err(not_allowed(req)),
    }
}

fn not_allowed(req: &Req<'_>) -> ApiError {
    ApiError::method_not_allowed(req.method, req.path)
}

fn not_found(req: &Req<'_>) -> ApiError {
    ApiError::new(404, "not_found", format!("no API resource at {}", req.path))
}

/// A positive id in the path; anything else names nothing (404).
fn id_of(req: &Req<'_>, s: &str) -> Result<i64, ApiError> {
    match s.parse::<i64>() {
        Ok(n) if n > 0 && !s.starts_with('+') => Ok(n),
        _ => Err(not_found(req)),
    }
}

/// `PATCH /v1/me` `{"nickname", "time_zone", "quiet_hours": {"from", "to"} | null}`.
fn patch(req: &Req<'_>) -> Result<MeCall, ApiError> {
    let who = req.who()?;
    let mut o = req.object(&["nickname", "time_zone", "quiet_hours"])?;
    let nickname = o.string("nickname", 1, 64)?.patch();
    let f = checked(&mut o, "time_zone", 64, super::hives::time_zone)?;
    let time_zone = o.not_null("time_zone", f)?;
    let quiet_hours = match o.object("quiet_hours", &["from", "to"])? {
        Field::Absent => None,
        Field::Null => Some(None),
        Field::Value(mut q) => {
            let f = checked(&mut q, "from", 5, local_time)?;
            let from = q.required("from", f)?;
            let f = checked(&mut q, "to", 5, local_time)?;
            let to = q.required("to", f)?;
            if from == to {
                return Err(ApiError::invalid(
                    "quiet_hours",
                    "quiet_hours must end at another time than it starts",
                ));
            }
            Some(Some((from, to)))
        }
    };
    let edit = Edit {
        nickname,
        time_zone,
        quiet_hours,
    };
    Ok(MeCall::Patch { who, edit })
}

/// "HH:MM", 00:00 to 23:59.
pub fn local_time(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let ok = b.len() == 5
        && b[2] == b':'
        && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit())
        && s[..2] < *"24"
        && s[3..] < *"60";
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("\"{s}\" is not HH:MM (00:00 to 23:59)"))
    }
}

/// `POST /v1/me/notifications` `{"hive_id", "kind", "threshold_percent"}`.
fn add_rule(req: &Req<'_>) -> Result<MeCall, ApiError> {
    let who = req.who()?;
    let mut o = req.object(&["hive_id", "kind", "threshold_percent"])?;
    let f = o.int("hive_id", 1, i64::MAX)?;
    let hive = o.required("hive_id", f)?;
    let f = checked(&mut o, "kind", 5, kind)?;
    let kind = o.required("kind", f)?;
    let f = o.int32("threshold_percent", 0, 100)?;
    let threshold = o.required("threshold_percent", f)?;
    let rule = NewRule {
        hive,
        kind,
        threshold: i16::try_from(threshold).expect("0 to 100"),
    };
    Ok(MeCall::AddRule { who, rule })
}

/// `PATCH /v1/me/notifications/{id}` `{"threshold_percent"?, "enabled"?}`.
fn edit_rule(req: &Req<'_>, id: i64) -> Result<MeCall, ApiError> {
    let who = req.who()?;
    let mut o = req.object(&["threshold_percent", "enabled"])?;
    let f = o.int32("threshold_percent", 0, 100)?;
    let threshold = o
        .not_null("threshold_percent", f)?
        .map(|t| i16::try_from(t).expect("0 to 100"));
    let f = o.boolean("enabled")?;
    let enabled = o.not_null("enabled", f)?;
    let edit = RuleEdit { threshold, enabled };
    Ok(MeCall::EditRule { who, id, edit })
}

fn kind(s: &str) -> Result<String, String> {
    match s {
        "below" | "above" => Ok(s.to_string()),
        _ => Err(format!("kind \"{s}\" is neither \"below\" nor \"above\"")),
    }
}

/// `?unread=true|false` (false when absent).
fn unread(query: Option<&str>) -> Result<bool, ApiError> {
    let mut unread = false;
    for (k, v) in pairs(query) {
        if k == "unread" {
            unread = match v {
                "true" => true,
                "false" => false,
                _ => return Err(ApiError::invalid("unread", "unread must be true or false")),
            };
        }
    }
    Ok(unread)
}

fn pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The recent list's page: `limit` as every list, and a cursor of its own.
fn recent_page(query: Option<&str>) -> Result<RecentPage, ApiError> {
    let rest: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.starts_with("cursor=") && *p != "cursor")
        .collect();
    let limit = Page::parse(Some(&rest.join("&")))?.limit;
    let mut after = None;
    for (k, v) in pairs(query) {
        if k == "cursor" {
            after = Some(decode_recent(v)?);
        }
    }
    Ok(RecentPage { limit, after })
}

/// The cursor after a recent hive: base64url of `"<microseconds since 1970>.<hive id>"`.
pub fn encode_recent(at: SystemTime, hive: i64) -> String {
    let us = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    B64.encode(format!("{us}.{hive}"))
}

/// The visit a recent cursor names.
pub fn decode_recent(cursor: &str) -> Result<(SystemTime, i64), ApiError> {
    let bad = || ApiError::invalid("cursor", "cursor is not one this server gave");
    let bytes = B64.decode(cursor).map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let (us, hive) = text.split_once('.').ok_or_else(bad)?;
    let us: u64 = us.parse().map_err(|_| bad())?;
    let hive: i64 = hive.parse().map_err(|_| bad())?;
    if hive <= 0 || text != format!("{us}.{hive}") {
        return Err(bad());
    }
    let at = SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_micros(us))
        .ok_or_else(bad)?;
    Ok((at, hive))
}

impl MeCall {
    /// The database work, after the caller's user row is made if it was not.
    pub async fn run(self, db: &Client) -> Result<Json, ApiError> {
        let who = match &self {
            MeCall::Get { who }
            | MeCall::Patch { who, .. }
            | MeCall::Favorites { who, .. }
            | MeCall::Favorite { who, .. }
            | MeCall::Recent { who, .. }
            | MeCall::Visit { who, .. }
            | MeCall::Rules { who, .. }
            | MeCall::AddRule { who, .. }
            | MeCall::EditRule { who, .. }
            | MeCall::DeleteRule { who, .. }
            | MeCall::Inbox { who, .. }
            | MeCall::Read { who, .. } => who.clone(),
        };
        let user = user_id(db, &who.uid).await?;
        match self {
            MeCall::Get { .. } => me(db, &who, user).await,
            MeCall::Patch { edit, .. } => {
                run_patch(db, user, &edit).await?;
                me(db, &who, user).await
            }
            MeCall::Favorites { page, .. } => favorites(db, user, page).await,
            MeCall::Favorite { hive, on, .. } => favorite(db, user, hive, on).await,
            MeCall::Recent { page, .. } => recent(db, user, page).await,
            MeCall::Visit { hive, .. } => visit(db, user, hive).await,
            MeCall::Rules { page, .. } => rules(db, user, page).await,
            MeCall::AddRule { rule, .. } => add(db, user, &rule).await,
            MeCall::EditRule { id, edit, .. } => edit_run(db, user, id, &edit).await,
            MeCall::DeleteRule { id, .. } => {
                let n = db
                    .execute(
                        "DELETE FROM user_notification_def
                         WHERE id = $2 AND user_id = $1 AND kind IN ('below', 'above')",
                        &[&user, &id],
                    )
                    .await
                    .map_err(db_error)?;
                gone_unless(n, || format!("notification {id}"))
            }
            MeCall::Inbox { page, unread, .. } => inbox(db, user, page, unread).await,
            MeCall::Read { id, .. } => {
                let n = db
                    .execute(
                        "UPDATE user_message SET read_at = coalesce(read_at, now())
                         WHERE id = $2 AND user_id = $1",
                        &[&user, &id],
                    )
                    .await
                    .map_err(db_error)?;
                gone_unless(n, || format!("message {id}"))
            }
        }
    }
}

/// 204 when a row was written, else 404.
fn gone_unless(n: u64, what: impl Fn() -> String) -> Result<Json, ApiError> {
    if n == 0 {
        return Err(ApiError::not_found(what()));
    }
    Ok(db::no_content())
}

/// The caller's user row id, making the row (the uid only) on their first call. A row made at
/// the same time by another call is seen on the second try (the first statement's snapshot
/// predates it).
async fn user_id(db: &Client, uid: &str) -> Result<i64, ApiError> {
    for _ in 0..2 {
        let row = db
            .query_opt(
                "WITH ins AS (INSERT INTO app_user (firebase_uid) VALUES ($1)
                              ON CONFLICT (firebase_uid) DO NOTHING RETURNING id)
                 SELECT id FROM ins UNION ALL
                 SELECT id FROM app_user WHERE firebase_uid = $1 LIMIT 1",
                &[&uid],
            )
            .await
            .map_err(db_error)?;
        if let Some(r) = row {
            return Ok(r.get(0));
        }
    }
    Err(ApiError::unavailable(
        "the user row could not be made; try again",
    ))
}

/// `GET /v1/me`: the settings and the subscription running now (the latest started), as
/// `user_has_feature` (migration 0015) judges it: started, not ended, not cancelled.
async fn me(db: &Client, who: &Who, user: i64) -> Result<Json, ApiError> {
    let row = db
        .query_one(
            "SELECT u.nickname, u.role, u.time_zone::text, to_char(u.quiet_from, 'HH24:MI'),
                    to_char(u.quiet_to, 'HH24:MI'), s.code, s.features, s.ends_at
             FROM app_user u
             LEFT JOIN LATERAL (
                 SELECT t.code, s.ends_at,
                        ARRAY(SELECT f.code FROM subscription_type_feature tf
                              JOIN feature f ON f.id = tf.feature_id
                              WHERE tf.subscription_type_id = t.id ORDER BY f.code) AS features
                 FROM subscription s JOIN subscription_type t ON t.id = s.subscription_type_id
                 WHERE s.user_id = u.id AND s.starts_at <= now()
                   AND (s.ends_at IS NULL OR s.ends_at > now())
                   AND (s.cancelled_at IS NULL OR s.cancelled_at > now())
                 ORDER BY s.starts_at DESC, s.id DESC LIMIT 1) s ON true
             WHERE u.id = $1",
            &[&user],
        )
        .await
        .map_err(db_error)?;
    let role: String = if who.platform_admin {
        "admin".into()
    } else {
        row.get(1)
    };
    let quiet = match (
        row.get::<_, Option<String>>(3),
        row.get::<_, Option<String>>(4),
    ) {
        (Some(from), Some(to)) => json!({ "from": from, "to": to }),
        _ => Value::Null,
    };
    let subscription = match row.get::<_, Option<String>>(5) {
        Some(kind) => json!({
            "type": kind,
            "features": row.get::<_, Vec<String>>(6),
            "ends_at": row.get::<_, Option<SystemTime>>(7).map(db::time),
        }),
        None => Value::Null,
    };
    Ok(db::json(
        200,
        &json!({
            "uid": who.uid,
            "nickname": row.get::<_, Option<String>>(0),
            "role": role,
            "time_zone": row.get::<_, String>(2),
            "quiet_hours": quiet,
            "subscription": subscription,
        }),
    ))
}

async fn run_patch(db: &Client, user: i64, e: &Edit) -> Result<(), ApiError> {
    let nickname = e.nickname.clone().flatten();
    let (from, to) = e.quiet_hours.clone().flatten().unzip();
    db.execute(
        "UPDATE app_user SET
             nickname = CASE WHEN $2 THEN $3::text ELSE nickname END,
             time_zone = coalesce($4::text, time_zone::text),
             quiet_from = CASE WHEN $5 THEN $6::text::time ELSE quiet_from END,
             quiet_to = CASE WHEN $5 THEN $7::text::time ELSE quiet_to END
         WHERE id = $1",
        &[
            &user,
            &e.nickname.is_some(),
            &nickname,
            &e.time_zone,
            &e.quiet_hours.is_some(),
            &from,
            &to,
        ],
    )
    .await
    .map_err(db_error)?;
    Ok(())
}

/// A live hive's public details as a JSON object, None when it is gone.
async fn details(db: &Client, hive: i64) -> Result<Option<Map<String, Value>>, ApiError> {
    let Some(bytes) = public::hive(db, hive).await.map_err(db_error)? else {
        return Ok(None);
    };
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        _ => Err(ApiError::new(
            500,
            "internal",
            "a hive's details are no object",
        )),
    }
}

/// `GET /v1/me/favorites`: each live favourite with its details and the occupancy now.
async fn favorites(db: &Client, user: i64, page: Page) -> Result<Json, ApiError> {
    let rows = db
        .query(
            "SELECT uh.hive_id, uh.favourite_since FROM user_hive uh
             JOIN hive h ON h.id = uh.hive_id AND h.deleted_at IS NULL
             WHERE uh.user_id = $1 AND uh.favourite AND uh.hive_id > $2
             ORDER BY uh.hive_id LIMIT $3",
            &[&user, &page.after, &page.fetch()],
        )
        .await
        .map_err(db_error)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let mut found: std::collections::HashMap<i64, public::Changed> = public::hives(db, &ids)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let hive: i64 = r.get(0);
        let Some(c) = found.remove(&hive) else {
            continue;
        };
        let (Some(Value::Object(mut m)), Some(occupancy)) = (
            c.hive.and_then(|b| serde_json::from_slice(&b).ok()),
            c.occupancy
                .and_then(|o| serde_json::from_slice::<Value>(&o).ok()),
        ) else {
            continue;
        };
        m.insert("occupancy".into(), occupancy);
        let since: Option<SystemTime> = r.get(1);
        m.insert("favorite_since".into(), json!(since.map(db::time)));
        items.push((hive, Value::Object(m)));
    }
    Ok(db::json(200, &page.answer(items)))
}

/// `PUT` (on) or `DELETE` (off) `/v1/me/favorites/{id}`: 404 for a hive that is not live when
/// added; removing one that is not a favourite is done already.
async fn favorite(db: &Client, user: i64, hive: i64, on: bool) -> Result<Json, ApiError> {
    if !on {
        db.execute(
            "UPDATE user_hive SET favourite = false, favourite_since = NULL
             WHERE user_id = $1 AND hive_id = $2 AND favourite",
            &[&user, &hive],
        )
        .await
        .map_err(db_error)?;
        return Ok(db::no_content());
    }
    let row = db
        .query_one(
            "WITH h AS (SELECT id FROM hive WHERE id = $2 AND deleted_at IS NULL),
                  ins AS (INSERT INTO user_hive (user_id, hive_id, favourite, favourite_since)
                          SELECT $1, h.id, true, now() FROM h
                          ON CONFLICT (user_id, hive_id) DO UPDATE SET favourite = true,
                              favourite_since = coalesce(user_hive.favourite_since, now()))
             SELECT count(*) FROM h",
            &[&user, &hive],
        )
        .await
        .map_err(db_error)?;
    gone_unless(row.get::<_, i64>(0) as u64, || format!("hive {hive}"))
}

/// `POST /v1/me/recent/{id}`: the visit of a live hive, now.
async fn visit(db: &Client, user: i64, hive: i64) -> Result<Json, ApiError> {
    let row = db
        .query_one(
            "WITH h AS (SELECT id FROM hive WHERE id = $2 AND deleted_at IS NULL),
                  ins AS (INSERT INTO user_hive (user_id, hive_id, last_visited_at)
                          SELECT $1, h.id, now() FROM h
                          ON CONFLICT (user_id, hive_id) DO UPDATE SET last_visited_at = now())
             SELECT count(*) FROM h",
            &[&user, &hive],
        )
        .await
        .map_err(db_error)?;
    gone_unless(row.get::<_, i64>(0) as u64, || format!("hive {hive}"))
}

/// `GET /v1/me/recent`: the live hives visited, newest first, each with its details.
async fn recent(db: &Client, user: i64, page: RecentPage) -> Result<Json, ApiError> {
    let (at, after) = page.after.unzip();
    let rows = db
        .query(
            "SELECT uh.hive_id, uh.last_visited_at FROM user_hive uh
             JOIN hive h ON h.id = uh.hive_id AND h.deleted_at IS NULL
             WHERE uh.user_id = $1 AND uh.last_visited_at IS NOT NULL
               AND ($2::timestamptz IS NULL OR (uh.last_visited_at, uh.hive_id) < ($2, $3::int8))
             ORDER BY uh.last_visited_at DESC, uh.hive_id DESC LIMIT $4",
            &[&user, &at, &after, &(page.limit + 1)],
        )
        .await
        .map_err(db_error)?;
    let more = rows.len() as i64 > page.limit;
    let mut items = Vec::new();
    let mut last = None;
    for r in rows.iter().take(usize::try_from(page.limit).unwrap_or(0)) {
        let hive: i64 = r.get(0);
        let visited: SystemTime = r.get(1);
        last = Some(encode_recent(visited, hive));
        let Some(mut m) = details(db, hive).await? else {
            continue;
        };
        m.insert("last_visited_at".into(), json!(db::time(visited)));
        items.push(Value::Object(m));
    }
    let next = if more { last } else { None };
    Ok(db::json(
        200,
        &json!({ "items": items, "next_cursor": next }),
    ))
}

/// The columns [`rule_json`] reads, of `user_notification_def d`.
const RULE: &str = "d.id, d.hive_id, d.kind, d.threshold_percent, d.enabled, d.armed,
    d.last_fired_at, d.created_at";

fn rule_json(r: &Row) -> (i64, Value) {
    let id: i64 = r.get(0);
    let v = json!({
        "id": id,
        "hive_id": r.get::<_, i64>(1),
        "kind": r.get::<_, String>(2),
        "threshold_percent": r.get::<_, Option<i16>>(3),
        "enabled": r.get::<_, bool>(4),
        "armed": r.get::<_, bool>(5),
        "last_fired_at": r.get::<_, Option<SystemTime>>(6).map(db::time),
        "created_at": db::time(r.get(7)),
    });
    (id, v)
}

/// `GET /v1/me/notifications`: the caller's threshold rules by id.
async fn rules(db: &Client, user: i64, page: Page) -> Result<Json, ApiError> {
    let sql = format!(
        "SELECT {RULE} FROM user_notification_def d
         WHERE d.user_id = $1 AND d.kind IN ('below', 'above') AND d.id > $2
         ORDER BY d.id LIMIT $3"
    );
    let rows = db
        .query(&sql, &[&user, &page.after, &page.fetch()])
        .await
        .map_err(db_error)?;
    let items = rows.iter().map(rule_json).collect();
    Ok(db::json(200, &page.answer(items)))
}

/// `POST /v1/me/notifications`: armed unless the hive is already past the threshold (it fires
/// at the next crossing, not at the next change); 404 for a hive that is not live, 409 when
/// the caller has a rule of that kind for it.
async fn add(db: &Client, user: i64, rule: &NewRule) -> Result<Json, ApiError> {
    let sql = format!(
        "WITH h AS (SELECT h.id, h.capacity, hs.occupancy FROM hive h
                    JOIN hive_status hs ON hs.hive_id = h.id
                    WHERE h.id = $2 AND h.deleted_at IS NULL)
         INSERT INTO user_notification_def AS d (user_id, hive_id, kind, threshold_percent, armed)
         SELECT $1, h.id, $3::text, $4::int2,
                coalesce(NOT threshold_met($3::text, $4::int2, h.occupancy, h.capacity), true)
         FROM h
         RETURNING {RULE}"
    );
    let row = db
        .query_opt(&sql, &[&user, &rule.hive, &rule.kind, &rule.threshold])
        .await
        .map_err(db_error)?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("hive {}", rule.hive)))?;
    Ok(db::json(201, &rule_json(&row).1))
}

/// `PATCH /v1/me/notifications/{id}`: the rule starts afresh, armed as when created.
async fn edit_run(db: &Client, user: i64, id: i64, e: &RuleEdit) -> Result<Json, ApiError> {
    let sql = format!(
        "UPDATE user_notification_def d SET
             threshold_percent = coalesce($3::int2, d.threshold_percent),
             enabled = coalesce($4::bool, d.enabled),
             armed = coalesce(NOT threshold_met(d.kind, coalesce($3::int2, d.threshold_percent),
                                                hs.occupancy, h.capacity), true)
         FROM hive h JOIN hive_status hs ON hs.hive_id = h.id
         WHERE d.id = $2 AND d.user_id = $1 AND d.kind IN ('below', 'above') AND h.id = d.hive_id
         RETURNING {RULE}"
    );
    let row = db
        .query_opt(&sql, &[&user, &id, &e.threshold, &e.enabled])
        .await
        .map_err(db_error)?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("notification {id}")))?;
    Ok(db::json(200, &rule_json(&row).1))
}

/// `GET /v1/me/inbox`: newest first; the cursor is the last id shown, the next page the ids
/// below it.
async fn inbox(db: &Client, user: i64, page: Page, unread: bool) -> Result<Json, ApiError> {
    let rows = db
        .query(
            "SELECT id, type, content, created_at, read_at FROM user_message
             WHERE user_id = $1 AND ($2::int8 = 0 OR id < $2::int8) AND (NOT $3 OR read_at IS NULL)
             ORDER BY id DESC LIMIT $4",
            &[&user, &page.after, &unread, &page.fetch()],
        )
        .await
        .map_err(db_error)?;
    let items = rows
        .iter()
        .map(|r| {
            let id: i64 = r.get(0);
            let v = json!({
                "id": id,
                "type": r.get::<_, String>(1),
                "content": r.get::<_, String>(2),
                "created_at": db::time(r.get(3)),
                "read_at": r.get::<_, Option<SystemTime>>(4).map(db::time),
            });
            (id, v)
        })
        .collect();
    Ok(db::json(200, &page.answer(items)))
}

#[cfg(test)]
mod tests;
