//! Sensor reports through the real binary into a real PostgreSQL (issue 9): a QoS 1 report is
//! acknowledged only once its row is committed, counts become occupancy, a malformed payload is
//! acknowledged and never stored, and a stopping server acknowledges what it holds before it
//! closes. Run through `scripts/with-postgres`.

mod common;

use common::mqtt::{connect, Client, Connect, Packet, Publish, WAIT};
use common::pg::TestDb;
use common::{basic_conf, two_free_ports, Server};

use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};

/// A migrated database with one hive and the sensor `door-1` on it; bizzy with MQTT and a
/// `[database]` section pointing at it.
struct Fixture {
    db: TestDb,
    hive: String,
    broker: Server,
    port: u16,
}

fn fixture() -> Fixture {
    let db = TestDb::new();
    migrate_with(&db.url, MIGRATIONS).expect("the schema applies");
    let (hive, _) = db.hive_with_sensor("door-1");
    let (broker, port) = server_on(&db.url);
    Fixture {
        db,
        hive,
        broker,
        port,
    }
}

/// bizzy with anonymous MQTT and `[database]` at `url`, once MQTT listens; its MQTT port.
fn server_on(url: &str) -> (Server, u16) {
    let (http, port) = two_free_ports();
    let conf = format!(
        "{}\n[mqtt]\nlisten = [\"127.0.0.1:{port}\"]\nallow_anonymous = true\n\n\
         [database]\nurl = \"{url}\"\nmigrate_on_start = false\n",
        basic_conf(http, "", "", ""),
    );
    let server = Server::start(http, &conf);
    assert!(
        common::eventually(WAIT, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok()),
        "MQTT listens"
    );
    (server, port)
}

impl Fixture {
    fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn reports(&self) -> i64 {
        let n = self.db.value("SELECT count(*) FROM sensor_report");
        n.and_then(|n| n.parse().ok()).expect("a count")
    }

    fn occupancy(&self) -> Option<String> {
        self.db.value(&format!(
            "SELECT occupancy FROM hive_status WHERE hive_id = {}",
            self.hive
        ))
    }
}

/// A legacy counter report (PROTOCOL.md section 1) with these totals, dated 2024-11-22 at
/// `minute` past 18:00 (a clock this far off is replaced by the receive time).
fn legacy(total_in: u16, total_out: u16, minute: u8) -> Vec<u8> {
    let mut b = vec![0, 5, 0, 3];
    b.extend_from_slice(&total_in.to_be_bytes());
    b.extend_from_slice(&total_out.to_be_bytes());
    b.extend_from_slice(&[24, 11, 22, 18, minute, 5, 0xff, 0xff]);
    b
}

fn publish(c: &mut Client, payload: &[u8]) -> u16 {
    let pid = c.next_pid();
    c.send(
        &Publish::new("sensors/door-1/counter", payload, 1)
            .pid(pid)
            .encode(),
    );
    pid
}

#[test]
fn a_puback_means_the_report_is_committed_and_counted() {
    let f = fixture();
    let mut c = connect(f.addr(), &Connect::new("door-1")).0;
    let readings = [(1234, 1111), (1240, 1115), (1241, 1120)];
    for (i, (tin, tout)) in readings.into_iter().enumerate() {
        let pid = publish(&mut c, &legacy(tin, tout, i as u8));
        assert_eq!(c.recv(WAIT), Some(Packet::Puback(pid)));
        assert_eq!(
            f.reports(),
            i as i64 + 1,
            "the row is there when the PUBACK is"
        );
    }
    // Baseline, then +6/-4, then +1/-5: 2 after the second, clamped to 0 after the third.
    assert_eq!(f.occupancy().as_deref(), Some("0"));
    assert_eq!(
        f.db.value("SELECT drift_today FROM hive_status").as_deref(),
        Some("2"),
        "what the clamp absorbed is drift"
    );
}

#[test]
fn a_malformed_payload_is_acknowledged_and_never_stored() {
    let f = fixture();
    let mut c = connect(f.addr(), &Connect::new("door-1")).0;
    let mut bad = legacy(1, 1, 0);
    bad[15] = 0x00;
    let pid = publish(&mut c, &bad);
    assert_eq!(c.recv(WAIT), Some(Packet::Puback(pid)));
    let ok = publish(&mut c, &legacy(5, 5, 1));
    assert_eq!(c.recv(WAIT), Some(Packet::Puback(ok)));
    assert_eq!(f.reports(), 1, "only the valid report");
    let log = f.broker.error_log();
    assert!(
        log.contains("malformed payload from sensor door-1") && log.contains("marker"),
        "{log}"
    );
    let metrics = common::get(f.broker.addr(), "/metrics").text();
    for line in [
        "bizzy_ingest_rejected_total{reason=\"marker\"} 1",
        "bizzy_ingest_reports_accepted_total 1",
        "bizzy_ingest_reports_stored_total 1",
        "bizzy_ingest_queued_reports 0",
        "bizzy_database_waiting 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    for family in ["bizzy_database_connections_in_use ", "bizzy_io_jobs "] {
        assert!(
            metrics.lines().any(|l| l.starts_with(family)),
            "{family}in\n{metrics}"
        );
    }
}

