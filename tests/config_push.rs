//! Configuration push (issue 10, item 5) through the real binary, a real PostgreSQL and raw MQTT
//! clients: a configuration inserted by SQL (as the business API inserts it) reaches its sensor
//! as the 12-byte retained QoS 1 message of `commands/sensor/{device_id}`, whether the sensor is
//! held by the worker that hears the notification, by its sibling, or by a second server sharing
//! the database; it is acknowledged once the sensor's status carries its id; and a push made
//! while the LISTEN connections were down still arrives, as does the first of a sensor made anew
//! under a deleted one's device id. Run through `scripts/with-postgres`.

mod common;

use common::mqtt::{Broker, Client, Publish, WAIT};
use common::pg::TestDb;

use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};

/// A node: two workers, anonymous MQTT, `[database]` at `url`.
fn node(url: &str) -> Broker {
    Broker::start(&format!(
        "allow_anonymous = true\n\n[database]\nurl = \"{url}\"\nmigrate_on_start = false"
    ))
}

/// A migrated database with the sensors `devices` on one hive.
fn database(devices: &[&str]) -> TestDb {
    let db = TestDb::new();
    migrate_with(&db.url, MIGRATIONS).expect("the schema applies");
    let (hive, _) = db.hive_with_sensor(devices[0]);
    for d in &devices[1..] {
        db.add_sensor(&hive, d);
    }
    db
}

/// Inserts the next configuration of `device` as the business API does (max + 1, in a
/// transaction): 80 cm, report every `reporting` min, status every hour, every 10 events. Its id.
fn push(db: &TestDb, device: &str, reporting: u16) -> u32 {
    db.value(&format!(
        "BEGIN;
         INSERT INTO sensor_report_config (sensor_id, configuration_id, threshold_cm,
             reporting_interval_min, status_interval_min, event_threshold)
         SELECT s.id, coalesce(max(c.configuration_id), 0) + 1, 80, {reporting}, 60, 10
         FROM sensor s LEFT JOIN sensor_report_config c ON c.sensor_id = s.id
         WHERE s.device_id = '{device}' AND s.deleted_at IS NULL GROUP BY s.id
         RETURNING configuration_id;
         COMMIT;"
    ))
    .and_then(|id| id.parse().ok())
    .expect("a configuration id")
}

/// The 12 bytes of PROTOCOL.md section 5, big-endian.
fn payload(reporting: u16, id: u32) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [80u16, reporting, 60, 10] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(&id.to_be_bytes());
    b
}

/// A sensor's client subscribed at QoS 1 to its commands topic.
fn sensor(broker: &Broker, c: Client, device: &str) -> Client {
    let mut c = c;
    let codes = c.subscribe(&[(format!("commands/sensor/{device}").as_str(), 1)]);
    assert_eq!(codes, [1], "{device} subscribes at QoS 1");
    assert!(broker.worker_of(&c).is_some());
    c
}

/// The next configuration `c` receives for `device` (acknowledged).
fn configuration(c: &mut Client, device: &str) -> Publish {
    let p = c
        .take(WAIT)
        .unwrap_or_else(|| panic!("{device} receives its configuration"));
    assert_eq!(p.topic, format!("commands/sensor/{device}"));
    assert_eq!(p.qos, 1, "{device}: configurations are published at QoS 1");
    p
}

/// A status message (PROTOCOL.md section 4) saying configuration `id` is applied, published
/// at QoS 1: its PUBACK means it is committed.
fn status(c: &mut Client, device: &str, id: u32) {
    let mut b = vec![0u8; 20];
    b[4..6].copy_from_slice(&0xffffu16.to_be_bytes());
    b[10..12].copy_from_slice(&20u16.to_be_bytes());
    b[12..16].copy_from_slice(&0x0001_0200u32.to_be_bytes());
    b[16..20].copy_from_slice(&id.to_be_bytes());
    c.publish(&format!("sensors/{device}/status"), &b, 1, false);
}

fn acknowledged(db: &TestDb, device: &str) -> (String, String) {
    let row = db.query(&format!(
        "SELECT configuration_id, configuration_acknowledged FROM sensor_health
         WHERE device_id = '{device}'"
    ));
    let f = |i: usize| row[0][i].clone().unwrap_or_default();
    (f(0), f(1))
}

/// A late subscriber to `device`'s commands topic on `broker` gets `want`, retained.
fn retained(broker: &Broker, device: &str, want: &[u8]) {
    let mut late = common::mqtt::client(broker.addr(), &format!("late-{device}"));
    late.subscribe(&[(format!("commands/sensor/{device}").as_str(), 1)]);
    let p = late.take(WAIT).expect("the retained configuration");
    assert!(p.retain, "{device}: the configuration is retained");
    assert_eq!((p.qos, p.payload.as_slice()), (1, want), "{device}");
}

