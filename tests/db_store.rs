//! The batch writer (`ingest::store::write`) on a real, migrated PostgreSQL: batches built from
//! decoded payloads, written through a current-thread tokio runtime, and the rows checked with
//! SQL. Run through `scripts/with-postgres cargo test --test db_store`.

mod common;
use common::pg::TestDb;

use bizzy::core::config::Dur;
use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};
use bizzy::modules::ingest::batch::{Report, Stored, Written};
use bizzy::modules::ingest::decode::{
    self, CounterV2, Event, EventType, LegacyCounter, Payload, ReportType, Status,
};
use bizzy::modules::ingest::store;
use bizzy::modules::ingest::IngestConf;
use chrono::{DateTime, NaiveDateTime, Utc};

/// A migrated database with one hive and its sensors, and partitions for the test months.
struct Fixture {
    db: TestDb,
    hive: i64,
}

impl Fixture {
    /// A hive in `zone` resetting at `reset` (an SQL literal: `'04:00'` or `NULL`).
    fn new(zone: &str, reset: &str) -> Fixture {
        let db = TestDb::new();
        migrate_with(&db.url, MIGRATIONS).expect("the schema applies");
        db.query("SELECT sensor_report_create_partitions(3, '2025-01-01 00:00:00+00')");
        let hive = add_hive(&db, zone, reset);
        Fixture { db, hive }
    }

    /// A sensor on the fixture's hive; its id.
    fn sensor(&self, device_id: &str, direction: &str) -> i64 {
        add_sensor(&self.db, self.hive, device_id, direction)
    }

    /// One value as text (NULL: None).
    fn value(&self, sql: &str) -> Option<String> {
        self.db.value(sql)
    }

    /// Every row of `sql`, as text, NULL as "-".
    fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        self.db
            .query(sql)
            .into_iter()
            .map(|r| r.into_iter().map(|v| v.unwrap_or("-".into())).collect())
            .collect()
    }

    fn occupancy(&self, hive: i64) -> (String, String) {
        let row = &self.rows(&format!(
            "SELECT occupancy, drift_today FROM hive_status WHERE hive_id = {hive}"
        ))[0];
        (row[0].clone(), row[1].clone())
    }

    fn count(&self, table: &str) -> String {
        self.value(&format!("SELECT count(*) FROM {table}"))
            .expect("a count")
    }
}

fn add_hive(db: &TestDb, zone: &str, reset: &str) -> i64 {
    let id = db.value(&format!(
        "WITH a AS (INSERT INTO account (name) VALUES ('Acme') RETURNING id),
              ad AS (INSERT INTO address (street, city, zip, country, latitude, longitude)
                     VALUES ('Hauptstr. 1', 'Berlin', '10115', 'DE', 52.5, 13.4) RETURNING id)
         INSERT INTO hive (account_id, address_id, hive_type_id, name, time_zone, capacity,
                           reset_time)
         SELECT a.id, ad.id, t.id, 'The Hive', '{zone}', 120, {reset}
         FROM a, ad, hive_type t WHERE t.code = 'bar'
         RETURNING id"
    ));
    id.expect("an id").parse().expect("a number")
}

fn add_sensor(db: &TestDb, hive: i64, device_id: &str, direction: &str) -> i64 {
    let id = db.value(&format!(
        "INSERT INTO sensor (device_id, hive_id, secret_hash, direction)
         VALUES ('{device_id}', {hive}, '$pbkdf2-sha512$i=1000$c2FsdA$aGFzaGhhc2hoYXNo',
                 '{direction}')
         RETURNING id"
    ));
    id.expect("an id").parse().expect("a number")
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("an RFC 3339 test time")
        .with_timezone(&Utc)
}

fn epoch(text: &str) -> u32 {
    u32::try_from(at(text).timestamp()).expect("a u32 timestamp")
}

/// A report of `device_id` received at `received`, its raw bytes encoded from `payload`.
fn report(device_id: &str, payload: Payload, received: &str) -> Report {
    let mut raw = Vec::new();
    decode::encode(&payload, &mut raw).expect("the test payload has a wire form");
    Report {
        ticket: Some(1),
        device_id: device_id.into(),
        payload,
        raw,
        received_at: at(received),
    }
}

