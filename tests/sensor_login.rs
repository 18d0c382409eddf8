//! Sensors log in from PostgreSQL (issue 9, item 7) through the real binary: a sensor's device
//! id and secret against the sensor table, changes followed through NOTIFY, a sensor's topic
//! rights, the password file still answering for its users, and the server's own topics closed
//! to every client. `allow_anonymous = false` throughout. Run through `scripts/with-postgres`.

mod common;

use std::time::{Duration, Instant};

use common::mqtt::{connect, handshake, Client, Connect, Packet, Publish, QUIET, WAIT};
use common::pg::{secret_of, TestDb};
use common::{basic_conf, eventually, two_free_ports, write_file, Server};

use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};
use bizzy::mqtt::auth::secret::hash_secret;

/// A user of the password file, `display` / `d1splay` (mosquitto_passwd 2.0.11).
const PASSWD: &str = "display:$7$101$7bflO4nOR+HWVpFp$6yFDehVleXc1c9bnAIbm9llj8/fu1duQnzrbKLlm8SZVW1GL4OPMt9Ug+VSrzUU117Wz6Eu0liGmvW89CNrnkA==\n";

/// A migrated database with the sensors `door-1` and `door-2` on one hive; bizzy with MQTT (no
/// anonymous clients, the password file above) and `[database]` pointing at it.
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
    db.add_sensor(&hive, "door-2");
    let url = db.url.clone();
    let (broker, port) = start(&url);
    Fixture {
        db,
        hive,
        broker,
        port,
    }
}

/// bizzy with its database at `url`; its MQTT port.
fn start(url: &str) -> (Server, u16) {
    let (http, port) = two_free_ports();
    let conf = format!(
        "{}\n[mqtt]\nlisten = [\"127.0.0.1:{port}\"]\nallow_anonymous = false\n\
         password_file = \"conf/mqtt.passwd\"\n\n\
         [database]\nurl = \"{url}\"\nmigrate_on_start = false\n",
        basic_conf(http, "", "", "")
    );
    let prepared = Server::prepare(http, &conf);
    write_file(&prepared.path("conf/mqtt.passwd"), PASSWD.as_bytes());
    let broker = prepared.launch();
    assert!(
        eventually(WAIT, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok()),
        "MQTT listens"
    );
    (broker, port)
}

impl Fixture {
    fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// The CONNACK code for `device` logging in as itself with `secret`.
    fn code(&self, device: &str, secret: &str) -> Option<u8> {
        code(self.addr(), &Connect::new(device).login(device, secret))
    }

    /// A sensor logged in with its secret.
    fn sensor(&self, device: &str) -> Client {
        connect(
            self.addr(),
            &Connect::new(device).login(device, &secret_of(device)),
        )
        .0
    }

    /// A client logged in as the password file's `display`, with client id `id`.
    fn display(&self, id: &str) -> Client {
        connect(self.addr(), &Connect::new(id).login("display", "d1splay")).0
    }

    fn reports(&self) -> i64 {
        let n = self.db.value("SELECT count(*) FROM sensor_report");
        n.and_then(|n| n.parse().ok()).expect("a count")
    }

    /// Waits until both workers read the sensor table (the log says so, once per worker).
    fn logins_read(&self) {
        assert!(
            eventually(WAIT, || self
                .broker
                .error_log()
                .matches("device ids read")
                .count()
                >= 2),
            "the workers read the sensor logins\n{}",
            self.broker.error_log()
        );
    }
}

/// The CONNACK return code for `c`, or None if the server closed without one.
fn code(addr: std::net::SocketAddr, c: &Connect) -> Option<u8> {
    handshake(addr, c).1.map(|(_, code)| code)
}

/// A legacy counter report (PROTOCOL.md section 1) with these totals.
fn legacy(total_in: u16, total_out: u16) -> Vec<u8> {
    let mut b = vec![0, 5, 0, 3];
    b.extend_from_slice(&total_in.to_be_bytes());
    b.extend_from_slice(&total_out.to_be_bytes());
    b.extend_from_slice(&[24, 11, 22, 18, 0, 5, 0xff, 0xff]);
    b
}

