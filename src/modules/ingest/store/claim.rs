//! Duplicates (PROTOCOL.md, "General rules"): a counter or event report is stored only when
//! its `(sensor, kind, SHA-256 of the payload)` is claimed in sensor_report_seen, one statement
//! for the batch (the claim of 0004_reports.sql). A key that is taken, and not older than
//! `ingest.dedupe_window`, makes the report a duplicate. Status messages are never claimed.
//!
//! A payload repeated inside one batch is claimed once, by its first copy; the later copies are
//! duplicates when within the window of it (batches last milliseconds, so they always are).
//! Two workers claiming the same key serialize on it; they already hold the sensor's row lock
//! by then, so the claim adds no lock-order hazard.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

use super::super::batch::Report;
use super::super::decode::Payload;

/// The claim key of a report: `(sensor id, kind, SHA-256 of the payload)`.
type Key = (i64, &'static str, Vec<u8>);

/// The topic kind a payload is claimed under; `None` for what is never a duplicate.
pub(super) fn claim_kind(payload: &Payload) -> Option<&'static str> {
    match payload {
        Payload::Legacy(_) | Payload::Counter(_) => Some("counter"),
        Payload::Events(_) => Some("event"),
        Payload::Status(_) | Payload::Configuration(_) => None,
    }
}

/// Which reports of the batch are duplicates within `window`, in batch order; `sensors[i]` is
/// report i's sensor id (`None`: unknown, never a duplicate).
pub(super) async fn duplicates(
    tx: &Transaction<'_>,
    reports: &[Report],
    sensors: &[Option<i64>],
    window: Duration,
) -> Result<Vec<bool>, tokio_postgres::Error> {
    let mut duplicate = vec![false; reports.len()];
    let mut first: HashMap<Key, usize> = HashMap::new();
    let mut claims = Vec::new();
    for (i, (report, sensor)) in reports.iter().zip(sensors).enumerate() {
        let (Some(sensor), Some(kind)) = (*sensor, claim_kind(&report.payload)) else {
            continue;
        };
        let key = (
            sensor,
            kind,
            Sha256::digest(&report.raw).as_slice().to_vec(),
        );
        match first.get(&key) {
            Some(&f) => duplicate[i] = within(window, &reports[f], report),
            None => {
                first.insert(key.clone(), i);
                claims.push((i, key));
            }
        }
    }
    let taken = claim(tx, reports, &claims, window).await?;
    for (i, key) in &claims {
        duplicate[*i] = !taken.contains(key);
    }
    Ok(duplicate)
}

fn within(window: Duration, first: &Report, later: &Report) -> bool {
    (later.received_at - first.received_at)
        .to_std()
        .map_or(true, |d| d < window)
}

/// Claims `claims` (report index, key) in one statement; the keys this batch took.
async fn claim(
    tx: &Transaction<'_>,
    reports: &[Report],
    claims: &[(usize, Key)],
    window: Duration,
) -> Result<HashSet<Key>, tokio_postgres::Error> {
    if claims.is_empty() {
        return Ok(HashSet::new());
    }
    let sensor: Vec<i64> = claims.iter().map(|(_, k)| k.0).collect();
    let kind: Vec<&str> = claims.iter().map(|(_, k)| k.1).collect();
    let hash: Vec<&[u8]> = claims.iter().map(|(_, k)| k.2.as_slice()).collect();
    let at: Vec<SystemTime> = claims
        .iter()
        .map(|(i, _)| SystemTime::from(reports[*i].received_at))
        .collect();
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let rows = tx
        .query_typed(
            "INSERT INTO sensor_report_seen AS s
                 (sensor_id, kind, payload_sha256, first_received_at)
             SELECT * FROM unnest($1::int8[], $2::text[], $3::bytea[], $4::timestamptz[])
             ON CONFLICT (sensor_id, kind, payload_sha256) DO UPDATE
                 SET first_received_at = excluded.first_received_at
                 WHERE s.first_received_at
                       < excluded.first_received_at - $5::int8 * interval '1 millisecond'
             RETURNING sensor_id, kind, payload_sha256",
            &[
                (&sensor, Type::INT8_ARRAY),
                (&kind, Type::TEXT_ARRAY),
                (&hash, Type::BYTEA_ARRAY),
                (&at, Type::TIMESTAMPTZ_ARRAY),
                (&window_ms, Type::INT8),
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let kind = if r.get::<_, &str>(1) == "event" {
                "event"
            } else {
                "counter"
            };
            (r.get(0), kind, r.get(2))
        })
        .collect())
}