/// A legacy counter report dated `local` ("2025-01-15 12:00:00", the hive's zone).
fn legacy(total_in: u16, total_out: u16, local: &str, report_type: ReportType) -> Payload {
    let time = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S").expect("a local time");
    Payload::Legacy(LegacyCounter {
        diff_in: total_in,
        diff_out: total_out,
        total_in,
        total_out,
        time: Some(time),
        report_type,
    })
}

fn v2(message_counter: u16, total_in: u16, total_out: u16, time: &str) -> Payload {
    Payload::Counter(CounterV2 {
        report_type: ReportType::Periodic,
        message_counter,
        total_in,
        total_out,
        timestamp: epoch(time),
        tz_offset_min: Some(60),
        diff_in: 0,
        diff_out: 0,
    })
}

/// An event report: `kinds` ('i' entry, 'o' exit, 's' status), one second apart from `time`.
fn events(kinds: &str, time: &str) -> Payload {
    let start = epoch(time);
    let events = kinds
        .chars()
        .zip(0..)
        .map(|(k, i)| Event {
            event_type: match k {
                'i' => EventType::Entry,
                'o' => EventType::Exit,
                _ => EventType::Status,
            },
            distance_mm: 800,
            timestamp: start + i,
        })
        .collect();
    Payload::Events(events)
}

/// Writes `reports` as one batch on a connection of its own, with the default `[ingest]`.
fn write(f: &Fixture, reports: &[Report]) -> Result<Written, tokio_postgres::Error> {
    write_with(f, reports, &IngestConf::default())
}

fn write_with(
    f: &Fixture,
    reports: &[Report],
    conf: &IngestConf,
) -> Result<Written, tokio_postgres::Error> {
    runtime().block_on(async {
        let (mut client, conn) = tokio_postgres::connect(&f.db.url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        store::write(&mut client, reports, conf).await
    })
}

async fn write_on(url: &str, reports: Vec<Report>) -> Result<Written, tokio_postgres::Error> {
    let (mut client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    store::write(&mut client, &reports, &IngestConf::default()).await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
}

fn stored(written: &Written) -> Vec<Stored> {
    written.stored.clone()
}

#[test]
fn protocol_section_7_sequence() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    let s = f.sensor("door-1", "normal");
    let p = ReportType::Periodic;
    let batch = [
        report(
            "door-1",
            legacy(65500, 65400, "2025-01-15 12:00:00", p),
            "2025-01-15T11:00:02Z",
        ),
        report(
            "door-1",
            legacy(65530, 65420, "2025-01-15 12:01:00", p),
            "2025-01-15T11:01:02Z",
        ),
        report(
            "door-1",
            legacy(12, 65500, "2025-01-15 12:02:00", p),
            "2025-01-15T11:02:02Z",
        ),
        report(
            "door-1",
            legacy(3, 2, "2025-01-15 12:03:00", p),
            "2025-01-15T11:03:02Z",
        ),
        report(
            "door-1",
            legacy(3, 2, "2025-01-15 12:03:00", p),
            "2025-01-15T11:03:05Z",
        ),
    ];
    let written = write(&f, &batch).expect("the batch commits");
    use Stored::{Duplicate, Stored as S};
    assert_eq!(stored(&written), [S, S, S, S, Duplicate]);
    assert_eq!(
        f.rows("SELECT applied, reason, delta_in, delta_out FROM sensor_report ORDER BY id"),
        [
            ["f", "baseline", "-", "-"],
            ["t", "-", "30", "20"],
            ["t", "wrap", "18", "80"],
            ["t", "restart", "3", "2"],
        ]
    );
    // 0 + (30 - 20) = 10, + (18 - 80) clamps at 0 with 52 drift, + (3 - 2) = 1.
    assert_eq!(f.occupancy(f.hive), ("1".into(), "52".into()));
    assert_eq!(written.hives.len(), 1);
    assert_eq!(
        (written.hives[0].hive_id, written.hives[0].occupancy),
        (f.hive, 1)
    );
    assert_eq!(written.hives[0].capacity, Some(120));
    assert_eq!(
        f.rows(&format!(
            "SELECT last_total_in, last_total_out, restarts, counting_mode,
                    last_seen = '2025-01-15 11:03:05+00', clock_skew_s
             FROM sensor WHERE id = {s}"
        )),
        [["3", "2", "1", "counter", "t", "-2"]]
    );
    // The hour 12:00 Berlin (11:00 UTC) got every applied entry and exit.
    assert_eq!(
        f.rows("SELECT hour = '2025-01-15 11:00:00+00', entries, exits FROM hive_hourly"),
        [["t", "51", "102"]]
    );
}

#[test]
fn a_duplicate_is_stored_once_and_is_a_sign_of_life() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    let s = f.sensor("door-1", "normal");
    let payload = v2(7, 100, 50, "2025-01-15T11:00:00Z");
    let first = write(
        &f,
        &[report("door-1", payload.clone(), "2025-01-15T11:00:01Z")],
    );
    assert_eq!(stored(&first.expect("commits")), [Stored::Stored]);
    let again = write(
        &f,
        &[report("door-1", payload.clone(), "2025-01-15T12:00:00Z")],
    );
    assert_eq!(stored(&again.expect("commits")), [Stored::Duplicate]);
    assert_eq!(f.count("sensor_report"), "1");
    let seen = format!("SELECT last_seen = '2025-01-15 12:00:00+00' FROM sensor WHERE id = {s}");
    assert_eq!(f.value(&seen).as_deref(), Some("t"));
    // Past the window the same bytes are a new report (late by its message counter).
    let later = write(&f, &[report("door-1", payload, "2025-01-16T11:00:02Z")]);
    assert_eq!(stored(&later.expect("commits")), [Stored::Stored]);
    assert_eq!(
        f.rows("SELECT applied, reason FROM sensor_report ORDER BY id"),
        [["f", "baseline"], ["f", "late"]]
    );
}