#[test]
fn a_sensor_logs_in_with_its_secret_and_nothing_else_does() {
    let f = fixture();
    assert_eq!(
        f.code("door-1", &secret_of("door-1")),
        Some(0),
        "right secret"
    );
    assert_eq!(f.code("door-1", "door-1-secreT"), Some(4), "wrong secret");
    assert_eq!(f.code("door-1", ""), Some(4), "empty secret");
    assert_eq!(
        f.code("door-1", &secret_of("door-1")),
        Some(0),
        "again, from the worker's memory of the verified secret"
    );
    assert_eq!(
        f.code("door-2", &secret_of("door-1")),
        Some(4),
        "another sensor's secret"
    );
    assert_eq!(f.code("door-9", &secret_of("door-9")), Some(4), "unknown");
    assert_eq!(
        code(
            f.addr(),
            &Connect::new("not-door-1").login("door-1", &secret_of("door-1"))
        ),
        Some(2),
        "a sensor's client id is its device id"
    );
    let mut no_password = Connect::new("door-1");
    no_password.username = Some("door-1".into());
    assert_eq!(code(f.addr(), &no_password), Some(4), "no password");
    assert_eq!(code(f.addr(), &Connect::new("anon")), Some(5), "anonymous");
    assert_eq!(
        code(f.addr(), &Connect::new("d").login("display", "d1splay")),
        Some(0),
        "a user of the password file"
    );
    assert_eq!(
        code(f.addr(), &Connect::new("d").login("display", "nope")),
        Some(4)
    );
}

#[test]
fn a_sensor_registered_after_the_start_logs_in() {
    let f = fixture();
    f.logins_read();
    f.db.add_sensor(&f.hive, "door-3");
    assert_eq!(
        f.code("door-3", &secret_of("door-3")),
        Some(0),
        "not in the copy read at start: looked up"
    );
    let late = f.db.add_sensor(&f.hive, "door-4");
    assert!(!late.is_empty());
    assert_eq!(f.code("door-4", "wrong"), Some(4));
}

#[test]
fn a_changed_secret_or_a_deleted_sensor_is_refused_at_the_next_connect() {
    let f = fixture();
    f.logins_read();
    assert_eq!(f.code("door-1", &secret_of("door-1")), Some(0));
    let new_hash = hash_secret(b"rotated");
    f.db.query(&format!(
        "UPDATE sensor SET secret_hash = '{new_hash}' WHERE device_id = 'door-1'"
    ));
    assert!(
        eventually(WAIT, || f.code("door-1", &secret_of("door-1")) == Some(4)),
        "the old secret (verified a moment ago, so remembered) is refused once the change \
         is notified"
    );
    assert_eq!(f.code("door-1", "rotated"), Some(0), "the new one works");
    f.db.query("UPDATE sensor SET deleted_at = now() WHERE device_id = 'door-1'");
    assert!(
        eventually(WAIT, || f.code("door-1", "rotated") == Some(5)),
        "a deleted sensor is not authorised"
    );
    f.db.query("DELETE FROM sensor WHERE device_id = 'door-2'");
    assert!(
        eventually(WAIT, || f.code("door-2", &secret_of("door-2")) == Some(4)),
        "a sensor whose row is gone is unknown"
    );
}

#[test]
fn a_lost_listen_connection_rereads_every_login() {
    let f = fixture();
    f.logins_read();
    assert_eq!(f.code("door-1", &secret_of("door-1")), Some(0));
    f.db.query(&format!(
        "ALTER TABLE sensor DISABLE TRIGGER sensor_login_update;
         UPDATE sensor SET secret_hash = '{}' WHERE device_id = 'door-1';
         ALTER TABLE sensor ENABLE TRIGGER sensor_login_update",
        hash_secret(b"rotated")
    ));
    assert_eq!(
        f.code("door-1", &secret_of("door-1")),
        Some(0),
        "a change nobody announced is not seen (as one made while no connection listened)"
    );
    let ended = f.db.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    );
    assert_eq!(ended.len(), 2, "one LISTEN connection per worker");
    assert!(
        eventually(WAIT, || f.code("door-1", &secret_of("door-1")) == Some(4)),
        "listening again, each worker reads the whole table again\n{}",
        f.broker.error_log()
    );
    assert_eq!(f.code("door-1", "rotated"), Some(0));
}

