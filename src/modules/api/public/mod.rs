//! The public resources (DESIGN.md section 8, anonymous): a hive's occupancy with `vs_usual`,
//! a hive's details, the hive types, and the search of [`search`]. Each is one SQL statement on a
//! `tokio_postgres::Client` and answers the JSON bytes exactly as clients get them and as the
//! cache manager stores them in memcached (`modules::cache::keys`): whoever renders a resource,
//! the worker after a miss or the manager after a change, renders it here, so the bytes agree.
//!
//! The public shapes carry no business data (no account): anonymous callers see what a venue
//! shows on its door. Deleted hives are unknown here.
//!
//! Called on the worker's I/O thread and in the cache manager; never on an event loop.

pub mod search;

use std::time::SystemTime;

use serde::Serialize;
use tokio_postgres::{Client, Row};

use crate::modules::occupancy;

/// What changed about one hive: its details and occupancy as answered now, both None when the
/// hive was deleted (the replica drops its entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub id: i64,
    pub hive: Option<Vec<u8>>,
    pub occupancy: Option<Vec<u8>>,
}

/// The columns of a live hive's occupancy: `occupancy::COLUMNS` of `hive_occupancy v`, then
/// the hive's usual occupancy now ([`occupancy_json`] reads them in this order from column 0).
const OCCUPANCY: &str = "v.hive_id, v.occupancy, v.capacity, v.updated_at, v.degraded,
    hive_usual(v.hive_id, now())";

/// The occupancy answer of live hive `id` (DESIGN.md section 8 shape, "stale": false, plus
/// "vs_usual"), None when no live hive has that id.
pub async fn occupancy(db: &Client, id: i64) -> Result<Option<Vec<u8>>, tokio_postgres::Error> {
    let sql = format!("SELECT {OCCUPANCY} FROM hive_occupancy v WHERE v.hive_id = $1");
    let row = db.query_opt(&sql, &[&id]).await?;
    Ok(row.map(|r| occupancy_json(&r)))
}

/// The same for several hives (the manager after a NOTIFY): (id, answer) of the live ones, by
/// id.
pub async fn occupancies(
    db: &Client,
    ids: &[i64],
) -> Result<Vec<(i64, Vec<u8>)>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {OCCUPANCY} FROM hive_occupancy v WHERE v.hive_id = ANY($1) ORDER BY v.hive_id"
    );
    let rows = db.query(&sql, &[&ids]).await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, i64>(0), occupancy_json(r)))
        .collect())
}

/// Hive details (no occupancy), None when deleted or unknown.
pub async fn hive(db: &Client, id: i64) -> Result<Option<Vec<u8>>, tokio_postgres::Error> {
    let sql = format!("SELECT {DETAILS} FROM {FROM} WHERE h.id = $1 AND h.deleted_at IS NULL");
    let row = db.query_opt(&sql, &[&id]).await?;
    Ok(row.map(|r| to_bytes(&details(&r, 0))))
}

/// The details and occupancy of the live hives among `ids` (a page of a user's favourites),
/// by id, in one statement.
pub async fn hives(db: &Client, ids: &[i64]) -> Result<Vec<Changed>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {CHANGED}, {DETAILS} FROM {FROM} LEFT JOIN hive_occupancy v ON v.hive_id = h.id
         WHERE h.id = ANY($1) AND h.deleted_at IS NULL ORDER BY h.id"
    );
    let rows = db.query(&sql, &[&ids]).await?;
    Ok(rows.iter().map(changed).collect())
}

/// What changed since `since` (hive, address, images, hive_status rows with updated_at >=
/// since; a removed image touches its hive): each changed hive's details and occupancy, None
/// for a hive deleted since. By id.
pub async fn changed_since(
    db: &Client,
    since: SystemTime,
) -> Result<Vec<Changed>, tokio_postgres::Error> {
    let sql = format!(
        "WITH c AS (SELECT id FROM hive WHERE updated_at >= $1
                    UNION SELECT h.id FROM hive h JOIN address a ON a.id = h.address_id
                          WHERE a.updated_at >= $1
                    UNION SELECT hive_id FROM hive_image WHERE updated_at >= $1
                    UNION SELECT hive_id FROM hive_status WHERE updated_at >= $1)
         SELECT {CHANGED}, {DETAILS} FROM {FROM} LEFT JOIN hive_occupancy v ON v.hive_id = h.id
         WHERE h.id IN (SELECT id FROM c) ORDER BY h.id"
    );
    let rows = db.query(&sql, &[&since]).await?;
    Ok(rows.iter().map(changed).collect())
}

