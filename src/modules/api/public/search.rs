//! `GET /v1/hives?q=&type=&zip=&near=lat,lon&radius_m=&limit=&cursor=`: the public search.
//! [`parse`] validates the query string on the event loop (every refusal a 400 naming its
//! parameter, unknown parameters included); [`run`] is one SQL statement on the I/O thread.
//!
//! The filters combine (AND): `q` a substring of the name, ignoring case and accents (the
//! trigram index on `search_fold(name)`, migration 0012); `type` a type code (an unknown one
//! finds nothing); `zip` the exact postal code; `near` + `radius_m` within that many metres of
//! the point (the GiST index on `ll_to_earth`). Pages are keyset pages: by id, with
//! [`page`]'s cursor; near a point, by distance then id, the cursor holding both, so that hives
//! added while a client pages never repeat nor push others out of the pages still to read.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::Serialize;
use tokio_postgres::Client;

use super::{details, Details, DETAILS, FROM};
use crate::modules::api::db::db_error;
use crate::modules::api::error::ApiError;
use crate::modules::api::hives::type_code;
use crate::modules::api::page::{self, DEFAULT_LIMIT, MAX_LIMIT};
use crate::modules::api::route::Json;

/// The longest `q`, in characters.
pub const MAX_Q: usize = 100;
/// The longest `zip`, in characters (the address column's limit).
pub const MAX_ZIP: usize = 16;
/// The widest `radius_m`: a city, not a country.
pub const MAX_RADIUS_M: i32 = 50_000;

/// A search, validated: what [`run`] asks the database.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// A piece of the name, as given (folded in the SQL, as the index is).
    pub q: Option<String>,
    /// A type code, well formed; whether it exists is the database's to say.
    pub kind: Option<String>,
    /// The exact postal code.
    pub zip: Option<String>,
    pub near: Option<Near>,
    /// Items per page (`page`'s limits).
    pub limit: i64,
    pub after: After,
}

/// Hives within `radius_m` metres of a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near {
    pub latitude: f64,
    pub longitude: f64,
    pub radius_m: i32,
}

/// Where a page starts: the key of the last hive of the page before.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum After {
    /// The first page.
    Start,
    /// After this id (a search by id).
    Id(i64),
    /// After this (distance, id) (a search near a point).
    Distance(f64, i64),
}

/// The parameters as the query string gives them, percent-decoded, each at most once.
#[derive(Default)]
struct Raw {
    q: Option<String>,
    kind: Option<String>,
    zip: Option<String>,
    near: Option<String>,
    radius_m: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// The search a raw query string (without '?') asks for.
pub fn parse(query: Option<&str>) -> Result<Search, ApiError> {
    let raw = split(query.unwrap_or(""))?;
    let q = match raw.q {
        Some(q) if (1..=MAX_Q).contains(&q.chars().count()) => Some(q),
        Some(_) => {
            return Err(ApiError::invalid(
                "q",
                format!("q must be 1 to {MAX_Q} characters"),
            ))
        }
        None => None,
    };
    let kind = match raw.kind {
        Some(k) if k.len() <= 32 => Some(type_code(&k).map_err(|m| ApiError::invalid("type", m))?),
        Some(_) => return Err(ApiError::invalid("type", "type is not a hive type")),
        None => None,
    };
    let zip = match raw.zip {
        Some(z) if (1..=MAX_ZIP).contains(&z.chars().count()) => Some(z),
        Some(_) => {
            return Err(ApiError::invalid(
                "zip",
                format!("zip must be 1 to {MAX_ZIP} characters"),
            ))
        }
        None => None,
    };
    let near = near(raw.near.as_deref(), raw.radius_m.as_deref())?;
    let limit = match raw.limit {
        Some(v) => limit(&v)?,
        None => DEFAULT_LIMIT,
    };
    let after = match (raw.cursor, near.is_some()) {
        (None, _) => After::Start,
        (Some(c), false) => After::Id(page::decode(&c)?),
        (Some(c), true) => decode_near(&c)?,
    };
    Ok(Search {
        q,
        kind,
        zip,
        near,
        limit,
        after,
    })
}

/// The query string's parameters: 400 for one this call does not take, one given twice, or one
/// that does not percent-decode to UTF-8.
fn split(query: &str) -> Result<Raw, ApiError> {
    let mut raw = Raw::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_component(k).unwrap_or_else(|_| k.to_string());
        let slot = match name.as_str() {
            "q" => &mut raw.q,
            "type" => &mut raw.kind,
            "zip" => &mut raw.zip,
            "near" => &mut raw.near,
            "radius_m" => &mut raw.radius_m,
            "limit" => &mut raw.limit,
            "cursor" => &mut raw.cursor,
            _ => {
                return Err(ApiError::invalid(
                    name.clone(),
                    format!("{name} is not a parameter of this call"),
                ))
            }
        };
        let v = decode_component(v).map_err(|m| ApiError::invalid(name.clone(), m))?;
        if slot.replace(v).is_some() {
            return Err(ApiError::invalid(
                name.clone(),
                format!("{name} is given more than once"),
            ));
        }
    }
    Ok(raw)
}