#[test]
fn the_duplicate_window_is_ingest_dedupe_window() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    f.sensor("door-1", "normal");
    let conf = IngestConf {
        dedupe_window: Dur::secs(60),
        ..IngestConf::default()
    };
    let payload = events("i", "2025-01-15T11:00:00Z");
    let copy = |received: &str| [report("door-1", payload.clone(), received)];
    let answers: Vec<Stored> = [
        "2025-01-15T11:00:01Z",
        "2025-01-15T11:00:50Z",
        "2025-01-15T11:02:00Z",
    ]
    .into_iter()
    .map(|received| stored(&write_with(&f, &copy(received), &conf).expect("commits"))[0])
    .collect();
    assert_eq!(answers, [Stored::Stored, Stored::Duplicate, Stored::Stored]);
    assert_eq!(f.count("sensor_report"), "2");
}

#[test]
fn a_duplicate_is_caught_across_a_month_boundary() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    f.sensor("door-1", "normal");
    let payload = events("ii", "2025-01-31T23:58:00Z");
    let first = write(
        &f,
        &[report("door-1", payload.clone(), "2025-01-31T23:59:00Z")],
    );
    assert_eq!(stored(&first.expect("commits")), [Stored::Stored]);
    let next_month = write(&f, &[report("door-1", payload, "2025-02-01T00:01:00Z")]);
    assert_eq!(stored(&next_month.expect("commits")), [Stored::Duplicate]);
    assert_eq!(f.count("sensor_report"), "1");
    assert_eq!(f.occupancy(f.hive).0, "2");
}

