//! Hives (venues) of an account: create, list, edit, delete (the anonymous reads are
//! `public`'s). A hive's body is validated here on the event loop (the IANA time
//! zone with chrono-tz, `reset_time` "HH:MM" or null); its type code is checked in the SQL.

use serde_json::{json, Value};
use tokio_postgres::{Client, Row};

use super::body::{checked, Field, Obj};
use super::db::{self, allowed_sql, db_error, Who};
use super::error::ApiError;
use super::page::Page;
use super::route::{Json, Req};

/// A call on hives.
#[derive(Debug)]
pub enum HiveCall {
    Create { who: Who, account: i64, hive: Hive },
    List { who: Who, account: i64, page: Page },
    Patch { who: Who, id: i64, hive: Hive },
    Delete { who: Who, id: i64 },
}

/// A hive's fields as a body gives them: all of them to create, any to edit. `Absent` leaves a
/// field as it is; `Null` clears it (capacity and reset_time only).
#[derive(Debug, Default)]
pub struct Hive {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub street: Option<String>,
    pub city: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub time_zone: Option<String>,
    pub capacity: Option<Option<i32>>,
    pub reset_time: Option<Option<String>>,
}

const FIELDS: &[&str] = &[
    "name",
    "type",
    "address",
    "time_zone",
    "capacity",
    "reset_time",
];
const ADDRESS: &[&str] = &["street", "city", "zip", "country", "latitude", "longitude"];

/// `POST /v1/accounts/{id}/hives`.
pub fn create(req: &Req<'_>, account: i64) -> Result<HiveCall, ApiError> {
    let who = req.who()?;
    let mut hive = parse(req.object(FIELDS)?, true)?;
    hive.reset_time.get_or_insert(Some("04:00".into()));
    hive.capacity.get_or_insert(None);
    Ok(HiveCall::Create { who, account, hive })
}

/// `PATCH /v1/hives/{id}`.
pub fn patch(req: &Req<'_>, id: i64) -> Result<HiveCall, ApiError> {
    let who = req.who()?;
    let hive = parse(req.object(FIELDS)?, false)?;
    Ok(HiveCall::Patch { who, id, hive })
}

/// `DELETE /v1/hives/{id}`.
pub fn delete(req: &Req<'_>, id: i64) -> Result<HiveCall, ApiError> {
    Ok(HiveCall::Delete {
        who: req.who()?,
        id,
    })
}

/// `GET /v1/accounts/{id}/hives`.
pub fn list(req: &Req<'_>, account: i64) -> Result<HiveCall, ApiError> {
    Ok(HiveCall::List {
        who: req.who()?,
        account,
        page: req.page()?,
    })
}

/// A field that must be given when creating (`all`), may be left out when editing.
fn need<T>(o: &Obj, key: &str, f: Field<T>, all: bool) -> Result<Option<T>, ApiError> {
    if all {
        o.required(key, f).map(Some)
    } else {
        o.not_null(key, f)
    }
}

/// The body of a create (`all`: every field but capacity and reset_time required) or a patch.
fn parse(mut o: Obj, all: bool) -> Result<Hive, ApiError> {
    let mut h = Hive::default();
    let f = o.string("name", 1, 200)?;
    h.name = need(&o, "name", f, all)?;
    let f = checked(&mut o, "type", 32, type_code)?;
    h.kind = need(&o, "type", f, all)?;
    let f = checked(&mut o, "time_zone", 64, time_zone)?;
    h.time_zone = need(&o, "time_zone", f, all)?;
    h.capacity = o.int32("capacity", 1, i32::MAX)?.patch();
    h.reset_time = checked(&mut o, "reset_time", 5, reset_time)?.patch();
    let f = o.object("address", ADDRESS)?;
    if let Some(mut a) = need(&o, "address", f, all)? {
        let f = a.string("street", 0, 200)?;
        h.street = need(&a, "street", f, all)?;
        let f = a.string("city", 1, 100)?;
        h.city = need(&a, "city", f, all)?;
        let f = a.string("zip", 0, 16)?;
        h.zip = need(&a, "zip", f, all)?;
        let f = checked(&mut a, "country", 2, country)?;
        h.country = need(&a, "country", f, all)?;
        let f = a.number("latitude", -90.0, 90.0)?;
        h.latitude = need(&a, "latitude", f, all)?;
        let f = a.number("longitude", -180.0, 180.0)?;
        h.longitude = need(&a, "longitude", f, all)?;
    }
    Ok(h)
}

/// A hive type code as the catalogue spells them; whether it exists is the database's to say.
pub fn type_code(s: &str) -> Result<String, String> {
    let ok = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("\"{s}\" is not a hive type"))
    }
}

/// An IANA time zone name (chrono-tz's database).
pub fn time_zone(s: &str) -> Result<String, String> {
    s.parse::<chrono_tz::Tz>()
        .map(|_| s.to_string())
        .map_err(|_| format!("\"{s}\" is not an IANA time zone"))
}

