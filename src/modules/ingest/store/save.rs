//! The batch's writes, one statement each whatever the batch's size: the report rows (a
//! multi-row INSERT from arrays), the sensor rows, the hive_status rows and the hourly rollup
//! (UPDATE / upsert from arrays). Run inside the batch transaction, after `apply.rs`.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Transaction;

use super::super::batch::{Occupancy, Report};
use super::apply::{Hours, ReportRow};
use super::load::{HiveRow, SensorRow};
use crate::modules::ingest::count::Mode;
use crate::modules::occupancy;

/// One array parameter of an `unnest(..)` statement, with its type: statements are sent typed
/// (no prepare round trip). `Send`, so that [`write`](super::write)'s future is.
type Column<'a> = (Box<dyn ToSql + Sync + Send + 'a>, Type);

/// The array of `f` over `rows`, of PostgreSQL type `ty`, as a statement parameter.
fn column<'a, R, T>(rows: &'a [R], ty: Type, f: impl Fn(&'a R) -> T) -> Column<'a>
where
    T: ToSql + Sync + Send + 'a,
{
    (Box::new(rows.iter().map(f).collect::<Vec<T>>()), ty)
}

/// `columns` as the parameters of `execute_typed` / `query_typed`.
fn typed<'c>(columns: &'c [Column<'_>]) -> Vec<(&'c (dyn ToSql + Sync), Type)> {
    columns
        .iter()
        .map(|(v, t)| -> (&(dyn ToSql + Sync), Type) { (v.as_ref(), t.clone()) })
        .collect()
}

fn time(t: Option<DateTime<Utc>>) -> Option<SystemTime> {
    t.map(SystemTime::from)
}

/// Inserts `rows`, each with the report it came from.
pub(super) async fn reports(
    tx: &Transaction<'_>,
    rows: &[(&Report, ReportRow)],
) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let columns = vec![
        column(rows, Type::INT8_ARRAY, |(_, r)| r.sensor_id),
        column(rows, Type::TEXT_ARRAY, |(_, r)| r.kind),
        column(rows, Type::TIMESTAMPTZ_ARRAY, |(p, _)| {
            SystemTime::from(p.received_at)
        }),
        column(rows, Type::TIMESTAMPTZ_ARRAY, |(_, r)| time(r.sensor_time)),
        column(rows, Type::TIMESTAMPTZ_ARRAY, |(_, r)| {
            SystemTime::from(r.trusted_time)
        }),
        column(rows, Type::BYTEA_ARRAY, |(p, _)| p.raw.as_slice()),
        column(rows, Type::INT2_ARRAY, |(_, r)| r.version),
        column(rows, Type::INT2_ARRAY, |(_, r)| r.report_type),
        column(rows, Type::INT4_ARRAY, |(_, r)| r.message_counter),
        column(rows, Type::INT4_ARRAY, |(_, r)| r.total_in),
        column(rows, Type::INT4_ARRAY, |(_, r)| r.total_out),
        column(rows, Type::INT4_ARRAY, |(_, r)| r.diff_in),
        column(rows, Type::INT4_ARRAY, |(_, r)| r.diff_out),
        column(rows, Type::INT2_ARRAY, |(_, r)| r.tz_offset_min),
        column(rows, Type::INT2_ARRAY, |(_, r)| r.entries),
        column(rows, Type::INT2_ARRAY, |(_, r)| r.exits),
        column(rows, Type::INT4_ARRAY, |(_, r)| {
            r.delta.map(|d| as_i32(d.entries))
        }),
        column(rows, Type::INT4_ARRAY, |(_, r)| {
            r.delta.map(|d| as_i32(d.exits))
        }),
        column(rows, Type::BOOL_ARRAY, |(_, r)| r.delta.is_some()),
        column(rows, Type::TEXT_ARRAY, |(_, r)| r.reason),
    ];
    tx.execute_typed(
        "INSERT INTO sensor_report (sensor_id, kind, received_at, sensor_time, trusted_time,
             payload, version, report_type, message_counter, total_in, total_out, diff_in,
             diff_out, tz_offset_min, entries, exits, delta_in, delta_out, applied, reason)
         SELECT * FROM unnest($1::int8[], $2::text[], $3::timestamptz[], $4::timestamptz[],
             $5::timestamptz[], $6::bytea[], $7::int2[], $8::int2[], $9::int4[], $10::int4[],
             $11::int4[], $12::int4[], $13::int4[], $14::int2[], $15::int2[], $16::int2[],
             $17::int4[], $18::int4[], $19::bool[], $20::text[])",
        &typed(&columns),
    )
    .await?;
    Ok(())
}