#[test]
fn v2_reports_record_missed_messages_anomalies_and_clock_skew() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    let s = f.sensor("door-1", "normal");
    let batch = [
        report(
            "door-1",
            v2(5, 100, 50, "2025-01-15T11:00:00Z"),
            "2025-01-15T11:00:01Z",
        ),
        // Counters 6 and 7 never arrived.
        report(
            "door-1",
            v2(8, 110, 52, "2025-01-15T11:15:00Z"),
            "2025-01-15T11:15:01Z",
        ),
        // 6000 in at once is above ingest.max_delta: recorded, not added.
        report(
            "door-1",
            v2(9, 6110, 52, "2025-01-15T11:30:00Z"),
            "2025-01-15T11:30:01Z",
        ),
        // A clock an hour fast: the receive time is trusted, the skew recorded.
        report(
            "door-1",
            v2(10, 6115, 53, "2025-01-15T12:45:00Z"),
            "2025-01-15T11:45:00Z",
        ),
    ];
    write(&f, &batch).expect("commits");
    assert_eq!(
        f.rows(
            "SELECT applied, reason, delta_in, delta_out, message_counter,
                    sensor_time = trusted_time, trusted_time = received_at
             FROM sensor_report ORDER BY id"
        ),
        [
            ["f", "baseline", "-", "-", "5", "t", "f"],
            ["t", "-", "10", "2", "8", "t", "f"],
            ["f", "anomaly", "-", "-", "9", "t", "f"],
            ["t", "-", "5", "1", "10", "f", "t"],
        ]
    );
    assert_eq!(
        f.rows(&format!(
            "SELECT missed_messages, anomalies, restarts, clock_skew_s, last_total_in,
                    last_message_counter
             FROM sensor WHERE id = {s}"
        )),
        [["2", "1", "0", "3600", "6115", "10"]]
    );
    assert_eq!(f.occupancy(f.hive).0, "12");
}

#[test]
fn an_unknown_device_id_stores_nothing() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    f.sensor("door-1", "normal");
    f.db.query("UPDATE sensor SET deleted_at = now() WHERE device_id = 'door-1'");
    f.sensor("door-2", "normal");
    let batch = [
        report(
            "ghost",
            events("i", "2025-01-15T11:00:00Z"),
            "2025-01-15T11:00:01Z",
        ),
        report(
            "door-1",
            events("i", "2025-01-15T11:00:00Z"),
            "2025-01-15T11:00:01Z",
        ),
        report(
            "door-2",
            events("i", "2025-01-15T11:00:00Z"),
            "2025-01-15T11:00:01Z",
        ),
    ];
    let written = write(&f, &batch).expect("commits");
    use Stored::{Stored as S, UnknownSensor as U};
    assert_eq!(stored(&written), [U, U, S]);
    assert_eq!(f.count("sensor_report"), "1");
    assert_eq!(f.count("sensor_report_seen"), "1");
}

#[test]
fn a_reversed_sensor_swaps_in_and_out() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    f.sensor("door-1", "reversed");
    let p = ReportType::Threshold;
    let batch = [
        report(
            "door-1",
            legacy(10, 20, "2025-01-15 12:00:00", p),
            "2025-01-15T11:00:02Z",
        ),
        report(
            "door-1",
            legacy(13, 27, "2025-01-15 12:05:00", p),
            "2025-01-15T11:05:02Z",
        ),
    ];
    write(&f, &batch).expect("commits");
    assert_eq!(
        f.rows("SELECT delta_in, delta_out FROM sensor_report WHERE applied"),
        [["7", "3"]]
    );
    assert_eq!(f.occupancy(f.hive).0, "4");
}

#[test]
fn event_reports_count_and_a_mode_mismatch_is_stored_not_applied() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    let s = f.sensor("door-1", "normal");
    let p = ReportType::Periodic;
    let batch = [
        report(
            "door-1",
            events("s", "2025-01-15T10:59:00Z"),
            "2025-01-15T10:59:01Z",
        ),
        report(
            "door-1",
            events("iisio", "2025-01-15T11:00:00Z"),
            "2025-01-15T11:00:06Z",
        ),
        report(
            "door-1",
            legacy(9, 1, "2025-01-15 12:01:00", p),
            "2025-01-15T11:01:02Z",
        ),
    ];
    let written = write(&f, &batch).expect("commits");
    assert_eq!(
        stored(&written),
        [Stored::Stored, Stored::Stored, Stored::ModeMismatch],
        "counted as a rejection for /metrics"
    );
    assert_eq!(
        f.rows(
            "SELECT kind, applied, reason, entries, exits, delta_in, delta_out
             FROM sensor_report ORDER BY id"
        ),
        [
            ["event", "f", "status", "0", "0", "-", "-"],
            ["event", "t", "-", "3", "1", "3", "1"],
            ["counter", "f", "mode_mismatch", "-", "-", "-", "-"],
        ]
    );
    assert_eq!(f.occupancy(f.hive).0, "2");
    let mode = format!("SELECT counting_mode, last_total_in FROM sensor WHERE id = {s}");
    assert_eq!(f.rows(&mode), [["event", "-"]]);
}