#[test]
fn a_sensor_reports_on_its_own_topics_only() {
    let f = fixture();
    let mut s = f.sensor("door-1");
    for (topic, payload) in [
        ("sensors/door-2/counter", legacy(1, 1)),
        ("sensors/door-10/counter", legacy(2, 2)),
    ] {
        let pid = s.next_pid();
        s.send(&Publish::new(topic, &payload, 1).pid(pid).encode());
        assert_eq!(
            s.recv(WAIT),
            Some(Packet::Puback(pid)),
            "{topic}: acknowledged and dropped, as the ACL file's refusals"
        );
    }
    assert_eq!(f.reports(), 0, "another sensor's report is not stored");
    let pid = s.next_pid();
    s.send(
        &Publish::new("sensors/door-1/counter", &legacy(3, 3), 1)
            .pid(pid)
            .encode(),
    );
    assert_eq!(s.recv(WAIT), Some(Packet::Puback(pid)));
    assert_eq!(f.reports(), 1, "its own is");
    assert_eq!(
        s.subscribe(&[
            ("commands/sensor/door-1", 1),
            ("commands/sensor/door-2", 1),
            ("commands/sensor/+", 1),
            ("sensors/#", 0),
        ]),
        vec![1, 0x80, 0x80, 0x80]
    );
}

#[test]
fn no_client_publishes_on_the_server_topics() {
    let f = fixture();
    let mut watcher = f.display("display-1");
    assert_eq!(
        watcher.subscribe(&[("hives/#", 1), ("commands/#", 1), ("probe/#", 1)]),
        vec![1, 1, 1],
        "no ACL file: the display user may read anything"
    );
    let mut d = f.display("display-2");
    common::mqtt::await_route(&mut d, &mut watcher, "probe/route");
    let mut s = f.sensor("door-1");
    for topic in [
        "hives/x/occupancy",
        "commands/sensor/x",
        "commands/sensor/door-1",
    ] {
        d.publish(topic, b"forged", 1, true);
        d.publish(topic, b"forged", 0, false);
    }
    s.publish("commands/sensor/door-1", b"forged", 1, true);
    // The server's own messages (the hive's occupancy) may come; no forged one may.
    let forged = |got: Vec<Publish>| {
        got.into_iter()
            .filter(|p| p.payload == b"forged")
            .map(|p| p.topic)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        forged(watcher.take_all(QUIET)),
        Vec::<String>::new(),
        "delivered"
    );
    let mut late = f.display("display-3");
    late.subscribe(&[("hives/#", 1), ("commands/#", 1)]);
    assert_eq!(
        forged(late.take_all(QUIET)),
        Vec::<String>::new(),
        "retained"
    );
    assert_eq!(
        code(
            f.addr(),
            &Connect::new("display-4").login("display", "d1splay").will(
                "hives/x/occupancy",
                b"forged",
                1,
                true
            )
        ),
        Some(5),
        "a will there"
    );
}

#[test]
fn an_unreachable_database_refuses_sensors_in_time_and_not_the_password_file() {
    let closed = common::free_port();
    let (server, port) = start(&format!(
        "postgresql://postgres@127.0.0.1:{closed}/bizzy?connect_timeout=2"
    ));
    let addr = ([127, 0, 0, 1], port).into();
    let t = Instant::now();
    assert_eq!(
        code(
            addr,
            &Connect::new("door-1").login("door-1", "door-1-secret")
        ),
        Some(5),
        "not authorised: no one can tell"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(
        code(addr, &Connect::new("d").login("display", "d1splay")),
        Some(0),
        "the password file needs no database"
    );
    assert!(server
        .error_log()
        .contains("sensor logins: cannot look up door-1"));
}
