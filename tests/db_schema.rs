//! What the schema promises beyond its tables (PROTOCOL.md, DESIGN.md section 7), checked with
//! SQL on a migrated database: a duplicate is caught across a month boundary, reports land in
//! their month's partition, configuration ids only increase, every hive has its occupancy row,
//! and the daily reset happens once. Run through `scripts/with-postgres`.

mod common;
use common::pg::{try_query, TestDb};

use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};

/// A migrated database with one hive (Europe/Bucharest) and one sensor on it.
struct Fixture {
    db: TestDb,
    hive: String,
    sensor: String,
}

fn fixture() -> Fixture {
    let db = TestDb::new();
    migrate_with(&db.url, MIGRATIONS).expect("the schema applies");
    let (hive, sensor) = db.hive_with_sensor("door-1");
    Fixture { db, hive, sensor }
}

/// The ingest's claim of a payload (0004_reports.sql): true when it is new.
fn claim(f: &Fixture, payload: &str, at: &str) -> bool {
    let rows = f.db.query(&format!(
        "INSERT INTO sensor_report_seen AS s (sensor_id, kind, payload_sha256, first_received_at)
         VALUES ({}, 'counter', sha256('{payload}'::bytea), '{at}')
         ON CONFLICT (sensor_id, kind, payload_sha256) DO UPDATE
             SET first_received_at = excluded.first_received_at
             WHERE s.first_received_at < excluded.first_received_at - interval '24 hours'
         RETURNING true",
        f.sensor
    ));
    !rows.is_empty()
}

#[test]
fn a_duplicate_is_caught_across_a_month_boundary() {
    let f = fixture();
    // PROTOCOL.md section 7's legacy report.
    let payload = r"\x0005000304d20457180b16121e05ffff";
    assert!(claim(&f, payload, "2026-01-31 23:59:00+00"), "first copy");
    assert!(
        !claim(&f, payload, "2026-02-01 00:01:00+00"),
        "a copy two minutes later, in the next month, is a duplicate"
    );
    assert!(
        claim(&f, payload, "2026-02-02 00:00:00+00"),
        "past the window it is a new report"
    );
    let pruned = f
        .db
        .value("SELECT sensor_report_seen_prune(interval '24 hours', '2026-02-03 00:00:01+00')");
    assert_eq!(pruned.as_deref(), Some("1"));
    assert_eq!(
        f.db.value("SELECT count(*) FROM sensor_report_seen")
            .as_deref(),
        Some("0")
    );
}

#[test]
fn reports_land_in_their_months_partition() {
    let f = fixture();
    f.db.query("SELECT sensor_report_create_partitions(2, '2026-01-15 12:00:00+00')");
    for at in ["2026-01-31 23:59:59.999+00", "2026-02-01 00:00:00+00"] {
        f.db.query(&format!(
            "INSERT INTO sensor_report (sensor_id, kind, received_at, trusted_time, payload,
                                        version, total_in, total_out, applied, reason)
             VALUES ({}, 'counter', '{at}', '{at}', '\\x00', 1, 0, 0, false, 'baseline')",
            f.sensor
        ));
    }
    let parts =
        f.db.query("SELECT tableoid::regclass::text FROM sensor_report ORDER BY received_at");
    let parts: Vec<_> = parts.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert_eq!(parts, ["sensor_report_2026_01", "sensor_report_2026_02"]);

    let outside = try_query(
        &f.db.url,
        &format!(
            "INSERT INTO sensor_report (sensor_id, kind, received_at, trusted_time, payload,
                                        applied, reason)
             VALUES ({}, 'status', '1999-01-01', '1999-01-01', '\\x00', false, 'status')",
            f.sensor
        ),
    );
    let err = outside.expect_err("no partition for 1999");
    assert!(err.contains("no partition"), "{err}");

    let unexplained = try_query(
        &f.db.url,
        &format!(
            "INSERT INTO sensor_report (sensor_id, kind, received_at, trusted_time, payload,
                                        applied)
             VALUES ({}, 'status', '2026-01-02', '2026-01-02', '\\x00', false)",
            f.sensor
        ),
    );
    assert!(unexplained.is_err(), "a report not applied says why");
}

#[test]
fn configuration_ids_only_increase() {
    let f = fixture();
    let insert = |id: u32| {
        try_query(
            &f.db.url,
            &format!(
                "INSERT INTO sensor_report_config (sensor_id, configuration_id, threshold_cm,
                     reporting_interval_min, status_interval_min, event_threshold)
                 VALUES ({}, {id}, 50, 15, 60, 1)",
                f.sensor
            ),
        )
    };
    assert!(insert(0).is_err(), "ids start at 1");
    insert(1).expect("1");
    insert(5).expect("5");
    let err = insert(3).expect_err("3 after 5");
    assert!(err.contains("is not above 5"), "{err}");
    assert!(insert(5).is_err(), "5 again");
}

#[test]
fn a_hive_has_its_occupancy_row_and_defaults() {
    let f = fixture();
    let row = f.db.query(&format!(
        "SELECT s.occupancy::text, s.drift_today::text, h.reset_time::text
         FROM hive h JOIN hive_status s ON s.hive_id = h.id WHERE h.id = {}",
        f.hive
    ));
    assert_eq!(
        row,
        [[Some("0".into()), Some("0".into()), Some("04:00:00".into())]]
    );
    let bad_zone = try_query(
        &f.db.url,
        &format!(
            "UPDATE hive SET time_zone = 'Mars/Olympus' WHERE id = {}",
            f.hive
        ),
    );
    assert!(bad_zone.is_err(), "an unknown time zone is refused");
    f.db.query(&format!(
        "UPDATE hive SET reset_time = NULL WHERE id = {}",
        f.hive
    ));
}

#[test]
fn the_daily_reset_happens_once() {
    let f = fixture();
    f.db.query(&format!(
        "UPDATE hive_status SET occupancy = 42, drift_today = 3 WHERE hive_id = {}",
        f.hive
    ));
    let reset = format!(
        "UPDATE hive_status SET occupancy = 0, drift_today = 0,
                last_reset_at = '2026-11-23 02:00:00+00', updated_at = now()
         WHERE hive_id = {} AND (last_reset_at IS NULL OR last_reset_at < '2026-11-23 02:00:00+00')
         RETURNING hive_id",
        f.hive
    );
    assert_eq!(f.db.query(&reset).len(), 1, "the first node resets");
    assert_eq!(f.db.query(&reset).len(), 0, "the second finds it done");
}

#[test]
fn a_deleted_sensors_device_id_may_be_registered_again() {
    let f = fixture();
    let again = format!(
        "INSERT INTO sensor (device_id, hive_id, secret_hash)
         VALUES ('door-1', {}, '$pbkdf2-sha512$i=1000$c2FsdA$aGFzaGhhc2hoYXNo')",
        f.hive
    );
    assert!(
        try_query(&f.db.url, &again).is_err(),
        "a live device id is unique"
    );
    f.db.query(&format!(
        "UPDATE sensor SET deleted_at = now() WHERE id = {}",
        f.sensor
    ));
    try_query(&f.db.url, &again).expect("registered again after the delete");
}