#[test]
fn a_status_message_updates_health_and_is_never_a_duplicate() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    let s = f.sensor("door-1", "normal");
    let status = Payload::Status(Status {
        startup_time: epoch("2025-01-15T06:00:00Z"),
        battery_mv: 3600,
        sensor_state: 0,
        discarded_events: 4,
        gprs_signal: 17,
        firmware_version: 0x0002_0103,
        configuration_id: 3,
    });
    let batch = [
        report("door-1", status.clone(), "2025-01-15T11:00:00Z"),
        report("door-1", status, "2025-01-15T11:00:01Z"),
    ];
    let written = write(&f, &batch).expect("commits");
    assert_eq!(stored(&written), [Stored::Stored, Stored::Stored]);
    assert!(written.hives.is_empty(), "a status message moves no hive");
    assert_eq!(
        f.rows(&format!(
            "SELECT battery_mv, gprs_signal, sensor_state, discarded_events, firmware_version,
                    config_acknowledged_id, startup_time = '2025-01-15 06:00:00+00',
                    last_seen = '2025-01-15 11:00:01+00', counting_mode
             FROM sensor WHERE id = {s}"
        )),
        [["3600", "17", "0", "4", "131331", "3", "t", "t", "-"]]
    );
    assert_eq!(
        f.rows("SELECT kind, applied, reason FROM sensor_report ORDER BY id"),
        [["status", "f", "status"], ["status", "f", "status"]]
    );
    assert_eq!(f.count("sensor_report_seen"), "0");
}

#[test]
fn occupancy_clamps_at_0_and_counts_the_drift() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    f.sensor("door-1", "normal");
    let batch = [
        report(
            "door-1",
            events("i", "2025-01-15T11:00:00Z"),
            "2025-01-15T11:00:01Z",
        ),
        report(
            "door-1",
            events("iooo", "2025-01-15T11:01:00Z"),
            "2025-01-15T11:01:04Z",
        ),
    ];
    let written = write(&f, &batch).expect("commits");
    // 1 + (1 - 3) = -1: clamped once, per report, to 0 with a drift of 1.
    assert_eq!(f.occupancy(f.hive), ("0".into(), "1".into()));
    assert_eq!(written.hives[0].occupancy, 0);
}

#[test]
fn the_daily_reset_is_applied_once_when_due() {
    let f = Fixture::new("Europe/Berlin", "'04:00'");
    f.sensor("door-1", "normal");
    // 04:00 in Berlin in January is 03:00 UTC.
    let before = [report(
        "door-1",
        events("iii", "2025-01-15T02:50:00Z"),
        "2025-01-15T02:50:03Z",
    )];
    write(&f, &before).expect("commits");
    assert_eq!(f.occupancy(f.hive).0, "3");
    let after = [
        report(
            "door-1",
            events("ii", "2025-01-15T02:59:50Z"),
            "2025-01-15T03:00:20Z",
        ),
        report(
            "door-1",
            events("i", "2025-01-15T03:05:00Z"),
            "2025-01-15T03:05:01Z",
        ),
    ];
    let written = write(&f, &after).expect("commits");
    assert_eq!(written.hives[0].occupancy, 1);
    let last_reset = format!(
        "SELECT last_reset_at = '2025-01-15 03:00:00+00' FROM hive_status WHERE hive_id = {}",
        f.hive
    );
    assert_eq!(f.value(&last_reset).as_deref(), Some("t"));
    let later = [report(
        "door-1",
        events("i", "2025-01-15T09:00:00Z"),
        "2025-01-15T09:00:01Z",
    )];
    write(&f, &later).expect("commits");
    assert_eq!(f.occupancy(f.hive).0, "2", "no second reset the same day");
    assert_eq!(f.value(&last_reset).as_deref(), Some("t"));
    assert_eq!(
        f.rows("SELECT applied, reason FROM sensor_report ORDER BY id"),
        [["t", "-"], ["f", "previous_day"], ["t", "-"], ["t", "-"]]
    );
    // The late report is history: its hour (03:00 Berlin) has it.
    assert_eq!(
        f.rows("SELECT entries FROM hive_hourly WHERE hour = '2025-01-15 02:00:00+00'"),
        [["5"]]
    );
}