/// Writes back the counting state and health of `sensors`.
pub(super) async fn sensors(
    tx: &Transaction<'_>,
    sensors: &[&SensorRow],
) -> Result<(), tokio_postgres::Error> {
    if sensors.is_empty() {
        return Ok(());
    }
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let columns = vec![
        column(sensors, Type::INT8_ARRAY, |s| s.id),
        column(sensors, Type::TEXT_ARRAY, |s| s.state.mode.map(mode_name)),
        column(sensors, Type::INT4_ARRAY, |s| {
            s.state.totals.map(|t| as_i32(t.total_in))
        }),
        column(sensors, Type::INT4_ARRAY, |s| {
            s.state.totals.map(|t| as_i32(t.total_out))
        }),
        column(sensors, Type::INT4_ARRAY, |s| {
            s.state.message_counter.map(i32::from)
        }),
        column(sensors, Type::TIMESTAMPTZ_ARRAY, |s| time(s.state.time)),
        column(sensors, Type::INT8_ARRAY, move |s| count(s.state.restarts)),
        column(sensors, Type::INT8_ARRAY, move |s| count(s.state.anomalies)),
        column(sensors, Type::INT8_ARRAY, move |s| {
            count(s.state.missed_messages)
        }),
        column(sensors, Type::TIMESTAMPTZ_ARRAY, |s| {
            time(s.health.last_seen)
        }),
        column(sensors, Type::TIMESTAMPTZ_ARRAY, |s| {
            time(s.health.startup_time)
        }),
        column(sensors, Type::INT8_ARRAY, |s| s.health.firmware_version),
        column(sensors, Type::INT4_ARRAY, |s| s.health.battery_mv),
        column(sensors, Type::INT2_ARRAY, |s| s.health.gprs_signal),
        column(sensors, Type::INT4_ARRAY, |s| s.health.sensor_state),
        column(sensors, Type::INT4_ARRAY, |s| s.health.discarded_events),
        column(sensors, Type::INT4_ARRAY, |s| s.health.clock_skew_s),
        column(sensors, Type::INT8_ARRAY, |s| {
            s.health.config_acknowledged_id
        }),
    ];
    tx.execute_typed(
        "UPDATE sensor s SET counting_mode = u.mode, last_total_in = u.total_in,
             last_total_out = u.total_out, last_message_counter = u.counter,
             last_trusted_at = u.trusted, restarts = u.restarts, anomalies = u.anomalies,
             missed_messages = u.missed, last_seen = u.last_seen, startup_time = u.startup,
             firmware_version = u.firmware, battery_mv = u.battery, gprs_signal = u.signal,
             sensor_state = u.state, discarded_events = u.discarded, clock_skew_s = u.skew,
             config_acknowledged_id = u.acked
         FROM unnest($1::int8[], $2::text[], $3::int4[], $4::int4[], $5::int4[],
             $6::timestamptz[], $7::int8[], $8::int8[], $9::int8[], $10::timestamptz[],
             $11::timestamptz[], $12::int8[], $13::int4[], $14::int2[], $15::int4[],
             $16::int4[], $17::int4[], $18::int8[])
             AS u(id, mode, total_in, total_out, counter, trusted, restarts, anomalies, missed,
                  last_seen, startup, firmware, battery, signal, state, discarded, skew, acked)
         WHERE s.id = u.id",
        &typed(&columns),
    )
    .await?;
    Ok(())
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Counter => "counter",
        Mode::Event => "event",
    }
}

/// Writes back the hives the batch changed; their occupancy answer, by ascending hive id.
/// The answer's `degraded` is read from the sensors' health as this transaction left it, kept
/// as the hive's published flag, and each change is announced to the other nodes: `NOTIFY` on
/// [`occupancy::CHANNEL`], sent at commit, from the node named by the connection's
/// `bizzy.node` setting.
pub(super) async fn hives(
    tx: &Transaction<'_>,
    hives: &[&HiveRow],
    integrated: DateTime<Utc>,
) -> Result<Vec<Occupancy>, tokio_postgres::Error> {
    if hives.is_empty() {
        return Ok(Vec::new());
    }
    let id: Vec<i64> = hives.iter().map(|h| h.id).collect();
    let occupancy: Vec<i32> = hives.iter().map(|h| as_i32(h.state.occupancy)).collect();
    let drift: Vec<i32> = hives.iter().map(|h| as_i32(h.state.drift)).collect();
    let reset: Vec<Option<SystemTime>> = hives
        .iter()
        .map(|h| h.state.last_reset.map(SystemTime::from))
        .collect();
    tx.execute_typed(
        "UPDATE hive_status hs SET occupancy = u.occupancy, drift_today = u.drift,
             last_reset_at = u.reset, updated_at = now(),
             integrated_at = greatest(hs.integrated_at, $5)
         FROM unnest($1::int8[], $2::int4[], $3::int4[], $4::timestamptz[])
             AS u(id, occupancy, drift, reset)
         WHERE hs.hive_id = u.id",
        &[
            (&id, Type::INT8_ARRAY),
            (&occupancy, Type::INT4_ARRAY),
            (&drift, Type::INT4_ARRAY),
            (&reset, Type::TIMESTAMPTZ_ARRAY),
            (&SystemTime::from(integrated), Type::TIMESTAMPTZ),
        ],
    )
    .await?;
    published(tx, &id).await
}

