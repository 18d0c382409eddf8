//! Cut off at once (issue 10, items 4 and 6) through the real binary, PostgreSQL and raw MQTT
//! clients: a sensor deleted, given a new secret or moved to another hive by SQL loses its live
//! connection on whichever worker and node holds it and cannot log in again with what it had;
//! a display token (`token:{id}`) logs in, follows only its hives' occupancy, publishes
//! nothing, and is cut off the moment it is revoked. Run through `scripts/with-postgres`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::mqtt::{connect, handshake, Client, Connect, WAIT};
use common::pg::{secret_of, TestDb};
use common::{basic_conf, eventually, two_free_ports, Server};

use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};
use bizzy::mqtt::auth::secret::hash_secret;

/// How soon a cut-off client must see its connection closed.
const CUT: Duration = Duration::from_secs(2);

/// The sensors of the fixture, enough for both workers to hold some.
const DOORS: [&str; 4] = ["door-1", "door-2", "door-3", "door-4"];

/// A migrated database with the sensors of [`DOORS`] on one hive.
struct Fixture {
    db: TestDb,
    hive: String,
}

fn fixture() -> Fixture {
    let db = TestDb::new();
    migrate_with(&db.url, MIGRATIONS).expect("the schema applies");
    let (hive, _) = db.hive_with_sensor(DOORS[0]);
    for d in &DOORS[1..] {
        db.add_sensor(&hive, d);
    }
    Fixture { db, hive }
}

/// A node: bizzy with 2 workers, no anonymous clients, its database at `url`.
struct Node {
    server: Server,
    addr: SocketAddr,
}

fn node(url: &str) -> Node {
    let (http, port) = two_free_ports();
    let conf = format!(
        "{}\n[mqtt]\nlisten = [\"127.0.0.1:{port}\"]\nallow_anonymous = false\n\n\
         [database]\nurl = \"{url}\"\nmigrate_on_start = false\n",
        basic_conf(http, "", "", "")
    );
    let server = Server::prepare(http, &conf).launch();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(
        eventually(WAIT, || std::net::TcpStream::connect(addr).is_ok()),
        "MQTT listens"
    );
    assert!(
        eventually(WAIT, || server
            .error_log()
            .matches("device ids read")
            .count()
            >= 2),
        "both workers read the logins, so both listen\n{}",
        server.error_log()
    );
    Node { server, addr }
}

/// The CONNACK code for `c`, or None if the server closed without one.
fn code(addr: SocketAddr, c: &Connect) -> Option<u8> {
    handshake(addr, c).1.map(|(_, code)| code)
}

/// `device` logging in as itself with `secret`, persistent session.
fn sensor_login(device: &str, secret: &str) -> Connect {
    Connect::new(device).clean(false).login(device, secret)
}

/// A sensor logged in with its secret, persistent session.
fn sensor(addr: SocketAddr, device: &str) -> Client {
    connect(addr, &sensor_login(device, &secret_of(device))).0
}

/// Asserts every client in `clients` is closed within [`CUT`].
fn all_cut(clients: &mut [(&str, Client)], server: &Server) {
    for (name, c) in clients.iter_mut() {
        assert!(
            c.closed_within(CUT),
            "{name} cut off\n{}",
            server.error_log()
        );
    }
}

#[test]
fn a_deleted_sensor_is_cut_off_on_every_worker_and_node_and_cannot_log_in() {
    let f = fixture();
    let a = node(&f.db.url);
    let b = node(&f.db.url);
    let mut clients: Vec<(&str, Client)> = DOORS
        .iter()
        .enumerate()
        .map(|(i, d)| (*d, sensor(if i % 2 == 0 { a.addr } else { b.addr }, d)))
        .collect();
    let mut bystander = sensor(a.addr, "door-4");
    clients.pop();
    f.db.query(
        "UPDATE sensor SET deleted_at = now() WHERE device_id IN ('door-1', 'door-2', 'door-3')",
    );
    all_cut(&mut clients, &a.server);
    for (i, d) in DOORS[..3].iter().enumerate() {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        assert_eq!(
            code(addr, &sensor_login(d, &secret_of(d))),
            Some(5),
            "{d}: its persistent session does not let it in"
        );
    }
    assert!(bystander.ping(), "another sensor stays");
}

