//! What the replica holds, read from PostgreSQL: the public answers of the hives, as the cache
//! manager stores them. Each function is one SQL statement on a `tokio_postgres::Client`.

use std::time::SystemTime;

use tokio_postgres::Client;

use crate::modules::occupancy;

/// A hive that changed: its details and its occupancy answer, None when it is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub id: i64,
    pub hive: Option<Vec<u8>>,
    pub occupancy: Option<Vec<u8>>,
}

/// The details of a live hive as JSON, `h` being the hive row.
const DETAILS: &str = "json_build_object(
        'id', h.id, 'name', h.name, 'description', h.description, 'type', t.code,
        'capacity', h.capacity, 'time_zone', h.time_zone,
        'address', json_build_object('street', a.street, 'city', a.city, 'zip', a.zip,
            'country', a.country, 'latitude', a.latitude, 'longitude', a.longitude),
        'images', coalesce((SELECT json_agg(json_build_object('url', i.url, 'kind', i.kind)
                            ORDER BY i.position, i.id)
                            FROM hive_image i WHERE i.hive_id = h.id), '[]'))::text";

/// The occupancy answer of each live hive of `ids`.
pub async fn occupancies(
    db: &Client,
    ids: &[i64],
) -> Result<Vec<(i64, Vec<u8>)>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {} FROM hive_occupancy v WHERE v.hive_id = ANY($1) ORDER BY v.hive_id",
        occupancy::COLUMNS
    );
    let rows = db.query(&sql, &[&ids]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let o = occupancy::from_row(r);
            (o.hive_id, o.to_json().into_bytes())
        })
        .collect())
}

/// The occupancy answer of live hive `id`.
pub async fn occupancy(db: &Client, id: i64) -> Result<Option<Vec<u8>>, tokio_postgres::Error> {
    Ok(occupancies(db, &[id]).await?.pop().map(|(_, json)| json))
}

/// The details of live hive `id`.
pub async fn hive(db: &Client, id: i64) -> Result<Option<Vec<u8>>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {DETAILS} FROM hive h JOIN hive_type t ON t.id = h.hive_type_id
         JOIN address a ON a.id = h.address_id WHERE h.id = $1 AND h.deleted_at IS NULL"
    );
    let row = db.query_opt(&sql, &[&id]).await?;
    Ok(row.map(|r| r.get::<_, String>(0).into_bytes()))
}

/// The hives, their addresses, images or occupancy changed since `since`: each one's answers,
/// None for a hive deleted.
pub async fn changed_since(
    db: &Client,
    since: SystemTime,
) -> Result<Vec<Changed>, tokio_postgres::Error> {
    let rows = db
        .query(
            "SELECT id FROM hive WHERE updated_at >= $1
             UNION SELECT h.id FROM hive h JOIN address a ON a.id = h.address_id
                   WHERE a.updated_at >= $1
             UNION SELECT hive_id FROM hive_image WHERE updated_at >= $1 OR created_at >= $1
             UNION SELECT hive_id FROM hive_status WHERE updated_at >= $1
             ORDER BY 1",
            &[&since],
        )
        .await?;
    answers(db, rows.iter().map(|r| r.get(0))).await
}

/// The live hives after `after_id`, at most `limit`, by id.
pub async fn all_after(
    db: &Client,
    after_id: i64,
    limit: i64,
) -> Result<Vec<Changed>, tokio_postgres::Error> {
    let rows = db
        .query(
            "SELECT id FROM hive WHERE id > $1 AND deleted_at IS NULL ORDER BY id LIMIT $2",
            &[&after_id, &limit],
        )
        .await?;
    answers(db, rows.iter().map(|r| r.get(0))).await
}

/// The answers of hives `ids`.
async fn answers(
    db: &Client,
    ids: impl Iterator<Item = i64>,
) -> Result<Vec<Changed>, tokio_postgres::Error> {
    let mut out = Vec::new();
    for id in ids {
        let hive = hive(db, id).await?;
        let occupancy = occupancy(db, id).await?;
        out.push(Changed {
            id,
            hive,
            occupancy,
        });
    }
    Ok(out)
}

/// The hive types, by code.
pub async fn hive_types(db: &Client) -> Result<Vec<u8>, tokio_postgres::Error> {
    let row = db
        .query_one(
            "SELECT json_build_object('hive_types', coalesce(json_agg(
                 json_build_object('code', code, 'name', name) ORDER BY code), '[]'))::text
             FROM hive_type",
            &[],
        )
        .await?;
    Ok(row.get::<_, String>(0).into_bytes())
}