/// Marks the hives `ids` as published with their current occupancy answer, announces each to
/// the other nodes (see [`hives`]), and answers them by ascending hive id.
pub(super) async fn published(
    tx: &Transaction<'_>,
    ids: &[i64],
) -> Result<Vec<Occupancy>, tokio_postgres::Error> {
    publish_where(tx, "hs.hive_id = ANY($1)", &[(&ids, Type::INT8_ARRAY)]).await
}

/// [`published`] for the hives of `condition` (on `hs`, hive_status, and `v`, hive_occupancy).
pub(super) async fn publish_where<C: tokio_postgres::GenericClient>(
    c: &C,
    condition: &str,
    params: &[(&(dyn tokio_postgres::types::ToSql + Sync), Type)],
) -> Result<Vec<Occupancy>, tokio_postgres::Error> {
    let sql = format!(
        "UPDATE hive_status hs SET degraded = v.degraded
         FROM hive_occupancy v
         WHERE v.hive_id = hs.hive_id AND {condition}
         RETURNING {}",
        occupancy::COLUMNS,
    );
    let rows = c.query_typed(&sql, params).await?;
    let mut out: Vec<Occupancy> = rows.iter().map(occupancy::from_row).collect();
    out.sort_by_key(|o| o.hive_id);
    if !out.is_empty() {
        let notices = occupancy::notices(&out);
        let sql = format!(
            "SELECT pg_notify('{}', coalesce(current_setting('bizzy.node', true), '') || ' ' || n)
             FROM unnest($1::text[]) AS n",
            occupancy::CHANNEL
        );
        c.query_typed(&sql, &[(&notices, Type::TEXT_ARRAY)]).await?;
    }
    Ok(out)
}

/// Adds the batch's entries, exits and peaks to hive_hourly.
pub(super) async fn hourly<C: tokio_postgres::GenericClient>(
    tx: &C,
    hours: &Hours,
) -> Result<(), tokio_postgres::Error> {
    if hours.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<_> = hours.keys().copied().collect();
    keys.sort();
    let hive: Vec<i64> = keys.iter().map(|k| k.0).collect();
    let hour: Vec<SystemTime> = keys.iter().map(|k| SystemTime::from(k.1)).collect();
    let entries: Vec<i32> = keys.iter().map(|k| hours[k].entries).collect();
    let exits: Vec<i32> = keys.iter().map(|k| hours[k].exits).collect();
    let peak: Vec<i32> = keys.iter().map(|k| hours[k].peak).collect();
    let observed: Vec<i32> = keys
        .iter()
        .map(|k| i32::try_from(hours[k].observed_ms.clamp(0, 3_600_000)).unwrap_or(0))
        .collect();
    let weighted: Vec<i64> = keys.iter().map(|k| hours[k].occupancy_ms.max(0)).collect();
    tx.execute_typed(
        "INSERT INTO hive_hourly AS hh (hive_id, hour, entries, exits, peak_occupancy,
                                       observed_ms, occupancy_ms)
         SELECT * FROM unnest($1::int8[], $2::timestamptz[], $3::int4[], $4::int4[], $5::int4[],
                              $6::int4[], $7::int8[])
         ON CONFLICT (hive_id, hour) DO UPDATE SET
             entries = hh.entries + excluded.entries,
             exits = hh.exits + excluded.exits,
             peak_occupancy = greatest(hh.peak_occupancy, excluded.peak_occupancy),
             observed_ms = least(3600000, hh.observed_ms + excluded.observed_ms),
             occupancy_ms = hh.occupancy_ms + excluded.occupancy_ms,
             updated_at = now()",
        &[
            (&hive, Type::INT8_ARRAY),
            (&hour, Type::TIMESTAMPTZ_ARRAY),
            (&entries, Type::INT4_ARRAY),
            (&exits, Type::INT4_ARRAY),
            (&peak, Type::INT4_ARRAY),
            (&observed, Type::INT4_ARRAY),
            (&weighted, Type::INT8_ARRAY),
        ],
    )
    .await?;
    Ok(())
}

fn as_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
