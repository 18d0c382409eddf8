//! The database half of a configuration push (`PUT /v1/sensors/{device_id}/config`): the
//! configuration is stored with the next id of its sensor (1, 2, 3...: strictly increasing,
//! PROTOCOL.md section 5). Publishing it is the MQTT side's, woken by a trigger on
//! sensor_report_config; nothing is published or notified here.
//!
//! One statement finds the live sensor, checks the caller's role on its account, locks the
//! sensor row (FOR UPDATE) and inserts max + 1. A second push racing for the same sensor waits
//! on the lock, then computes its max from the snapshot it started with and collides (primary
//! key, or the trigger that refuses an id that goes back): the statement is run again with a
//! fresh snapshot, a bounded number of times.

use serde_json::json;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::db::{self, allowed_sql, db_error, Who};
use super::error::ApiError;
use super::route::Json;
use super::sensors::Config;

/// How many times a push that lost a race for its id is tried again.
const RETRIES: usize = 8;

/// Stores `c` for the live sensor `device_id`: 200 `{"configuration_id", "acknowledged": false}`.
pub async fn store(db: &Client, who: &Who, device_id: &str, c: &Config) -> Result<Json, ApiError> {
    let sql = format!(
        "WITH s AS (SELECT s.id, {} AS ok FROM sensor s JOIN hive h ON h.id = s.hive_id
                    WHERE s.device_id = $3 AND s.deleted_at IS NULL FOR UPDATE OF s),
              ins AS (INSERT INTO sensor_report_config (sensor_id, configuration_id,
                          threshold_cm, reporting_interval_min, status_interval_min,
                          event_threshold)
                      SELECT s.id, coalesce((SELECT max(configuration_id)
                                             FROM sensor_report_config c
                                             WHERE c.sensor_id = s.id), 0) + 1,
                             $4::int4, $5::int4, $6::int4, $7::int4
                      FROM s WHERE s.ok RETURNING configuration_id)
         SELECT s.ok, (SELECT configuration_id FROM ins) FROM s",
        allowed_sql("h.account_id")
    );
    let params: [&(dyn ToSql + Sync); 7] = [
        &who.platform_admin,
        &who.uid,
        &device_id,
        &c.threshold_cm,
        &c.reporting_interval_min,
        &c.status_interval_min,
        &c.event_threshold,
    ];
    let what = || format!("sensor {device_id}");
    let mut tries = 0;
    let row = loop {
        match db.query_opt(&sql, &params).await {
            Err(e) if is_race(&e) && tries < RETRIES => tries += 1,
            other => break other.map_err(db_error)?,
        }
    };
    db::check_role(row.as_ref().map(|r| r.get(0)), what)?;
    let row = row.ok_or_else(|| ApiError::not_found(what()))?;
    let id: i64 = row
        .get::<_, Option<i64>>(1)
        .ok_or_else(|| ApiError::not_found(what()))?;
    Ok(db::json(
        200,
        &json!({ "configuration_id": id, "acknowledged": false }),
    ))
}

/// Whether `e` is the collision of two configuration ids made at once (retried).
fn is_race(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::CHECK_VIOLATION)
}
