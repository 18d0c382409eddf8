//! The batch's first statements: resolve the device ids to live sensors and lock their rows,
//! then lock the hive_status rows of their hives, each `FOR UPDATE` in ascending id order
//! (sensors first, then hives), so that two workers writing batches of the same sensors wait
//! for each other instead of deadlocking. Rows are read into the count module's state structs.
//! The simulator reads its fleet's starting state with the same two functions (`sim/fleet.rs`),
//! so its expectations start from what the writer would read.

use std::collections::HashMap;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio_postgres::types::Type;
use tokio_postgres::{Row, Transaction};

use crate::modules::ingest::count::{Direction, HiveState, Mode, ResetTime, SensorState, Totals};

/// A sensor row, locked for the batch.
#[derive(Debug, Clone)]
pub(crate) struct SensorRow {
    pub id: i64,
    pub hive_id: i64,
    pub direction: Direction,
    pub modulus: u32,
    pub state: SensorState,
    pub health: Health,
}

/// The health columns of a sensor row, written back whole.
#[derive(Debug, Clone, Default)]
pub(crate) struct Health {
    pub last_seen: Option<DateTime<Utc>>,
    pub startup_time: Option<DateTime<Utc>>,
    pub firmware_version: Option<i64>,
    pub battery_mv: Option<i32>,
    pub gprs_signal: Option<i16>,
    pub sensor_state: Option<i32>,
    pub discarded_events: Option<i32>,
    pub clock_skew_s: Option<i32>,
    pub config_acknowledged_id: i64,
}

/// A hive_status row, locked for the batch, with what the counting needs of its hive.
#[derive(Debug, Clone)]
pub(crate) struct HiveRow {
    pub id: i64,
    pub zone: Tz,
    pub reset: Option<ResetTime>,
    pub state: HiveState,
    /// The state as read: the batch changed the hive when `state` differs.
    pub read: HiveState,
    /// The degraded flag last published, and how far the occupancy is integrated.
    pub degraded: bool,
    pub integrated_at: Option<DateTime<Utc>>,
}

/// The live sensors of `device_ids`, locked, by device id.
pub(crate) async fn sensors(
    tx: &Transaction<'_>,
    device_ids: &[&str],
) -> Result<HashMap<String, SensorRow>, tokio_postgres::Error> {
    let rows = tx
        .query_typed(
            "SELECT id, device_id, hive_id, direction, counter_modulus, counting_mode,
                    last_total_in, last_total_out, last_message_counter, last_trusted_at,
                    restarts, anomalies, missed_messages, last_seen, startup_time,
                    firmware_version, battery_mv, gprs_signal, sensor_state, discarded_events,
                    clock_skew_s, config_acknowledged_id
             FROM sensor
             WHERE device_id = ANY($1::text[]) AND deleted_at IS NULL
             ORDER BY id
             FOR UPDATE",
            &[(&device_ids, Type::TEXT_ARRAY)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, String>("device_id"), sensor_row(r)))
        .collect())
}

fn sensor_row(r: &Row) -> SensorRow {
    let total = |name: &str| r.get::<_, Option<i32>>(name).map(as_u32);
    let totals = match (total("last_total_in"), total("last_total_out")) {
        (Some(total_in), Some(total_out)) => Some(Totals {
            total_in,
            total_out,
        }),
        _ => None,
    };
    let count = |name: &str| u64::try_from(r.get::<_, i64>(name)).unwrap_or(0);
    SensorRow {
        id: r.get("id"),
        hive_id: r.get("hive_id"),
        direction: match r.get::<_, &str>("direction") {
            "reversed" => Direction::Reversed,
            _ => Direction::Normal,
        },
        modulus: as_u32(r.get("counter_modulus")),
        state: SensorState {
            mode: match r.get::<_, Option<&str>>("counting_mode") {
                Some("counter") => Some(Mode::Counter),
                Some("event") => Some(Mode::Event),
                _ => None,
            },
            totals,
            message_counter: r
                .get::<_, Option<i32>>("last_message_counter")
                .and_then(|c| u16::try_from(c).ok()),
            time: instant(r.get("last_trusted_at")),
            restarts: count("restarts"),
            anomalies: count("anomalies"),
            missed_messages: count("missed_messages"),
        },
        health: Health {
            last_seen: instant(r.get("last_seen")),
            startup_time: instant(r.get("startup_time")),
            firmware_version: r.get("firmware_version"),
            battery_mv: r.get("battery_mv"),
            gprs_signal: r.get("gprs_signal"),
            sensor_state: r.get("sensor_state"),
            discarded_events: r.get("discarded_events"),
            clock_skew_s: r.get("clock_skew_s"),
            config_acknowledged_id: r.get("config_acknowledged_id"),
        },
    }
}

/// The hive_status rows of `hive_ids` (ascending, no repeats), locked, by hive id.
pub(crate) async fn hives(
    tx: &Transaction<'_>,
    hive_ids: &[i64],
) -> Result<HashMap<i64, HiveRow>, tokio_postgres::Error> {
    let rows = tx
        .query_typed(
            "SELECT hs.hive_id, hs.occupancy, hs.drift_today, hs.last_reset_at,
                    hs.degraded, hs.integrated_at, h.time_zone::text AS time_zone,
                    to_char(h.reset_time, 'HH24:MI') AS reset_time
             FROM hive_status hs JOIN hive h ON h.id = hs.hive_id
             WHERE hs.hive_id = ANY($1::int8[])
             ORDER BY hs.hive_id
             FOR UPDATE OF hs",
            &[(&hive_ids, Type::INT8_ARRAY)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("hive_id"), hive_row(r)))
        .collect())
}

fn hive_row(r: &Row) -> HiveRow {
    let state = HiveState {
        occupancy: as_u32(r.get("occupancy")),
        drift: as_u32(r.get("drift_today")),
        last_reset: instant(r.get("last_reset_at")),
    };
    HiveRow {
        id: r.get("hive_id"),
        // A zone PostgreSQL knows but chrono-tz does not (a POSIX rule string) is read as UTC
        // rather than refusing the batch forever.
        zone: r.get::<_, &str>("time_zone").parse().unwrap_or(Tz::UTC),
        reset: r
            .get::<_, Option<&str>>("reset_time")
            .and_then(|t| t.parse().ok()),
        state,
        read: state,
        degraded: r.get("degraded"),
        integrated_at: instant(r.get("integrated_at")),
    }
}

/// A column the schema keeps non-negative, as u32.
fn as_u32(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn instant(t: Option<SystemTime>) -> Option<DateTime<Utc>> {
    t.map(DateTime::<Utc>::from)
}