/// A query string component: `+` is a space, `%XX` a byte; the bytes must be UTF-8.
fn decode_component(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("a % is not followed by two hex digits")?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "the value is not UTF-8".to_string())
}

/// `near=lat,lon` with `radius_m=1..50000`: both or neither.
fn near(near: Option<&str>, radius: Option<&str>) -> Result<Option<Near>, ApiError> {
    let (near, radius) = match (near, radius) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(ApiError::invalid(
                "radius_m",
                "near needs radius_m, in metres",
            ))
        }
        (None, Some(_)) => return Err(ApiError::invalid("radius_m", "radius_m needs near")),
        (Some(n), Some(r)) => (n, r),
    };
    let coord = |s: &str, max: f64| {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && v.abs() <= max)
    };
    let point = near
        .split_once(',')
        .and_then(|(lat, lon)| Some((coord(lat, 90.0)?, coord(lon, 180.0)?)));
    let Some((latitude, longitude)) = point else {
        return Err(ApiError::invalid(
            "near",
            "near must be \"latitude,longitude\" (-90..90, -180..180)",
        ));
    };
    let radius_m = match radius.parse::<i32>() {
        Ok(r) if (1..=MAX_RADIUS_M).contains(&r) => r,
        _ => {
            return Err(ApiError::invalid(
                "radius_m",
                format!("radius_m must be an integer from 1 to {MAX_RADIUS_M}"),
            ))
        }
    };
    Ok(Some(Near {
        latitude,
        longitude,
        radius_m,
    }))
}

/// `limit`, as every list takes it (`page`).
fn limit(v: &str) -> Result<i64, ApiError> {
    match v.parse::<i64>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(
            "limit",
            format!("limit must be an integer from 1 to {MAX_LIMIT}"),
        )),
    }
}

/// The cursor after a hive at `distance` metres with id `id`: base64url of "distance,id",
/// the distance written so that it reads back to the same bits (Rust prints the shortest
/// decimal that round-trips), as the next page's comparison needs.
fn encode_near(distance: f64, id: i64) -> String {
    B64.encode(format!("{distance},{id}"))
}

/// The (distance, id) a near cursor names.
fn decode_near(cursor: &str) -> Result<After, ApiError> {
    let bad = || ApiError::invalid("cursor", "cursor is not one this server gave");
    let bytes = B64.decode(cursor).map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let (d, id) = text.split_once(',').ok_or_else(bad)?;
    let d = d.parse::<f64>().ok().filter(|d| d.is_finite() && *d >= 0.0);
    let id = id.parse::<i64>().ok().filter(|id| *id > 0);
    match (d, id) {
        (Some(d), Some(id)) => Ok(After::Distance(d, id)),
        _ => Err(bad()),
    }
}

