//! The database half of a configuration push (`PUT /v1/sensors/{device_id}/config`): the
//! configuration is stored with the next id of its sensor (1, 2, 3...: strictly increasing,
//! PROTOCOL.md section 5). Publishing it is the MQTT side's, woken by a trigger on
//! sensor_report_config; nothing is published or notified here.
//!
//! One statement locks the sensor row (FOR UPDATE) and inserts max + 1. A second push racing
//! for the same sensor waits on the lock, then computes its max from the snapshot it started
//! with and collides (primary key, or the trigger that refuses an id that goes back): the
//! statement is run again with a fresh snapshot, a bounded number of times.

use serde_json::json;
use tokio_postgres::Client;

use super::db::{self, db_error};
use super::error::ApiError;
use super::route::Json;
use super::sensors::{is_race, Config};

/// How many times a push that lost a race for its id is tried again.
const RETRIES: usize = 8;

/// Stores `c` for the live sensor `sensor`: 200 `{"configuration_id", "acknowledged": false}`.
pub async fn store(
    db: &Client,
    sensor: i64,
    device_id: &str,
    c: &Config,
) -> Result<Json, ApiError> {
    let sql = "WITH s AS (SELECT id FROM sensor WHERE id = $1 AND deleted_at IS NULL FOR UPDATE)
               INSERT INTO sensor_report_config (sensor_id, configuration_id, threshold_cm,
                   reporting_interval_min, status_interval_min, event_threshold)
               SELECT s.id, coalesce((SELECT max(configuration_id) FROM sensor_report_config c
                                      WHERE c.sensor_id = s.id), 0) + 1,
                      $2::int4, $3::int4, $4::int4, $5::int4
               FROM s RETURNING configuration_id";
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
        &sensor,
        &c.threshold_cm,
        &c.reporting_interval_min,
        &c.status_interval_min,
        &c.event_threshold,
    ];
    let mut tries = 0;
    let row = loop {
        match db.query_opt(sql, &params).await {
            Err(e) if is_race(&e) && tries < RETRIES => tries += 1,
            other => break other.map_err(db_error)?,
        }
    };
    let row = row.ok_or_else(|| ApiError::not_found(format!("sensor {device_id}")))?;
    let id: i64 = row.get(0);
    Ok(db::json(
        200,
        &json!({ "configuration_id": id, "acknowledged": false }),
    ))
}