/// "HH:MM", 00:00 to 23:59.
pub fn reset_time(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let digits = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
    let ok = b.len() == 5
        && b[2] == b':'
        && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit())
        && digits(0) < 24
        && digits(3) < 60;
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("reset_time \"{s}\" is not HH:MM (00:00 to 23:59)"))
    }
}

/// Two capital letters (ISO 3166-1 alpha-2).
pub fn country(s: &str) -> Result<String, String> {
    if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(s.to_string())
    } else {
        Err(format!("country \"{s}\" is not two capital letters"))
    }
}

/// The columns [`to_json`] reads, from `hive h` joined as [`FROM`] does.
const COLUMNS: &str = "h.id, h.account_id, h.name, t.code, ad.street, ad.city, ad.zip,
    ad.country::text, ad.latitude, ad.longitude, h.time_zone::text, h.capacity,
    to_char(h.reset_time, 'HH24:MI')";
const FROM: &str = "hive h JOIN hive_type t ON t.id = h.hive_type_id
    JOIN address ad ON ad.id = h.address_id";

/// A hive as the API answers it, from [`COLUMNS`] at `at` on.
fn to_json(r: &Row, at: usize) -> (i64, Value) {
    let id: i64 = r.get(at);
    let v = json!({
        "id": id,
        "account_id": r.get::<_, i64>(at + 1),
        "name": r.get::<_, String>(at + 2),
        "type": r.get::<_, String>(at + 3),
        "address": {
            "street": r.get::<_, String>(at + 4),
            "city": r.get::<_, String>(at + 5),
            "zip": r.get::<_, String>(at + 6),
            "country": r.get::<_, String>(at + 7),
            "latitude": r.get::<_, f64>(at + 8),
            "longitude": r.get::<_, f64>(at + 9),
        },
        "time_zone": r.get::<_, String>(at + 10),
        "capacity": r.get::<_, Option<i32>>(at + 11),
        "reset_time": r.get::<_, Option<String>>(at + 12),
    });
    (id, v)
}

/// The live hive `id`, or 404.
async fn read(db: &Client, id: i64) -> Result<Json, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE h.id = $1 AND h.deleted_at IS NULL");
    let row = db.query_opt(&sql, &[&id]).await.map_err(db_error)?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("hive {id}")))?;
    Ok(db::json(200, &to_json(&row, 0).1))
}

/// Ok when the live hive `id` exists and the caller administers its account.
async fn authorize(db: &Client, who: &Who, id: i64) -> Result<(), ApiError> {
    let sql = format!(
        "SELECT {} FROM hive h WHERE h.id = $3 AND h.deleted_at IS NULL",
        allowed_sql("h.account_id")
    );
    db::find(db, who, &sql, &id, || format!("hive {id}")).await?;
    Ok(())
}

impl HiveCall {
    pub async fn run(self, db: &Client) -> Result<Json, ApiError> {
        match self {
            HiveCall::Create { who, account, hive } => {
                db::authorize(db, &who, account).await?;
                let row = insert(db, account, &hive).await?;
                Ok(db::json(201, &to_json(&row, 0).1))
            }
            HiveCall::List { who, account, page } => {
                let list = format!(
                    "SELECT {COLUMNS} FROM {FROM} WHERE h.account_id = $3
                     AND h.deleted_at IS NULL AND h.id > $4 ORDER BY h.id LIMIT $5"
                );
                let rows = db::page_of(db, &who, account, page, &list).await?;
                let items = rows.iter().map(|r| to_json(r, 1)).collect();
                Ok(db::json(200, &page.answer(items)))
            }
            HiveCall::Patch { who, id, hive } => {
                authorize(db, &who, id).await?;
                update(db, id, &hive).await?;
                read(db, id).await
            }
            HiveCall::Delete { who, id } => run_delete(db, &who, id).await,
        }
    }
}

/// Inserts the address and the hive in one statement: the new hive as [`COLUMNS`] reads it;
/// 400 `type` when the type code is not in the catalogue (nothing is inserted then).
async fn insert(db: &Client, account: i64, h: &Hive) -> Result<Row, ApiError> {
    let reset = h.reset_time.clone().flatten();
    let capacity = h.capacity.flatten();
    let sql = format!(
        "WITH t AS (SELECT id, code FROM hive_type WHERE code = $1::text),
              ad AS (INSERT INTO address (street, city, zip, country, latitude, longitude)
                     SELECT $2::text, $3::text, $4::text, $5::text, $6::float8, $7::float8
                     FROM t RETURNING *),
              h AS (INSERT INTO hive (account_id, address_id, hive_type_id, name, time_zone,
                                      capacity, reset_time)
                    SELECT $8::int8, ad.id, t.id, $9::text, $10::text, $11::int4, $12::text::time
                    FROM ad, t RETURNING *)
         SELECT {COLUMNS} FROM h JOIN t ON t.id = h.hive_type_id JOIN ad ON ad.id = h.address_id"
    );
    db.query_opt(
        &sql,
        &[
            &h.kind,
            &h.street,
            &h.city,
            &h.zip,
            &h.country,
            &h.latitude,
            &h.longitude,
            &account,
            &h.name,
            &h.time_zone,
            &capacity,
            &reset,
        ],
    )
    .await
    .map_err(db_error)?
    .ok_or_else(unknown_type)
}