/// The answer's shape: DESIGN.md section 8's lists.
#[derive(Serialize)]
struct Answer {
    items: Vec<Details>,
    next_cursor: Option<String>,
}

/// The search, one statement: live hives matching every filter given, a page of them.
pub async fn run(db: &Client, s: &Search) -> Result<Json, ApiError> {
    // Every filter is a parameter that may be NULL; the plan is made for the values bound
    // (tokio-postgres prepares each query anew), so the filters absent fold away and the
    // indexes of those present are used.
    let sql = format!(
        "SELECT d.dist, {DETAILS} FROM {FROM}
         CROSS JOIN LATERAL (SELECT CASE WHEN $4::float8 IS NULL THEN NULL::float8
                 ELSE earth_distance(ll_to_earth($4::float8, $5::float8),
                                     ll_to_earth(ad.latitude, ad.longitude)) END AS dist) d
         WHERE h.deleted_at IS NULL
           AND ($1::text IS NULL OR search_fold(h.name) LIKE
                '%' || replace(replace(replace(search_fold($1::text), '\\', '\\\\'),
                                       '%', '\\%'), '_', '\\_') || '%')
           AND ($2::text IS NULL OR t.code = $2::text)
           AND ($3::text IS NULL OR ad.zip = $3::text)
           AND ($4::float8 IS NULL
                OR (earth_box(ll_to_earth($4::float8, $5::float8), $6::float8)
                        @> ll_to_earth(ad.latitude, ad.longitude)
                    AND d.dist <= $6::float8))
           AND CASE WHEN $4::float8 IS NULL THEN h.id > $8::int8
                    ELSE (d.dist, h.id) > ($7::float8, $8::int8) END
         ORDER BY d.dist, h.id
         LIMIT $9::int8"
    );
    let (lat, lon, radius) = match s.near {
        Some(n) => (
            Some(n.latitude),
            Some(n.longitude),
            Some(f64::from(n.radius_m)),
        ),
        None => (None, None, None),
    };
    let (after_d, after_id) = match s.after {
        After::Start => (-1.0, 0),
        After::Id(id) => (-1.0, id),
        After::Distance(d, id) => (d, id),
    };
    let fetch = s.limit + 1;
    let rows = db
        .query(
            &sql,
            &[
                &s.q, &s.kind, &s.zip, &lat, &lon, &radius, &after_d, &after_id, &fetch,
            ],
        )
        .await
        .map_err(db_error)?;
    let more = rows.len() as i64 > s.limit;
    let shown = &rows[..rows.len().min(usize::try_from(s.limit).unwrap_or(0))];
    let next_cursor = match shown.last() {
        Some(r) if more => {
            let id: i64 = r.get(1);
            Some(match r.get::<_, Option<f64>>(0) {
                Some(d) => encode_near(d, id),
                None => page::encode(id),
            })
        }
        _ => None,
    };
    let items = shown
        .iter()
        .map(|r| Details {
            distance_m: r
                .get::<_, Option<f64>>(0)
                .map(|d| (d * 10.0).round() / 10.0),
            ..details(r, 1)
        })
        .collect();
    let body = serde_json::to_vec(&Answer { items, next_cursor })
        .expect("the public shapes have string keys and finite numbers");
    Ok(Json { status: 200, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(q: &str) -> Option<String> {
        parse(Some(q)).unwrap_err().field
    }

    #[test]
    fn no_query_is_the_first_page_of_everything() {
        let s = parse(None).unwrap();
        assert_eq!(
            s,
            Search {
                q: None,
                kind: None,
                zip: None,
                near: None,
                limit: DEFAULT_LIMIT,
                after: After::Start
            }
        );
        assert_eq!(parse(Some("")).unwrap(), s);
        assert_eq!(parse(Some("&&")).unwrap(), s);
    }

    #[test]
    fn every_filter_together() {
        let q = format!(
            "q=caf%C3%A9+central&type=cafe&zip=030031&near=44.43,26.1&radius_m=500&limit=3&cursor={}",
            encode_near(12.25, 9)
        );
        let s = parse(Some(&q)).unwrap();
        assert_eq!(s.q.as_deref(), Some("café central"));
        assert_eq!(s.kind.as_deref(), Some("cafe"));
        assert_eq!(s.zip.as_deref(), Some("030031"));
        assert_eq!(
            s.near,
            Some(Near {
                latitude: 44.43,
                longitude: 26.1,
                radius_m: 500
            })
        );
        assert_eq!((s.limit, s.after), (3, After::Distance(12.25, 9)));
        let s = parse(Some(&format!("cursor={}", page::encode(41)))).unwrap();
        assert_eq!(s.after, After::Id(41));
        let s = parse(Some("near=-90%2C180&radius_m=1")).unwrap();
        assert_eq!(
            s.near.map(|n| (n.latitude, n.longitude)),
            Some((-90.0, 180.0))
        );
    }

    #[test]
    fn refusals_name_their_parameter() {
        let long = format!("q={}", "é".repeat(MAX_Q + 1));
        assert!(parse(Some(&format!("q={}", "é".repeat(MAX_Q)))).is_ok());
        for (q, f) in [
            ("q=", "q"),
            (long.as_str(), "q"),
            ("q=%zz", "q"),
            ("q=%C3", "q"),
            ("q=a&q=b", "q"),
            ("type=Bar", "type"),
            ("type=", "type"),
            ("zip=", "zip"),
            ("zip=12345678901234567", "zip"),
            ("near=44.4,26.1", "radius_m"),
            ("radius_m=100", "radius_m"),
            ("near=44.4&radius_m=100", "near"),
            ("near=91,0&radius_m=100", "near"),
            ("near=0,-181&radius_m=100", "near"),
            ("near=NaN,0&radius_m=100", "near"),
            ("near=inf,0&radius_m=100", "near"),
            ("near=0,0&radius_m=0", "radius_m"),
            ("near=0,0&radius_m=50001", "radius_m"),
            ("near=0,0&radius_m=1.5", "radius_m"),
            ("limit=0", "limit"),
            ("limit=201", "limit"),
            ("cursor=!!", "cursor"),
            ("sort=name", "sort"),
            ("Q=x", "Q"),
        ] {
            assert_eq!(field(q).as_deref(), Some(f), "{q}");
        }
        let not_near = format!("cursor={}", encode_near(1.0, 2));
        assert_eq!(field(&not_near).as_deref(), Some("cursor"));
        let by_id = format!("near=0,0&radius_m=9&cursor={}", page::encode(2));
        assert_eq!(field(&by_id).as_deref(), Some("cursor"));
    }

    #[test]
    fn a_type_code_may_be_unknown_but_well_formed() {
        assert_eq!(
            parse(Some("type=sauna")).unwrap().kind.as_deref(),
            Some("sauna")
        );
        assert_eq!(
            field(&format!("type={}", "a".repeat(33))).as_deref(),
            Some("type")
        );
    }

    #[test]
    fn near_cursors_read_back_to_the_same_bits() {
        for d in [
            0.0,
            0.1 + 0.2,
            1_234.567_890_123_456_7,
            49_999.999_999_999_99,
        ] {
            let After::Distance(back, id) = decode_near(&encode_near(d, 7)).unwrap() else {
                panic!("not a near cursor");
            };
            assert_eq!((back.to_bits(), id), (d.to_bits(), 7));
        }
        for bad in ["", "MSw", "LTEsMQ", "MSww", "aW5mLDE"] {
            assert!(decode_near(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn components_decode_plus_and_percent() {
        assert_eq!(decode_component("a+b%2Bc").unwrap(), "a b+c");
        assert_eq!(decode_component("%41%42").unwrap(), "AB");
        assert!(decode_component("%4").is_err());
        assert!(decode_component("%").is_err());
        assert!(decode_component("%FF").is_err());
    }
}