#[test]
fn a_new_secret_or_another_hive_cuts_the_sensor_off_and_the_old_secret_is_refused() {
    let f = fixture();
    let n = node(&f.db.url);
    let mut clients: Vec<(&str, Client)> = DOORS.iter().map(|d| (*d, sensor(n.addr, d))).collect();
    let hash = hash_secret(b"rotated");
    f.db.query(&format!(
        "UPDATE sensor SET secret_hash = '{hash}' WHERE device_id IN ('door-1', 'door-2')"
    ));
    all_cut(&mut clients[..2], &n.server);
    assert!(
        clients[2].1.ping() && clients[3].1.ping(),
        "the others stay"
    );
    assert_eq!(
        code(n.addr, &sensor_login("door-1", &secret_of("door-1"))),
        Some(4),
        "the old secret"
    );
    let (_, present) = connect(n.addr, &sensor_login("door-1", "rotated"));
    assert!(
        !present,
        "the new secret starts a new session: the old one went with its rights"
    );

    let other = f.db.value(&format!(
        "WITH ad AS (INSERT INTO address (street, city, zip, country, latitude, longitude)
                     VALUES ('Str. Lipscani 3', 'Bucharest', '030031', 'RO', 44.43, 26.10)
                     RETURNING id)
         INSERT INTO hive (account_id, address_id, hive_type_id, name, time_zone, capacity)
         SELECT h.account_id, ad.id, h.hive_type_id, 'Next door', h.time_zone, 50
         FROM hive h, ad WHERE h.id = {} RETURNING id",
        f.hive
    ));
    let other = other.expect("a hive id");
    f.db.query(&format!(
        "UPDATE sensor SET hive_id = {other} WHERE device_id IN ('door-3', 'door-4')"
    ));
    all_cut(&mut clients[2..], &n.server);
    assert_eq!(
        code(n.addr, &sensor_login("door-3", &secret_of("door-3"))),
        Some(0),
        "moved, it logs in again with its secret"
    );
}

#[test]
fn a_change_made_while_no_one_listened_cuts_off_when_the_workers_listen_again() {
    let f = fixture();
    let n = node(&f.db.url);
    let mut clients: Vec<(&str, Client)> = DOORS.iter().map(|d| (*d, sensor(n.addr, d))).collect();
    f.db.query(&format!(
        "ALTER TABLE sensor DISABLE TRIGGER sensor_login_update;
         UPDATE sensor SET secret_hash = '{}' WHERE device_id IN ('door-1', 'door-2');
         ALTER TABLE sensor ENABLE TRIGGER sensor_login_update",
        hash_secret(b"rotated")
    ));
    assert!(clients[0].1.ping(), "a change nobody announced is not seen");
    let ended = f.db.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    );
    assert_eq!(ended.len(), 2, "one LISTEN connection per worker");
    for (name, c) in clients[..2].iter_mut() {
        assert!(
            c.closed_within(WAIT),
            "{name}: cut off once the table is read again"
        );
    }
    assert!(
        clients[2].1.ping() && clients[3].1.ping(),
        "the others stay"
    );
}

/// A display token on `hives`, its secret `secret`: its id.
fn token(db: &TestDb, hives: &[&str], secret: &str) -> String {
    let hash = hash_secret(secret.as_bytes());
    db.value(&format!(
        "INSERT INTO api_token (account_id, name, secret_hash, hive_ids)
         SELECT account_id, 'lobby', '{hash}', ARRAY[{}]::bigint[] FROM hive LIMIT 1
         RETURNING id",
        hives.join(",")
    ))
    .expect("a token id")
}