/// Every live hive (a full refill after memcached lost its data), in pages by id: the first
/// `limit` hives after `after_id`.
pub async fn all_after(
    db: &Client,
    after_id: i64,
    limit: i64,
) -> Result<Vec<Changed>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {CHANGED}, {DETAILS} FROM {FROM} LEFT JOIN hive_occupancy v ON v.hive_id = h.id
         WHERE h.id > $1 AND h.deleted_at IS NULL ORDER BY h.id LIMIT $2"
    );
    let rows = db.query(&sql, &[&after_id, &limit]).await?;
    Ok(rows.iter().map(changed).collect())
}

/// The GET /v1/hive-types answer: `{"items": [{"code", "name"}...]}` in the catalogue's order.
pub async fn hive_types(db: &Client) -> Result<Vec<u8>, tokio_postgres::Error> {
    #[derive(Serialize)]
    struct Type {
        code: String,
        name: String,
    }
    #[derive(Serialize)]
    struct Types {
        items: Vec<Type>,
    }
    let rows = db
        .query("SELECT code, name FROM hive_type ORDER BY id", &[])
        .await?;
    let items = rows
        .iter()
        .map(|r| Type {
            code: r.get(0),
            name: r.get(1),
        })
        .collect();
    Ok(to_bytes(&Types { items }))
}

/// The occupancy answer from a row of [`OCCUPANCY`]: `Occupancy::to_json` with `vs_usual`
/// appended, so the fields every client reads stay where they are.
fn occupancy_json(r: &Row) -> Vec<u8> {
    let o = occupancy::from_row(r);
    let usual: Option<f64> = r.get(5);
    let mut s = o.to_json();
    debug_assert!(s.ends_with('}'));
    s.pop();
    s.push_str(",\"vs_usual\":");
    match vs_usual(o.occupancy, usual) {
        Some(p) => s.push_str(&p.to_string()),
        None => s.push_str("null"),
    }
    s.push('}');
    s.into_bytes()
}

/// The occupancy against the usual one as a whole percentage (100: as busy as usual); None
/// without enough history, or when the place is usually empty at this hour (no ratio).
pub fn vs_usual(occupancy: u32, usual: Option<f64>) -> Option<i64> {
    let usual = usual.filter(|u| u.is_finite() && *u > 0.0)?;
    // Saturating: a hive usually near empty may be thousands of percent busier, never more
    // than i64 holds.
    Some((f64::from(occupancy) / usual * 100.0).round() as i64)
}

/// The columns of a hive's details, from `hive h` joined as [`FROM`] does; [`details`] reads
/// them in this order.
const DETAILS: &str = "h.id, h.name, t.code, h.description, ad.street, ad.city, ad.zip,
    ad.country::text, ad.latitude, ad.longitude, h.time_zone::text, h.capacity,
    to_char(h.reset_time, 'HH24:MI'), im.urls, im.kinds";

/// A hive with its type, address and images (in their order: position, then id).
const FROM: &str = "hive h JOIN hive_type t ON t.id = h.hive_type_id
    JOIN address ad ON ad.id = h.address_id
    LEFT JOIN LATERAL (SELECT array_agg(i.url ORDER BY i.position, i.id) AS urls,
                              array_agg(i.kind ORDER BY i.position, i.id) AS kinds
                       FROM hive_image i WHERE i.hive_id = h.id) im ON true";

/// The columns of a [`Changed`] before its [`DETAILS`]: [`OCCUPANCY`] (NULL for a deleted
/// hive), then whether the hive lives.
const CHANGED: &str = "v.hive_id, v.occupancy, v.capacity, v.updated_at, v.degraded,
    CASE WHEN v.hive_id IS NOT NULL THEN hive_usual(v.hive_id, now()) END,
    h.deleted_at IS NULL";