#[test]
fn concurrent_batches_of_the_same_sensors_both_commit() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    let other = add_hive(&f.db, "Europe/Berlin", "NULL");
    f.sensor("door-1", "normal");
    add_sensor(&f.db, other, "door-2", "normal");
    let rounds = 5u32;
    let batch = |first: &str, second: &str, round: u32, second_of: u32| {
        let time = |s: u32| {
            let t = at("2025-01-15T11:00:00Z") + chrono::TimeDelta::seconds(i64::from(s));
            t.to_rfc3339()
        };
        let stamp = round * 10 + second_of;
        vec![
            report(first, events("iii", &time(stamp)), &time(stamp + 5)),
            report(second, events("iio", &time(stamp)), &time(stamp + 5)),
        ]
    };
    let rt = runtime();
    for round in 0..rounds {
        let (a, b) = rt.block_on(together(
            &f.db.url,
            batch("door-1", "door-2", round, 0),
            batch("door-2", "door-1", round, 1),
        ));
        a.expect("the first batch commits");
        b.expect("the second batch commits");
    }
    // Each round: door-1 +3 and +1, door-2 +1 and +3: 4 per hive per round.
    assert_eq!(f.occupancy(f.hive).0, (4 * rounds).to_string());
    assert_eq!(f.occupancy(other).0, (4 * rounds).to_string());
    assert_eq!(f.count("sensor_report"), (4 * rounds).to_string());
}

#[test]
fn the_same_payload_from_two_workers_at_once_is_stored_once() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    f.sensor("door-1", "normal");
    let copy = || {
        let payload = events("iii", "2025-01-15T11:00:00Z");
        vec![report("door-1", payload, "2025-01-15T11:00:04Z")]
    };
    let (a, b) = runtime().block_on(together(&f.db.url, copy(), copy()));
    let mut answers = [
        stored(&a.expect("the first batch commits"))[0],
        stored(&b.expect("the second batch commits"))[0],
    ];
    answers.sort_by_key(|s| *s == Stored::Duplicate);
    assert_eq!(answers, [Stored::Stored, Stored::Duplicate]);
    assert_eq!(f.count("sensor_report"), "1");
    assert_eq!(f.occupancy(f.hive).0, "3");
}

/// Writes batches `a` and `b` from two connections at the same instant: a third holds every
/// sensor row until both are queued behind it, then lets them race for the rows.
async fn together(
    url: &str,
    a: Vec<Report>,
    b: Vec<Report>,
) -> (
    Result<Written, tokio_postgres::Error>,
    Result<Written, tokio_postgres::Error>,
) {
    let (mut blocker, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(conn);
    let hold = blocker.transaction().await.expect("begins");
    hold.execute("SELECT id FROM sensor ORDER BY id FOR UPDATE", &[])
        .await
        .expect("locks the sensors");
    let a = tokio::spawn(write_owned(url.to_owned(), a));
    let b = tokio::spawn(write_owned(url.to_owned(), b));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    hold.commit().await.expect("commits");
    let a = a.await.expect("the first writer does not panic");
    let b = b.await.expect("the second writer does not panic");
    (a, b)
}

async fn write_owned(url: String, reports: Vec<Report>) -> Result<Written, tokio_postgres::Error> {
    write_on(&url, reports).await
}

#[test]
fn a_failing_batch_rolls_back_whole() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    let s = f.sensor("door-1", "normal");
    // No partition holds 2019: the report insert fails, after the claim and the locks.
    let batch = [
        report(
            "door-1",
            events("ii", "2025-01-15T11:00:00Z"),
            "2025-01-15T11:00:01Z",
        ),
        report(
            "door-1",
            events("i", "2019-01-15T11:00:00Z"),
            "2019-01-15T11:00:01Z",
        ),
    ];
    let err = write(&f, &batch).expect_err("no partition for 2019");
    assert!(format!("{err:?}").contains("partition"), "{err:?}");
    assert_eq!(f.count("sensor_report"), "0");
    assert_eq!(f.count("sensor_report_seen"), "0");
    assert_eq!(f.count("hive_hourly"), "0");
    assert_eq!(f.occupancy(f.hive), ("0".into(), "0".into()));
    let sensor = format!("SELECT last_seen, counting_mode FROM sensor WHERE id = {s}");
    assert_eq!(f.rows(&sensor), [["-", "-"]]);
    // The same batch without the bad report then goes through: nothing was left claimed.
    let written = write(&f, &batch[..1]).expect("commits");
    assert_eq!(stored(&written), [Stored::Stored]);
    assert_eq!(f.occupancy(f.hive).0, "2");
}

