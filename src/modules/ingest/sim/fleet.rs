//! The simulated fleet in the database: `--create` writes it through SQL, and every run reads
//! it back, with the state the counting rules start from.
//!
//! The fleet is the live sensors whose device id starts with [`PREFIX`] (`sim-00000`,
//! `sim-00001`, ...), on hives of the account named [`ACCOUNT`]. `--create` replaces it: the
//! earlier simulated sensors and hives are marked deleted (their reports stay, as any deleted
//! sensor's do), then a new account, `--hives` hives and `--sensors` sensors are inserted. The
//! hives have no daily reset (an expectation must not depend on when a run crosses 04:00), one
//! sensor in ten is mounted reversed, one in seven wraps its totals at 65523, and every sensor's
//! secret is `--password`, stored as PBKDF2 in the PHC format.
//!
//! Reading uses the batch writer's own reader (`store::load`), so the model starts from the
//! rows as the writer would see them, and takes the payloads the server holds as claimed
//! within `ingest.dedupe_window` (sensor_report_seen), so that a payload an earlier run sent
//! is expected to be a duplicate, as it is.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use base64::Engine;
use sha2::Sha512;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Transaction};

use super::rng::Rng;
use crate::modules::ingest::store::load::{self, HiveRow, SensorRow};

/// Device ids of simulated sensors start with this.
pub const PREFIX: &str = "sim-";
/// The account `--create` puts the simulated hives under.
pub const ACCOUNT: &str = "Bizzy simulator";
/// PBKDF2-SHA512 rounds of the stored secrets: a simulator's sensors log in by the thousand.
const ROUNDS: u32 = 1000;

/// Where the simulated hives are: time zone, city, country, latitude, longitude.
const PLACES: [(&str, &str, &str, f64, f64); 5] = [
    ("Europe/Bucharest", "Bucharest", "RO", 44.4305, 26.1010),
    ("Europe/Berlin", "Berlin", "DE", 52.5200, 13.4050),
    ("America/New_York", "New York", "US", 40.7128, -74.0060),
    ("Asia/Kolkata", "Mumbai", "IN", 19.0760, 72.8777),
    ("Atlantic/Reykjavik", "Reykjavik", "IS", 64.1466, -21.9426),
];
const TYPES: [&str; 7] = ["bar", "cafe", "restaurant", "club", "store", "gym", "other"];

/// The device id of the fleet's sensor `i`.
pub fn device_id(i: usize) -> String {
    format!("{PREFIX}{i:05}")
}

/// A sensor of the fleet and its row.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub device_id: String,
    pub row: SensorRow,
    /// The counter and event payloads the server holds as claimed: (kind, SHA-256).
    pub claimed: Vec<(Claim, [u8; 32])>,
}

/// The topic kind a payload is claimed under (`store/claim.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Claim {
    Counter,
    Event,
}

/// The fleet as read from the database.
#[derive(Debug, Clone)]
pub(crate) struct Fleet {
    /// By device id.
    pub members: Vec<Member>,
    /// The hives of the members, by id.
    pub hives: BTreeMap<i64, HiveRow>,
}

/// Why the fleet could not be read.
#[derive(Debug)]
pub enum FleetError {
    Db(tokio_postgres::Error),
    /// Fewer simulated sensors than asked for.
    TooFew {
        found: usize,
        wanted: usize,
    },
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetError::Db(e) => super::db_error(e, f),
            FleetError::TooFew { found, wanted } => write!(
                f,
                "the database has {found} simulated sensors ({PREFIX}*), {wanted} wanted: \
                 run with --create"
            ),
        }
    }
}

impl From<tokio_postgres::Error> for FleetError {
    fn from(e: tokio_postgres::Error) -> FleetError {
        FleetError::Db(e)
    }
}

/// Replaces the fleet with `sensors` sensors on `hives` hives, in one transaction.
pub(crate) async fn create(
    client: &mut Client,
    sensors: usize,
    hives: usize,
    password: &str,
    seed: u64,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute(
        "UPDATE sensor SET deleted_at = now()
         WHERE starts_with(device_id, $1) AND deleted_at IS NULL",
        &[&PREFIX],
    )
    .await?;
    tx.execute(
        "UPDATE hive SET deleted_at = now()
         WHERE deleted_at IS NULL AND account_id IN (SELECT id FROM account WHERE name = $1)",
        &[&ACCOUNT],
    )
    .await?;
    let account: i64 = tx
        .query_one(
            "INSERT INTO account (name) VALUES ($1) RETURNING id",
            &[&ACCOUNT],
        )
        .await?
        .get(0);
    let hive_ids = insert_hives(&tx, account, hives.max(1)).await?;
    let hash = secret_hash(password, seed);
    let ids: Vec<String> = (0..sensors).map(device_id).collect();
    let hive_of: Vec<i64> = (0..sensors).map(|i| hive_ids[i % hive_ids.len()]).collect();
    let hashes = vec![hash; sensors];
    let direction: Vec<&str> = (0..sensors)
        .map(|i| if i % 10 == 3 { "reversed" } else { "normal" })
        .collect();
    let modulus: Vec<i32> = (0..sensors)
        .map(|i| if i % 7 == 5 { 65523 } else { 65536 })
        .collect();
    tx.execute(
        "INSERT INTO sensor (device_id, hive_id, secret_hash, direction, counter_modulus)
         SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::int4[])",
        &[&ids, &hive_of, &hashes, &direction, &modulus],
    )
    .await?;
    tx.commit().await
}

