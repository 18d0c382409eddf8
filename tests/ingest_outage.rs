//! PostgreSQL stopped for real in the middle of a run (issue 9's proof): sensors keep
//! publishing QoS 1 reports through a 20-second outage of a cluster of the test's own; every
//! report is acknowledged meanwhile (the spool), and once PostgreSQL is back the database holds
//! each acknowledged report exactly once and every hive's occupancy is what the sensors sent.
//! Run through `scripts/with-postgres` (for the PostgreSQL binaries).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::mqtt::{connect, Connect, Packet, Publish};
use common::{basic_conf, two_free_ports, Server};

use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};

const SENSORS: usize = 10;
const OUTAGE: Duration = Duration::from_secs(20);

/// A legacy counter report with these totals and no valid clock.
fn legacy(total_in: u16, total_out: u16) -> Vec<u8> {
    let mut b = vec![0, 5, 0, 3];
    b.extend_from_slice(&total_in.to_be_bytes());
    b.extend_from_slice(&total_out.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    b
}

/// One sensor publishing until `stop`, each report acknowledged before the next: totals
/// (2n, n) for the n-th report, so each report after the first adds one person. Returns how
/// many reports were acknowledged and how many of them came while `outage` was set.
fn sensor(
    addr: std::net::SocketAddr,
    id: String,
    stop: Arc<AtomicBool>,
    outage: Arc<AtomicBool>,
) -> (u32, u32) {
    let mut c = connect(addr, &Connect::new(&id)).0;
    let topic = format!("sensors/{id}/counter");
    let (mut acked, mut during) = (0u32, 0u32);
    while !stop.load(Ordering::Relaxed) {
        let n = acked as u16 + 1;
        let pid = c.next_pid();
        c.send(&Publish::new(&topic, &legacy(2 * n, n), 1).pid(pid).encode());
        match c.recv(Duration::from_secs(10)) {
            Some(Packet::Puback(p)) if p == pid => {
                acked += 1;
                if outage.load(Ordering::Relaxed) {
                    during += 1;
                }
            }
            other => panic!("{id}: no PUBACK for report {n}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (acked, during)
}

#[test]
fn nothing_acknowledged_is_lost_or_doubled_across_a_20_second_outage() {
    let mut pg = Cluster::start();
    let url = pg.database("bizzy");
    migrate_with(&url, MIGRATIONS).expect("the schema applies");
    let ids: Vec<String> = (0..SENSORS).map(|i| format!("door-{i}")).collect();
    for id in &ids {
        common::pg::try_query(
            &url,
            &format!(
                "WITH a AS (INSERT INTO account (name) VALUES ('Acme {id}') RETURNING id),
                      ad AS (INSERT INTO address (street, city, zip, country, latitude,
                                                  longitude)
                             VALUES ('Hauptstr. 1', 'Berlin', '10115', 'DE', 52.5, 13.4)
                             RETURNING id),
                      h AS (INSERT INTO hive (account_id, address_id, hive_type_id, name,
                                              time_zone, reset_time)
                            SELECT a.id, ad.id, t.id, 'Hive {id}', 'UTC', NULL
                            FROM a, ad, hive_type t WHERE t.code = 'bar' RETURNING id)
                 INSERT INTO sensor (device_id, hive_id, secret_hash)
                 SELECT '{id}', h.id, '$pbkdf2-sha256$i=1000$c2FsdA$aGFzaGhhc2hoYXNo' FROM h"
            ),
        )
        .expect("a hive and its sensor");
    }
    let (http, port) = two_free_ports();
    let conf = format!(
        "{}\n[mqtt]\nlisten = [\"127.0.0.1:{port}\"]\nallow_anonymous = true\n\n\
         [database]\nurl = \"{url}?connect_timeout=2\"\nmigrate_on_start = false\n",
        basic_conf(http, "", "", ""),
    );
    let server = Server::start(http, &conf);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(common::eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).is_ok()
    }));

    let stop = Arc::new(AtomicBool::new(false));
    let outage = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = ids
        .iter()
        .map(|id| {
            let (id, stop, outage) = (id.clone(), Arc::clone(&stop), Arc::clone(&outage));
            std::thread::spawn(move || sensor(addr, id, stop, outage))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    pg.stop();
    outage.store(true, Ordering::Relaxed);
    std::thread::sleep(OUTAGE);
    outage.store(false, Ordering::Relaxed);
    pg.resume();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<(u32, u32)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        counts.iter().all(|(_, during)| *during > 10),
        "reports were acknowledged during the outage: {counts:?}"
    );

    let query = |sql: &str| -> Vec<Vec<Option<String>>> {
        common::pg::try_query(&url, sql).expect("PostgreSQL answers")
    };
    let drained = common::eventually(Duration::from_secs(60), || {
        let total: u32 = counts.iter().map(|c| c.0).sum();
        query("SELECT count(*) FROM sensor_report")[0][0].as_deref()
            == Some(total.to_string().as_str())
    });
    let metrics = common::get(server.addr(), "/metrics").text();
    assert!(drained, "the spool is replayed; metrics:\n{metrics}");
    for (id, (acked, _)) in ids.iter().zip(&counts) {
        let rows = query(&format!(
            "SELECT count(*), count(DISTINCT r.payload), max(hs.occupancy)
             FROM sensor_report r JOIN sensor s ON s.id = r.sensor_id
             JOIN hive_status hs ON hs.hive_id = s.hive_id
             WHERE s.device_id = '{id}'"
        ));
        let row: Vec<String> = rows[0]
            .iter()
            .map(|v| v.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            row,
            [
                acked.to_string(),
                acked.to_string(),
                (acked - 1).to_string()
            ],
            "{id}: every acknowledged report once, and the count it makes"
        );
    }
    // What the replay changed is published: the retained occupancy is the database's.
    let hives = query(
        "SELECT s.device_id, hs.hive_id, hs.occupancy FROM sensor s
         JOIN hive_status hs ON hs.hive_id = s.hive_id",
    );
    let mut watcher = connect(addr, &Connect::new("watcher")).0;
    watcher.subscribe(&[("hives/+/occupancy", 0)]);
    let mut retained = std::collections::HashMap::new();
    while let Some(p) = watcher.recv(Duration::from_millis(500)) {
        if let Packet::Publish(m) = p {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("JSON");
            retained.insert(m.topic.clone(), v["occupancy"].to_string());
        }
    }
    for row in &hives {
        let (hive, occupancy) = (row[1].clone().unwrap(), row[2].clone().unwrap());
        assert_eq!(
            retained.get(&format!("hives/{hive}/occupancy")),
            Some(&occupancy),
            "{row:?}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let m = common::get(server.addr(), "/metrics").text();
        if m.lines().any(|l| l == "bizzy_ingest_spool_reports 0") {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the spool gauge goes back to 0");
}