/// Runs `f` on a connection of its own.
fn on_client<T>(
    f: &Fixture,
    run: impl AsyncFnOnce(&mut tokio_postgres::Client) -> Result<T, tokio_postgres::Error>,
) -> T {
    runtime().block_on(async {
        let (mut client, conn) = tokio_postgres::connect(&f.db.url, tokio_postgres::NoTls)
            .await
            .expect("connects");
        tokio::spawn(conn);
        run(&mut client).await.expect("the statement runs")
    })
}

#[test]
fn the_daily_reset_timer_resets_once_at_the_local_reset_time() {
    let f = Fixture::new("Europe/Berlin", "'04:00'");
    f.db.query(&format!(
        "UPDATE hive_status SET occupancy = 17, drift_today = 2,
             last_reset_at = '2025-01-14 03:00:00+00' WHERE hive_id = {}",
        f.hive
    ));
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    // 03:59 in Berlin (UTC+1): not yet.
    let none = on_client(&f, async |c| {
        store::maintain::resets(c, at("2025-01-15T02:59:00Z")).await
    });
    assert!(none.is_empty());
    assert_eq!(f.occupancy(f.hive), ("17".into(), "2".into()));
    // 04:00:30 in Berlin: reset, once, and published with the reset.
    let reset = on_client(&f, async |c| {
        store::maintain::resets(c, at("2025-01-15T03:00:30Z")).await
    });
    assert_eq!(reset.len(), 1);
    assert_eq!((reset[0].hive_id, reset[0].occupancy), (f.hive, 0));
    assert_eq!(f.occupancy(f.hive), ("0".into(), "0".into()));
    assert_eq!(
        f.value("SELECT last_reset_at = '2025-01-15 03:00:00+00' FROM hive_status")
            .as_deref(),
        Some("t")
    );
    let again = on_client(&f, async |c| {
        store::maintain::resets(c, at("2025-01-15T03:01:00Z")).await
    });
    assert!(again.is_empty(), "once per day: {again:?}");
}

#[test]
fn a_hive_without_reset_time_is_never_reset() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    f.db.query("UPDATE hive_status SET occupancy = 5");
    let got = on_client(&f, async |c| {
        store::maintain::resets(c, std::time::SystemTime::now().into()).await
    });
    assert!(got.is_empty());
    assert_eq!(f.occupancy(f.hive).0, "5");
}

#[test]
fn a_silent_sensor_makes_its_hive_degraded_once() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    let s = f.sensor("door-1", "normal");
    f.db.query(&format!(
        "UPDATE sensor SET last_seen = now() - interval '10 minutes' WHERE id = {s}"
    ));
    let none = on_client(&f, async |c| store::maintain::degraded(c).await);
    assert!(
        none.is_empty(),
        "heard 10 minutes ago: online (factory interval 15)"
    );
    f.db.query(&format!(
        "UPDATE sensor SET last_seen = now() - interval '31 minutes' WHERE id = {s}"
    ));
    let changed = on_client(&f, async |c| store::maintain::degraded(c).await);
    assert_eq!(changed.len(), 1);
    assert!(changed[0].degraded);
    let again = on_client(&f, async |c| store::maintain::degraded(c).await);
    assert!(again.is_empty(), "published once");
    // A configuration with a longer interval, acknowledged: online again.
    f.db.query(&format!(
        "INSERT INTO sensor_report_config (sensor_id, configuration_id, threshold_cm,
             reporting_interval_min, status_interval_min, event_threshold)
         VALUES ({s}, 1, 50, 60, 60, 1);
         UPDATE sensor SET config_acknowledged_id = 1 WHERE id = {s}"
    ));
    let back = on_client(&f, async |c| store::maintain::degraded(c).await);
    assert_eq!(back.len(), 1);
    assert!(!back[0].degraded);
}