/// `n` hives of `account`, each with its address, no daily reset; their ids.
async fn insert_hives(
    tx: &Transaction<'_>,
    account: i64,
    n: usize,
) -> Result<Vec<i64>, tokio_postgres::Error> {
    let insert = tx
        .prepare_typed(
            "WITH ad AS (INSERT INTO address (street, city, zip, country, latitude, longitude)
                         VALUES ($1, $2, '00000', $3, $4, $5) RETURNING id)
             INSERT INTO hive (account_id, address_id, hive_type_id, name, time_zone, capacity,
                               reset_time)
             SELECT $6, ad.id, t.id, $7, $8, $9, NULL FROM ad, hive_type t WHERE t.code = $10
             RETURNING id",
            &[
                Type::TEXT,
                Type::TEXT,
                Type::BPCHAR,
                Type::FLOAT8,
                Type::FLOAT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::INT4,
                Type::TEXT,
            ],
        )
        .await?;
    let mut ids = Vec::with_capacity(n);
    for k in 0..n {
        let (zone, city, country, lat, lon) = PLACES[k % PLACES.len()];
        let street = format!("Simulation street {}", k + 1);
        let name = format!("Simulated hive {}", k + 1);
        let capacity = i32::try_from(50 + (k * 37) % 450).expect("below 500");
        let kind = TYPES[k % TYPES.len()];
        let row = tx
            .query_one(
                &insert,
                &[
                    &street, &city, &country, &lat, &lon, &account, &name, &zone, &capacity, &kind,
                ],
            )
            .await?;
        ids.push(row.get::<_, i64>(0));
    }
    Ok(ids)
}

/// The first `n` sensors of the fleet and their hives, with the state the writer keeps and
/// the payloads claimed within `window`.
pub(crate) async fn load(
    client: &mut Client,
    n: usize,
    window: Duration,
) -> Result<Fleet, FleetError> {
    let limit = i64::try_from(n).unwrap_or(i64::MAX);
    let ids: Vec<String> = client
        .query(
            "SELECT device_id FROM sensor
             WHERE starts_with(device_id, $1) AND deleted_at IS NULL
             ORDER BY device_id LIMIT $2",
            &[&PREFIX, &limit],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if ids.len() < n {
        return Err(FleetError::TooFew {
            found: ids.len(),
            wanted: n,
        });
    }
    let tx = client.transaction().await?;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut rows = load::sensors(&tx, &refs).await?;
    let mut hive_ids: Vec<i64> = rows.values().map(|s| s.hive_id).collect();
    hive_ids.sort_unstable();
    hive_ids.dedup();
    let hives = load::hives(&tx, &hive_ids).await?;
    tx.commit().await?;
    let sensor_ids: Vec<i64> = rows.values().map(|r| r.id).collect();
    let mut claimed = claims(client, &sensor_ids, window).await?;
    let members = ids
        .into_iter()
        .filter_map(|device_id| {
            let row = rows.remove(&device_id)?;
            let claimed = claimed.remove(&row.id).unwrap_or_default();
            Some(Member {
                device_id,
                row,
                claimed,
            })
        })
        .collect();
    Ok(Fleet {
        members,
        hives: hives.into_iter().collect(),
    })
}

/// The payloads of `sensor_ids` claimed within `window` of now, by sensor id.
async fn claims(
    client: &Client,
    sensor_ids: &[i64],
    window: Duration,
) -> Result<HashMap<i64, Vec<(Claim, [u8; 32])>>, tokio_postgres::Error> {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT sensor_id, kind, payload_sha256 FROM sensor_report_seen
             WHERE sensor_id = ANY($1)
               AND first_received_at >= now() - $2::int8 * interval '1 millisecond'",
            &[&sensor_ids, &window_ms],
        )
        .await?;
    let mut by_sensor: HashMap<i64, Vec<(Claim, [u8; 32])>> = HashMap::new();
    for r in rows {
        let kind = match r.get::<_, &str>(1) {
            "event" => Claim::Event,
            _ => Claim::Counter,
        };
        let Ok(digest) = <[u8; 32]>::try_from(r.get::<_, &[u8]>(2)) else {
            continue;
        };
        by_sensor.entry(r.get(0)).or_default().push((kind, digest));
    }
    Ok(by_sensor)
}

/// `password` as PBKDF2-SHA512 in the PHC string format, with a salt drawn from `seed`.
pub fn secret_hash(password: &str, seed: u64) -> String {
    let mut rng = Rng::new(seed, u64::MAX);
    let salt: Vec<u8> = (0..16).map(|_| rng.next_u64() as u8).collect();
    let mut hash = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &salt, ROUNDS, &mut hash);
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    format!(
        "$pbkdf2-sha512$i={ROUNDS}${}${}",
        b64.encode(&salt),
        b64.encode(hash)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_sort_in_fleet_order() {
        assert_eq!(device_id(7), "sim-00007");
        assert!(device_id(99) < device_id(100));
    }

    #[test]
    fn secrets_are_phc_strings() {
        let h = secret_hash("s3cret", 1);
        let parts: Vec<&str> = h.split('$').collect();
        assert_eq!(parts[..3], ["", "pbkdf2-sha512", "i=1000"]);
        assert_eq!(parts.len(), 5);
        let hash = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(parts[4])
            .expect("base64");
        assert_eq!(hash.len(), 64);
        assert_eq!(h, secret_hash("s3cret", 1));
        assert_ne!(h, secret_hash("other", 1));
    }
}