fn unknown_type() -> ApiError {
    ApiError::invalid(
        "type",
        "type is not a hive type (bar, cafe, restaurant, ...)",
    )
}

/// Applies a patch to the hive and its address in one statement.
async fn update(db: &Client, id: i64, h: &Hive) -> Result<(), ApiError> {
    let (set_cap, cap) = (h.capacity.is_some(), h.capacity.flatten());
    let (set_reset, reset) = (h.reset_time.is_some(), h.reset_time.clone().flatten());
    let row = db
        .query_one(
            "WITH t AS (SELECT id FROM hive_type WHERE code = $2::text),
                  h AS (UPDATE hive SET
                          name = coalesce($3::text, name),
                          hive_type_id = coalesce((SELECT id FROM t), hive_type_id),
                          time_zone = coalesce($4::text, time_zone),
                          capacity = CASE WHEN $5::bool THEN $6::int4 ELSE capacity END,
                          reset_time = CASE WHEN $7::bool THEN $8::text::time ELSE reset_time END
                        WHERE id = $1 AND deleted_at IS NULL
                          AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM t))
                        RETURNING address_id),
                  ad AS (UPDATE address SET
                           street = coalesce($9::text, street), city = coalesce($10::text, city),
                           zip = coalesce($11::text, zip), country = coalesce($12::text, country),
                           latitude = coalesce($13::float8, latitude),
                           longitude = coalesce($14::float8, longitude)
                         WHERE id IN (SELECT address_id FROM h))
             SELECT count(*), $2::text IS NULL OR EXISTS (SELECT 1 FROM t) FROM h",
            &[
                &id,
                &h.kind,
                &h.name,
                &h.time_zone,
                &set_cap,
                &cap,
                &set_reset,
                &reset,
                &h.street,
                &h.city,
                &h.zip,
                &h.country,
                &h.latitude,
                &h.longitude,
            ],
        )
        .await
        .map_err(db_error)?;
    if !row.get::<_, bool>(1) {
        return Err(unknown_type());
    }
    if row.get::<_, i64>(0) == 0 {
        return Err(ApiError::not_found(format!("hive {id}")));
    }
    Ok(())
}

/// Deletes the hive and its sensors (deleted_at set on both), role checked, in one statement.
async fn run_delete(db: &Client, who: &Who, id: i64) -> Result<Json, ApiError> {
    let sql = format!(
        "WITH x AS (SELECT h.id, {} AS ok FROM hive h WHERE h.id = $3 AND h.deleted_at IS NULL),
              hd AS (UPDATE hive SET deleted_at = now()
                     WHERE id = (SELECT id FROM x WHERE ok) AND deleted_at IS NULL RETURNING id),
              s AS (UPDATE sensor SET deleted_at = now(), updated_at = now()
                    WHERE hive_id IN (SELECT id FROM hd) AND deleted_at IS NULL)
         SELECT x.ok, (SELECT count(*) FROM hd) FROM x",
        allowed_sql("h.account_id")
    );
    db::guarded_write(db, who, &sql, &id, || format!("hive {id}")).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::api::body::object;

    #[test]
    fn reset_times_time_zones_and_countries() {
        for ok in ["00:00", "04:00", "23:59"] {
            assert!(reset_time(ok).is_ok(), "{ok}");
        }
        for bad in ["24:00", "12:60", "4:00", "04:00:00", "ab:cd", "", "0400 "] {
            assert!(reset_time(bad).is_err(), "{bad}");
        }
        assert!(time_zone("Europe/Bucharest").is_ok());
        assert!(time_zone("Mars/Base").is_err());
        assert!(country("RO").is_ok() && country("ro").is_err() && country("ROU").is_err());
        assert!(type_code("bar").is_ok() && type_code("Bar").is_err() && type_code("").is_err());
    }

    fn field(body: &str, all: bool) -> Option<String> {
        parse(object(body.as_bytes(), FIELDS).unwrap(), all)
            .unwrap_err()
            .field
    }

    #[test]
    fn a_create_needs_every_field_a_patch_none() {
        assert_eq!(field(r#"{"type":"bar"}"#, true).as_deref(), Some("name"));
        assert_eq!(
            field(r#"{"time_zone":"Nowhere/X"}"#, false).as_deref(),
            Some("time_zone")
        );
        assert_eq!(
            field(r#"{"address":{"city":""}}"#, false).as_deref(),
            Some("address.city")
        );
        assert_eq!(
            field(r#"{"capacity":0}"#, false).as_deref(),
            Some("capacity")
        );
        assert_eq!(field(r#"{"name":null}"#, false).as_deref(), Some("name"));
        let h = parse(
            object(br#"{"reset_time":null,"capacity":null}"#, FIELDS).unwrap(),
            false,
        )
        .unwrap();
        assert_eq!((h.reset_time, h.capacity), (Some(None), Some(None)));
        let h = parse(object(b"{}", FIELDS).unwrap(), false).unwrap();
        assert_eq!((h.reset_time, h.name), (None, None));
    }
}