#[test]
fn housekeeping_creates_partitions_and_prunes() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    let s = f.sensor("door-1", "normal");
    f.db.query(&format!(
        "INSERT INTO sensor_report_seen VALUES
             ({s}, 'counter', sha256('old'), now() - interval '2 days'),
             ({s}, 'counter', sha256('new'), now())"
    ));
    on_client(&f, async |c| {
        store::maintain::housekeeping(c, std::time::Duration::from_secs(86_400)).await
    });
    assert_eq!(f.count("sensor_report_seen"), "1");
    let this_month = f.value(
        "SELECT to_regclass('sensor_report_' || to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM'))
             IS NOT NULL",
    );
    assert_eq!(this_month.as_deref(), Some("t"));
}

/// Observed and integrated milliseconds of the hive, over all its hours.
fn weighted(f: &Fixture) -> (i64, i64) {
    let row = &f.rows(&format!(
        "SELECT coalesce(sum(observed_ms), 0), coalesce(sum(occupancy_ms), 0)
         FROM hive_hourly WHERE hive_id = {}",
        f.hive
    ))[0];
    (row[0].parse().unwrap(), row[1].parse().unwrap())
}

fn near(got: i64, want: i64) -> bool {
    (got - want).abs() <= 2_000
}

#[test]
fn occupancy_is_integrated_over_time_by_the_periodic_work_and_by_batches() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    f.sensor("door-1", "normal");
    f.db.query(
        "UPDATE hive_status SET occupancy = 10, integrated_at = now() - interval '60 seconds'",
    );
    let n = on_client(&f, async |c| {
        store::maintain::integrate(c, std::time::SystemTime::now().into()).await
    });
    assert_eq!(n, 1);
    let (observed, occupancy) = weighted(&f);
    assert!(near(observed, 60_000), "{observed}");
    assert!(near(occupancy, 600_000), "{occupancy}");
    let again = on_client(&f, async |c| {
        store::maintain::integrate(c, std::time::SystemTime::now().into()).await
    });
    assert_eq!(again, 0, "integrated just now");

    // A batch that changes the count integrates what held before it.
    f.db.query(
        "UPDATE hive_status SET integrated_at = now() - interval '30 seconds';
         DELETE FROM hive_hourly",
    );
    let now = DateTime::<Utc>::from(std::time::SystemTime::now())
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let p = ReportType::Periodic;
    let batch = [
        report("door-1", legacy(100, 0, "2000-01-01 00:00:00", p), &now),
        report("door-1", legacy(105, 0, "2000-01-01 00:00:01", p), &now),
    ];
    write(&f, &batch).expect("commits");
    assert_eq!(f.occupancy(f.hive).0, "15");
    let (observed, occupancy) = weighted(&f);
    assert!(near(observed, 30_000), "{observed}");
    assert!(near(occupancy, 300_000), "{occupancy}");
}

#[test]
fn sensor_health_says_online_and_whether_the_newest_configuration_is_applied() {
    let f = Fixture::new("Europe/Berlin", "NULL");
    let s = f.sensor("door-1", "normal");
    let health = format!(
        "SELECT online, configuration_id, configuration_acknowledged
         FROM sensor_health WHERE sensor_id = {s}"
    );
    assert_eq!(f.rows(&health), [["f", "0", "t"]], "never heard, factory");
    f.db.query(&format!(
        "UPDATE sensor SET last_seen = now() WHERE id = {s};
         INSERT INTO sensor_report_config (sensor_id, configuration_id, threshold_cm,
             reporting_interval_min, status_interval_min, event_threshold)
         VALUES ({s}, 1, 50, 5, 60, 1)"
    ));
    assert_eq!(f.rows(&health), [["t", "1", "f"]], "pending");
    f.db.query(&format!(
        "UPDATE sensor SET config_acknowledged_id = 1 WHERE id = {s}"
    ));
    assert_eq!(f.rows(&health), [["t", "1", "t"]], "acknowledged");
}
