//! The periodic work of the database side of ingest, run by one worker per node on a timer
//! (several nodes may run it at once: every change here is a conditional UPDATE, so it happens
//! once):
//!
//! - the occupancy of each hive no batch changed lately is integrated into hive_hourly;
//! - the daily reset of each hive at its local reset time (PROTOCOL.md section 6), for the hives
//!   no report reached since; a report that comes first resets its hive in its own batch;
//! - a hive whose sensors went silent (or came back) since its occupancy was last published is
//!   published again, `degraded` changed;
//! - the month partitions of sensor_report are created ahead, and the duplicate window's
//!   expired payloads pruned.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::apply::Hours;
use super::{save, weigh};
use crate::modules::ingest::count::{reset_due, ResetTime};
use crate::modules::occupancy::Occupancy;

/// Integrates every hive that no batch integrated in the last `INTEGRATE_AFTER` up to `now`
/// (see `store/weigh.rs`). Hives a batch holds are skipped: it integrates them itself.
pub async fn integrate(
    client: &mut Client,
    now: DateTime<Utc>,
) -> Result<usize, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let before = SystemTime::from(now - INTEGRATE_AFTER);
    let rows = tx
        .query_typed(
            "SELECT hs.hive_id, hs.occupancy, hs.degraded, hs.integrated_at, h.time_zone::text
             FROM hive_status hs JOIN hive h ON h.id = hs.hive_id
             WHERE h.deleted_at IS NULL
               AND (hs.integrated_at IS NULL OR hs.integrated_at < $1)
             ORDER BY hs.hive_id
             FOR UPDATE OF hs SKIP LOCKED",
            &[(&before, Type::TIMESTAMPTZ)],
        )
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut hours = Hours::new();
    let mut ids = Vec::with_capacity(rows.len());
    for r in &rows {
        let held = weigh::Held {
            hive_id: r.get(0),
            occupancy: u32::try_from(r.get::<_, i32>(1)).unwrap_or(0),
            degraded: r.get(2),
            since: r.get::<_, Option<SystemTime>>(3).map(Into::into),
            zone: r.get::<_, &str>(4).parse().unwrap_or(Tz::UTC),
        };
        weigh::integrate(&held, now, &mut hours);
        ids.push(held.hive_id);
    }
    save::hourly(&tx, &hours).await?;
    tx.execute_typed(
        "UPDATE hive_status SET integrated_at = $2 WHERE hive_id = ANY($1)",
        &[
            (&ids, Type::INT8_ARRAY),
            (&SystemTime::from(now), Type::TIMESTAMPTZ),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(ids.len())
}

/// A hive integrated more recently than this (by a batch) is left to the next run.
const INTEGRATE_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(20);

/// Resets the hives whose reset is due at `now`; their new occupancy answers.
pub async fn resets(
    client: &mut Client,
    now: DateTime<Utc>,
) -> Result<Vec<Occupancy>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT hs.hive_id, h.time_zone::text, to_char(h.reset_time, 'HH24:MI'),
                    hs.last_reset_at
             FROM hive_status hs JOIN hive h ON h.id = hs.hive_id
             WHERE h.deleted_at IS NULL AND h.reset_time IS NOT NULL",
            &[],
        )
        .await?;
    let mut ids = Vec::new();
    let mut instants = Vec::new();
    for r in &rows {
        let zone: Tz = r.get::<_, &str>(1).parse().unwrap_or(Tz::UTC);
        let reset: Option<ResetTime> = r.get::<_, &str>(2).parse().ok();
        let last: Option<DateTime<Utc>> = r.get::<_, Option<SystemTime>>(3).map(Into::into);
        if let Some(at) = reset_due(zone, reset, last, now) {
            ids.push(r.get::<_, i64>(0));
            instants.push(SystemTime::from(at));
        }
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let tx = client.transaction().await?;
    let reset: Vec<i64> = tx
        .query_typed(
            "UPDATE hive_status hs SET occupancy = 0, drift_today = 0,
                 last_reset_at = u.at, updated_at = now()
             FROM unnest($1::int8[], $2::timestamptz[]) AS u(id, at)
             WHERE hs.hive_id = u.id
               AND (hs.last_reset_at IS NULL OR hs.last_reset_at < u.at)
             RETURNING hs.hive_id",
            &[
                (&ids, Type::INT8_ARRAY),
                (&instants, Type::TIMESTAMPTZ_ARRAY),
            ],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let out = save::published(&tx, &reset).await?;
    tx.commit().await?;
    Ok(out)
}

/// Publishes again the hives whose `degraded` differs from what was last published.
pub async fn degraded(client: &Client) -> Result<Vec<Occupancy>, tokio_postgres::Error> {
    save::publish_where(client, "hs.degraded <> v.degraded", &[]).await
}

/// Creates the month partitions ahead (this month and the next) and forgets the payloads older
/// than the duplicate window.
pub async fn housekeeping(
    client: &Client,
    dedupe_window: Duration,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT sensor_report_create_partitions(2)", &[])
        .await?;
    let secs = i64::try_from(dedupe_window.as_secs()).unwrap_or(i64::MAX);
    client
        .execute(
            "SELECT sensor_report_seen_prune(make_interval(secs => $1::int8))",
            &[&secs],
        )
        .await?;
    Ok(())
}