/// A row of [`CHANGED`] and [`DETAILS`].
fn changed(r: &Row) -> Changed {
    let id: i64 = r.get(7);
    if !r.get::<_, bool>(6) {
        return Changed {
            id,
            hive: None,
            occupancy: None,
        };
    }
    let occupancy = r
        .get::<_, Option<i64>>(0)
        .is_some()
        .then(|| occupancy_json(r));
    Changed {
        id,
        hive: Some(to_bytes(&details(r, 7))),
        occupancy,
    }
}

/// A hive as the public API shows it. Fields in the order clients read them (serde keeps a
/// struct's order); `distance_m` only in a search near a point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Details {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: Option<String>,
    pub address: Address,
    pub time_zone: String,
    pub capacity: Option<i32>,
    pub reset_time: Option<String>,
    pub images: Vec<Image>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
}

/// Where a hive is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Address {
    pub street: String,
    pub city: String,
    pub zip: String,
    pub country: String,
    pub latitude: f64,
    pub longitude: f64,
}

/// One of a hive's images: `cover` (at most one) or `secondary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Image {
    pub url: String,
    pub kind: String,
}

/// A hive from [`DETAILS`] at column `at` on.
fn details(r: &Row, at: usize) -> Details {
    let urls: Vec<String> = r.get::<_, Option<_>>(at + 13).unwrap_or_default();
    let kinds: Vec<String> = r.get::<_, Option<_>>(at + 14).unwrap_or_default();
    Details {
        id: r.get(at),
        name: r.get(at + 1),
        kind: r.get(at + 2),
        description: r.get(at + 3),
        address: Address {
            street: r.get(at + 4),
            city: r.get(at + 5),
            zip: r.get(at + 6),
            country: r.get(at + 7),
            latitude: r.get(at + 8),
            longitude: r.get(at + 9),
        },
        time_zone: r.get(at + 10),
        capacity: r.get(at + 11),
        reset_time: r.get(at + 12),
        images: urls
            .into_iter()
            .zip(kinds)
            .map(|(url, kind)| Image { url, kind })
            .collect(),
        distance_m: None,
    }
}

/// The JSON bytes of a shape of this module.
fn to_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("the public shapes have string keys and finite numbers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vs_usual_is_a_whole_percentage_or_nothing() {
        assert_eq!(vs_usual(42, Some(42.0)), Some(100));
        assert_eq!(vs_usual(1, Some(3.0)), Some(33));
        assert_eq!(vs_usual(2, Some(3.0)), Some(67));
        assert_eq!(vs_usual(0, Some(10.0)), Some(0));
        assert_eq!(vs_usual(10, Some(0.0)), None);
        assert_eq!(vs_usual(10, None), None);
        assert_eq!(vs_usual(10, Some(f64::NAN)), None);
        assert_eq!(vs_usual(u32::MAX, Some(f64::MIN_POSITIVE)), Some(i64::MAX));
    }

    #[test]
    fn details_keep_their_order_and_show_distance_only_near_a_point() {
        let mut d = Details {
            id: 7,
            name: "Café Central".into(),
            kind: "cafe".into(),
            description: None,
            address: Address {
                street: "Str. Lipscani 1".into(),
                city: "Bucharest".into(),
                zip: "030031".into(),
                country: "RO".into(),
                latitude: 44.43,
                longitude: 26.1,
            },
            time_zone: "Europe/Bucharest".into(),
            capacity: Some(120),
            reset_time: Some("04:00".into()),
            images: vec![Image {
                url: "https://x.test/a.jpg".into(),
                kind: "cover".into(),
            }],
            distance_m: None,
        };
        assert_eq!(
            String::from_utf8(to_bytes(&d)).unwrap(),
            r#"{"id":7,"name":"Café Central","type":"cafe","description":null,"address":{"street":"Str. Lipscani 1","city":"Bucharest","zip":"030031","country":"RO","latitude":44.43,"longitude":26.1},"time_zone":"Europe/Bucharest","capacity":120,"reset_time":"04:00","images":[{"url":"https://x.test/a.jpg","kind":"cover"}]}"#
        );
        d.distance_m = Some(12.5);
        assert!(String::from_utf8(to_bytes(&d))
            .unwrap()
            .ends_with(r#""kind":"cover"}],"distance_m":12.5}"#));
    }
}
