//! The batch writer, on the database's I/O thread: [`write()`] stores a batch of [`Report`]s in
//! one transaction and answers what became of each and which hives' occupancy moved. The
//! caller acknowledges the batch's held tickets only after `Ok` (commit = durable); on `Err`
//! nothing of the batch is stored and the caller may retry it whole.
//!
//! Statements per batch, whatever its size (each skipped when it has nothing to do):
//!
//! | # | statement | file |
//! |---|---|---|
//! | 1 | `SELECT .. FROM sensor WHERE device_id = ANY(..) ORDER BY id FOR UPDATE` | `load.rs` |
//! | 2 | `SELECT .. FROM hive_status JOIN hive .. ORDER BY hive_id FOR UPDATE OF hs` | `load.rs` |
//! | 3 | `INSERT INTO sensor_report_seen .. ON CONFLICT .. RETURNING` | `claim.rs` |
//! | 4 | `INSERT INTO sensor_report .. SELECT * FROM unnest(..)` | `save.rs` |
//! | 5 | `UPDATE sensor .. FROM unnest(..)` | `save.rs` |
//! | 6 | `UPDATE hive_status .. FROM unnest(..) RETURNING` | `save.rs` |
//! | 7 | `INSERT INTO hive_hourly .. ON CONFLICT DO UPDATE` | `save.rs` |
//!
//! between `BEGIN` and `COMMIT`. Each is sent with its parameters' types (`query_typed`), so it
//! costs one round trip, with no prepare or close before and after. Locks are taken sensors
//! first, then hives, each in ascending id order, so concurrent batches of the same sensors
//! queue instead of deadlocking. The rows are read into the count module's state, every report
//! goes through its rules in batch order (`apply.rs`), and the state is written back.
//!
//! hive_hourly gets entries, exits and the peak occupancy of each local hour, and for each hive
//! the batch changed, its occupancy integrated since the last change (`weigh.rs`); the hives no
//! batch changes are integrated by the periodic work (`maintain.rs`).
//!
//! A configuration payload (server -> sensor, which the ingest hook never passes) is answered
//! `Stored` and writes nothing, not even `last_seen`.
//!
//! Never called on an event loop: it waits on the database.

mod apply;
mod claim;
pub(crate) mod load;
pub mod maintain;
mod save;
mod weigh;

use std::collections::HashMap;
use std::time::Duration;

use tokio_postgres::{Client, Transaction};

use super::batch::{Report, Stored, Written};
use super::IngestConf;
use apply::Hours;
use load::HiveRow;

/// Stores `reports` in one transaction, in batch order; see the module header.
pub async fn write(
    client: &mut Client,
    reports: &[Report],
    conf: &IngestConf,
) -> Result<Written, tokio_postgres::Error> {
    if reports.is_empty() {
        return Ok(Written::default());
    }
    let tx = client.transaction().await?;
    let written = write_in(&tx, reports, conf).await?;
    tx.commit().await?;
    Ok(written)
}

/// [`write()`]'s statements inside the caller's transaction, which the caller commits: for a
/// caller that writes more in the same transaction (the spool's replay records its progress).
pub async fn write_in(
    tx: &Transaction<'_>,
    reports: &[Report],
    conf: &IngestConf,
) -> Result<Written, tokio_postgres::Error> {
    if reports.is_empty() {
        return Ok(Written::default());
    }
    let mut device_ids: Vec<&str> = reports.iter().map(|r| r.device_id.as_str()).collect();
    device_ids.sort_unstable();
    device_ids.dedup();
    let mut sensors = load::sensors(tx, &device_ids).await?;
    let mut hive_ids: Vec<i64> = sensors.values().map(|s| s.hive_id).collect();
    hive_ids.sort_unstable();
    hive_ids.dedup();
    let mut hives = load::hives(tx, &hive_ids).await?;
    let sensor_ids: Vec<Option<i64>> = reports
        .iter()
        .map(|r| sensors.get(&r.device_id).map(|s| s.id))
        .collect();
    let window = Duration::from(conf.dedupe_window);
    let duplicate = claim::duplicates(tx, reports, &sensor_ids, window).await?;

    let mut hours = Hours::new();
    let mut rows = Vec::with_capacity(reports.len());
    let mut stored = Vec::with_capacity(reports.len());
    for (report, duplicate) in reports.iter().zip(duplicate) {
        let Some(sensor) = sensors.get_mut(&report.device_id) else {
            stored.push(Stored::UnknownSensor);
            continue;
        };
        if duplicate {
            sensor.health.last_seen = sensor.health.last_seen.max(Some(report.received_at));
            stored.push(Stored::Duplicate);
            continue;
        }
        let hive = hives
            .get_mut(&sensor.hive_id)
            .expect("the hive_status_create trigger gives every hive its row");
        match apply::apply(report, sensor, hive, conf, &mut hours) {
            Some(row) if row.reason == Some("mode_mismatch") => {
                rows.push((report, row));
                stored.push(Stored::ModeMismatch);
            }
            Some(row) => {
                rows.push((report, row));
                stored.push(Stored::Stored);
            }
            None => stored.push(Stored::Stored),
        }
    }

    save::reports(tx, &rows).await?;
    save::sensors(tx, &by_id(&sensors, |s| s.id)).await?;
    let changed: HashMap<i64, HiveRow> = hives
        .into_iter()
        .filter(|(_, h)| h.state != h.read)
        .collect();
    let now: chrono::DateTime<chrono::Utc> = std::time::SystemTime::now().into();
    for h in changed.values() {
        weigh::integrate(&weigh::Held::before(h), now, &mut hours);
    }
    let occupancy = save::hives(tx, &by_id(&changed, |h| h.id), now).await?;
    save::hourly(tx, &hours).await?;
    Ok(Written {
        stored,
        hives: occupancy,
    })
}

/// The rows of `map`, by ascending id (the order their locks were taken in).
fn by_id<K, T>(map: &HashMap<K, T>, id: fn(&T) -> i64) -> Vec<&T> {
    let mut rows: Vec<&T> = map.values().collect();
    rows.sort_by_key(|r| id(r));
    rows
}