fn display_login(client_id: &str, id: &str, secret: &str) -> Connect {
    Connect::new(client_id).login(&format!("token:{id}"), secret)
}

#[test]
fn a_display_token_follows_its_hives_only_and_a_revoked_one_is_cut_off() {
    let f = fixture();
    let n = node(&f.db.url);
    let id = token(&f.db, &[&f.hive], "lobby-secret");
    assert_eq!(code(n.addr, &display_login("d0", &id, "wrong")), Some(4));
    assert_eq!(
        code(n.addr, &display_login("d0", "999999", "lobby-secret")),
        Some(4)
    );
    assert_eq!(
        code(n.addr, &display_login("d0", "x", "lobby-secret")),
        Some(4)
    );
    let mut displays: Vec<(&str, Client)> = ["screen-1", "screen-2", "screen-3"]
        .iter()
        .map(|c| {
            (
                *c,
                connect(n.addr, &display_login(c, &id, "lobby-secret")).0,
            )
        })
        .collect();
    let mine = format!("hives/{}/occupancy", f.hive);
    let d = &mut displays[0].1;
    assert_eq!(
        d.subscribe(&[
            (&mine, 1),
            ("hives/999999/occupancy", 1),
            ("hives/+/occupancy", 1),
            ("#", 0),
            ("commands/sensor/door-1", 0),
        ]),
        vec![1, 0x80, 0x80, 0x80, 0x80]
    );
    d.publish(&mine, b"forged", 1, true);
    d.publish("probe/x", b"forged", 0, false);
    assert!(
        d.ping(),
        "a refused publish is dropped, the connection stays"
    );
    let mut s = sensor(n.addr, "door-1");
    s.publish("sensors/door-1/counter", &legacy(3, 1), 1, false);
    let got = d.recv_publish(WAIT).expect("the hive's occupancy");
    assert_eq!(got.topic, mine);
    assert_ne!(got.payload, b"forged", "its own publish went nowhere");
    let late = &mut displays[1].1;
    assert_eq!(late.subscribe(&[(&mine, 0)]), vec![0]);
    let kept = late.recv_publish(WAIT).expect("the retained occupancy");
    assert!(kept.retain && kept.topic == mine, "{kept:?}");

    f.db.query(&format!(
        "UPDATE api_token SET revoked_at = now() WHERE id = {id}"
    ));
    all_cut(&mut displays, &n.server);
    assert!(s.ping(), "the sensor stays");
    assert_eq!(
        code(n.addr, &display_login("screen-1", &id, "lobby-secret")),
        Some(5),
        "a revoked token"
    );
}

#[test]
fn a_deleted_token_is_cut_off_and_a_revoked_one_never_logs_in() {
    let f = fixture();
    let n = node(&f.db.url);
    let revoked = token(&f.db, &[&f.hive], "s1");
    f.db.query(&format!(
        "UPDATE api_token SET revoked_at = now() WHERE id = {revoked}"
    ));
    assert_eq!(code(n.addr, &display_login("d", &revoked, "s1")), Some(5));
    let id = token(&f.db, &[&f.hive], "s2");
    let mut d = vec![("screen", connect(n.addr, &display_login("d", &id, "s2")).0)];
    f.db.query(&format!("DELETE FROM api_token WHERE id = {id}"));
    all_cut(&mut d, &n.server);
    assert_eq!(
        code(n.addr, &display_login("d", &id, "s2")),
        Some(4),
        "unknown now"
    );
}

/// A legacy counter report (PROTOCOL.md section 1) with these totals.
fn legacy(total_in: u16, total_out: u16) -> Vec<u8> {
    let mut b = vec![0, 5, 0, 3];
    b.extend_from_slice(&total_in.to_be_bytes());
    b.extend_from_slice(&total_out.to_be_bytes());
    b.extend_from_slice(&[24, 11, 22, 18, 0, 5, 0xff, 0xff]);
    b
}