#[test]
fn a_push_reaches_both_workers_and_another_node_and_is_acknowledged() {
    let db = database(&["door-a1", "door-a2", "door-b"]);
    let a = node(&db.url);
    let b = node(&db.url);
    let first = common::mqtt::client(a.addr(), "door-a1");
    let (other, _keep) = a.client_on_other_worker(&first, "door-a2");
    let mut a1 = sensor(&a, first, "door-a1");
    let mut a2 = sensor(&a, other, "door-a2");
    let mut nb = sensor(&b, common::mqtt::client(b.addr(), "door-b"), "door-b");
    assert_ne!(
        a.worker_of(&a1),
        a.worker_of(&a2),
        "one sensor on each worker"
    );

    for (c, device) in [
        (&mut a1, "door-a1"),
        (&mut a2, "door-a2"),
        (&mut nb, "door-b"),
    ] {
        let id = push(&db, device, 5);
        assert_eq!(id, 1, "ids start at 1");
        let p = configuration(c, device);
        assert_eq!(p.payload, payload(5, 1), "{device}: 12 bytes, big-endian");
        assert_eq!(acknowledged(&db, device), ("1".into(), "f".into()));
        status(c, device, id);
        assert_eq!(acknowledged(&db, device), ("1".into(), "t".into()));
    }
    retained(&a, "door-a1", &payload(5, 1));
    retained(&a, "door-a2", &payload(5, 1));
    retained(&b, "door-b", &payload(5, 1));

    // The next one has a higher id and replaces the retained one; an id that goes back is
    // refused by the database.
    let id = push(&db, "door-b", 30);
    assert_eq!(id, 2, "ids strictly increase");
    assert_eq!(configuration(&mut nb, "door-b").payload, payload(30, 2));
    assert_eq!(acknowledged(&db, "door-b"), ("2".into(), "f".into()));
    status(&mut nb, "door-b", 2);
    assert_eq!(acknowledged(&db, "door-b"), ("2".into(), "t".into()));
    retained(&a, "door-b", &payload(30, 2));
    let back = common::pg::try_query(
        &db.url,
        "INSERT INTO sensor_report_config (sensor_id, configuration_id, threshold_cm,
             reporting_interval_min, status_interval_min, event_threshold)
         SELECT id, 2, 80, 15, 60, 10 FROM sensor WHERE device_id = 'door-b'",
    );
    assert!(
        back.as_ref().is_err_and(|e| e.contains("is not above")),
        "an id that does not go up is refused: {back:?}"
    );
}

#[test]
fn a_push_made_while_listen_was_down_is_caught_up() {
    let db = database(&["door-c"]);
    let a = node(&db.url);
    let mut c = sensor(&a, common::mqtt::client(a.addr(), "door-c"), "door-c");
    // Wait until LISTEN is in effect (the first push arrives), then cut every LISTEN
    // connection and push before the listeners are back.
    push(&db, "door-c", 5);
    assert_eq!(configuration(&mut c, "door-c").payload, payload(5, 1));
    // One transaction pushes, then cuts every LISTEN connection and commits at once: the
    // listeners wait 0.1 s before they connect again, so nobody hears the notification.
    let cut = db.value(
        "BEGIN;
         INSERT INTO sensor_report_config (sensor_id, configuration_id, threshold_cm,
             reporting_interval_min, status_interval_min, event_threshold)
         SELECT id, 2, 80, 7, 60, 10 FROM sensor WHERE device_id = 'door-c';
         SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN%bizzy_config%';
         COMMIT;",
    );
    assert_eq!(cut.as_deref(), Some("1"), "one LISTEN on bizzy_config");
    let p = configuration(&mut c, "door-c");
    assert_eq!(p.payload, payload(7, 2), "the missed push arrives");
    assert!(
        a.server.error_log().contains("LISTEN"),
        "the cut was noticed"
    );
    retained(&a, "door-c", &payload(7, 2));
}

/// Configuration ids count per sensor row: a sensor deleted and made anew under the same device
/// id starts from 1 again, below what was published for the device id before (regression: its
/// pushes were taken for old ones and never published).
#[test]
fn a_sensor_made_anew_under_a_deleted_ones_device_id_gets_its_configurations() {
    let db = database(&["door-d"]);
    let a = node(&db.url);
    let mut watch = common::mqtt::client(a.addr(), "watch-door-d");
    let codes = watch.subscribe(&[("commands/sensor/door-d", 1)]);
    assert_eq!(codes, [1]);
    assert_eq!(push(&db, "door-d", 5), 1);
    assert_eq!(configuration(&mut watch, "door-d").payload, payload(5, 1));
    assert_eq!(push(&db, "door-d", 6), 2);
    assert_eq!(configuration(&mut watch, "door-d").payload, payload(6, 2));

    let hive = db
        .value(
            "UPDATE sensor SET deleted_at = now() WHERE device_id = 'door-d'
             RETURNING hive_id",
        )
        .expect("the sensor is deleted");
    db.add_sensor(&hive, "door-d");
    assert_eq!(push(&db, "door-d", 9), 1, "the new sensor counts from 1");
    assert_eq!(configuration(&mut watch, "door-d").payload, payload(9, 1));
    retained(&a, "door-d", &payload(9, 1));
}