#[test]
fn a_duplicate_is_stored_once_and_acknowledged() {
    let f = fixture();
    let mut c = connect(f.addr(), &Connect::new("door-1")).0;
    for _ in 0..2 {
        let pid = publish(&mut c, &legacy(10, 3, 7));
        assert_eq!(c.recv(WAIT), Some(Packet::Puback(pid)));
    }
    assert_eq!(f.reports(), 1);
}

/// The next `hives/+/occupancy` message `c` receives, as JSON.
fn occupancy_message(c: &mut Client) -> (Publish, serde_json::Value) {
    match c.expect(
        "an occupancy message",
        |p| matches!(p, Packet::Publish(m) if m.topic.ends_with("/occupancy")),
    ) {
        Packet::Publish(m) => {
            let v = serde_json::from_slice(&m.payload).expect("JSON");
            (m, v)
        }
        _ => unreachable!("expect matched a publish"),
    }
}

#[test]
fn each_change_is_published_retained_and_rebuilt_at_start() {
    let mut f = fixture();
    f.db.query(&format!(
        "UPDATE hive SET capacity = 40 WHERE id = {}",
        f.hive
    ));
    let mut watcher = connect(f.addr(), &Connect::new("watcher")).0;
    watcher.subscribe(&[("hives/+/occupancy", 0)]);
    let mut c = connect(f.addr(), &Connect::new("door-1")).0;
    for (i, (tin, tout)) in [(100, 90), (110, 92)].into_iter().enumerate() {
        let pid = publish(&mut c, &legacy(tin, tout, i as u8));
        assert_eq!(c.recv(WAIT), Some(Packet::Puback(pid)));
    }
    // The baseline leaves the count at 0 (a change all the same: the reset instant is set),
    // then +10/-2.
    let topic = format!("hives/{}/occupancy", f.hive);
    let mut last = None;
    while last
        .as_ref()
        .is_none_or(|v: &serde_json::Value| v["occupancy"] != 8)
    {
        let (m, v) = occupancy_message(&mut watcher);
        assert_eq!(m.topic, topic);
        last = Some(v);
    }
    let v = last.unwrap();
    assert_eq!(v["hive_id"].to_string(), f.hive);
    assert_eq!(v["capacity"], 40);
    assert_eq!(v["percent"], 20.0);
    assert_eq!(v["stale"], false);
    assert_eq!(v["degraded"], false, "door-1 was just heard");
    assert!(v["updated_at"].as_str().is_some_and(|s| s.ends_with('Z')));

    // A late subscriber gets the retained value.
    let mut late = connect(f.addr(), &Connect::new("late")).0;
    late.subscribe(&[(topic.as_str(), 0)]);
    let (m, v) = occupancy_message(&mut late);
    assert!(m.retain);
    assert_eq!(v["occupancy"], 8);

    // A new server (every worker new) rebuilds it from the database.
    drop((c, watcher, late));
    f.broker.signal(libc::SIGTERM);
    assert!(f.broker.wait_exit(WAIT).is_some(), "the server stops");
    let (again, port) = server_on(&f.db.url);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let got = common::eventually(WAIT, || {
        let mut s = connect(addr, &Connect::new("after")).0;
        s.subscribe(&[(topic.as_str(), 0)]);
        matches!(s.recv(std::time::Duration::from_millis(300)),
            Some(Packet::Publish(m)) if m.retain
                && serde_json::from_slice::<serde_json::Value>(&m.payload)
                    .is_ok_and(|v| v["occupancy"] == 8))
    });
    assert!(got, "the retained occupancy is rebuilt at start");
    drop(again);
}

#[test]
fn a_change_committed_on_one_node_is_published_on_another() {
    let f = fixture();
    let (http, port) = two_free_ports();
    let conf = format!(
        "{}\n[mqtt]\nlisten = [\"127.0.0.1:{port}\"]\nallow_anonymous = true\n\n\
         [database]\nurl = \"{}\"\nmigrate_on_start = false\n",
        basic_conf(http, "", "", ""),
        f.db.url
    );
    let _b = Server::start(http, &conf);
    let b: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(common::eventually(WAIT, || std::net::TcpStream::connect(b).is_ok()));
    let topic = format!("hives/{}/occupancy", f.hive);
    let mut watcher = connect(b, &Connect::new("watcher-b")).0;
    watcher.subscribe(&[(topic.as_str(), 0)]);
    // Node B's workers may still be making their LISTEN connection: report until it shows.
    let mut c = connect(f.addr(), &Connect::new("door-1")).0;
    let mut total_in = 100;
    let seen = common::eventually(WAIT, || {
        total_in += 3;
        let pid = publish(&mut c, &legacy(total_in, 0, 0));
        assert_eq!(c.recv(WAIT), Some(Packet::Puback(pid)));
        let mut seen = false;
        while let Some(p) = watcher.recv(std::time::Duration::from_millis(200)) {
            if let Packet::Publish(m) = p {
                let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("JSON");
                let want = i64::from(total_in - 103);
                seen |= m.topic == topic && v["occupancy"].as_i64() == Some(want) && want > 0;
            }
        }
        seen
    });
    assert!(seen, "node B publishes what node A committed");
}
