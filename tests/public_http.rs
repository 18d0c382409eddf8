//! The public API through the real binary (issue 11), with a real PostgreSQL, real memcached
//! servers and the real cache manager process: each public endpoint and its errors, ETag and
//! 304, a sensor's report reaching an anonymous read within `micro_ttl` and one cache manager
//! reaction, memcached stopped and started (reads from PostgreSQL meanwhile, the replica
//! refilled after), and PostgreSQL stopped and started (the replica served with
//! `"stale": true`, search and writes 503 with Retry-After, and back without a restart).
//! Run through `scripts/with-postgres`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use bizzy::modules::auth::mint::{Claims, Minter};
use bizzy::modules::cache::keys;
use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};
use common::cluster::Cluster;
use common::memcached::Memcached;
use common::mqtt::{connect, Connect, Packet, Publish};
use common::pg::{secret_of, TestDb};
use common::{basic_conf, eventually, two_free_ports, Resp, Server};

const KEY: &str = include_str!("../src/modules/auth/testdata/key.pem");
const PROJECT: &str = "bizzy-test";

/// A token of the platform admin `boss`, signed with the test key, valid for an hour.
fn boss_token() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let minter = Minter::from_pem(KEY, "test").expect("the test key loads");
    minter.mint(&Claims {
        project: PROJECT,
        uid: "boss",
        iat: now - 10,
        exp: now + 3600,
    })
}

/// bizzy with the API at `/v1/` (tokens of the test key; `boss` is a platform admin), MQTT,
/// the database at `url` and the replica on `memcached`.
fn server(url: &str, memcached: &[String], max_stale: &str) -> (Server, SocketAddr, SocketAddr) {
    let (http, mqtt) = two_free_ports();
    let location = "[[http.server.location]]\nprefix = \"/v1/\"\nhandler = \"api\"\n";
    let servers: Vec<String> = memcached.iter().map(|m| format!("\"{m}\"")).collect();
    let conf = format!(
        "{}\n[mqtt]\nlisten = [\"127.0.0.1:{mqtt}\"]\nallow_anonymous = false\n\n\
         [database]\nurl = \"{url}\"\nmigrate_on_start = false\nquery_timeout = \"2s\"\n\n\
         [cache]\nmemcached = [{}]\nmicro_ttl = \"1s\"\nmax_stale = \"{max_stale}\"\n\n\
         [auth]\nfirebase_project_id = \"{PROJECT}\"\n\
         certificates = \"conf/firebase-certs.json\"\nadmin_uids = [\"boss\"]\n",
        basic_conf(http, "", "", location),
        servers.join(", ")
    );
    let (server, mqtt) = common::launch_with_test_certs(Server::prepare(http, &conf), mqtt);
    (server, ([127, 0, 0, 1], http).into(), mqtt)
}

fn get(addr: SocketAddr, path: &str) -> (Resp, Value) {
    get_with(addr, path, "")
}

fn get_with(addr: SocketAddr, path: &str, headers: &str) -> (Resp, Value) {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n");
    let r = common::send(addr, raw.as_bytes());
    let v = if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.text()))
    };
    (r, v)
}

/// Hives of an account of their own: (name, type, zip, lat, lon) -> ids, in order. They have
/// no daily reset, so that the periodic work leaves the occupancy a test sets alone.
fn hives(
    db: &dyn Fn(&str) -> Vec<Vec<Option<String>>>,
    list: &[(&str, &str, &str, f64, f64)],
) -> Vec<i64> {
    let account = db("INSERT INTO account (name) VALUES ('Acme') RETURNING id")[0][0]
        .clone()
        .unwrap();
    list.iter()
        .map(|(name, kind, zip, lat, lon)| {
            let sql = format!(
                "WITH ad AS (INSERT INTO address (street, city, zip, country, latitude, longitude)
                             VALUES ('Main 1', 'Town', '{zip}', 'RO', {lat}, {lon}) RETURNING id)
                 INSERT INTO hive (account_id, address_id, hive_type_id, name, time_zone, capacity,
                                   reset_time)
                 SELECT {account}, ad.id, t.id, '{name}', 'Europe/Bucharest', 100, NULL
                 FROM ad, hive_type t WHERE t.code = '{kind}' RETURNING id"
            );
            db(&sql)[0][0].as_ref().unwrap().parse().unwrap()
        })
        .collect()
}

fn ids(v: &Value) -> Vec<i64> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .map(|h| h["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn public_reads_search_validators_and_errors() {
    let db = TestDb::new();
    migrate_with(&db.url, MIGRATIONS).expect("the schema applies");
    let mc = Memcached::start();
    let (_s, http, _) = server(&db.url, &[mc.addr()], "120s");
    let q = |sql: &str| db.query(sql);
    let h = hives(
        &q,
        &[
            ("Café Central", "cafe", "010001", 44.4300, 26.1000),
            ("CAFE Nord", "cafe", "010002", 44.4400, 26.1000),
            ("Gym One", "gym", "010001", 44.4310, 26.1010),
            ("Far Bar", "bar", "900000", 46.7700, 23.6000),
        ],
    );

    let (r, types) = get(http, "/v1/hive-types");
    assert_eq!(r.status, 200, "{}", r.text());
    let codes: Vec<&str> = types["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["bar", "cafe", "restaurant", "club", "store", "gym", "other"]
    );
    assert_eq!(r.header("Cache-Control"), Some("public, max-age=1"));

    let (r, occ) = get(http, &format!("/v1/hives/{}/occupancy", h[0]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(occ["hive_id"], h[0]);
    assert_eq!(occ["occupancy"], 0);
    assert_eq!(occ["capacity"], 100);
    assert_eq!(occ["stale"], false);
    assert!(occ["vs_usual"].is_null(), "no history yet: {occ}");
    let etag = r.header("ETag").expect("an ETag").to_string();
    let (again, _) = get_with(
        http,
        &format!("/v1/hives/{}/occupancy", h[0]),
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("ETag"), Some(etag.as_str()));

    let (r, details) = get(http, &format!("/v1/hives/{}", h[0]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(details["name"], "Café Central");
    assert_eq!(details["type"], "cafe");
    assert_eq!(details["address"]["zip"], "010001");
    assert_eq!(details["occupancy"]["hive_id"], h[0]);
    assert!(details.get("account_id").is_none(), "no business data");
    assert!(r.header("ETag").is_some());

    for (path, status) in [
        ("/v1/hives/999999/occupancy".to_string(), 404),
        ("/v1/hives/999999".to_string(), 404),
        ("/v1/hives/abc".to_string(), 404),
        (format!("/v1/hives/{}/nothing", h[0]), 404),
    ] {
        let (r, v) = get(http, &path);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(v["error"]["code"].is_string(), "{path}: {v}");
    }
    let r = common::send(
        http,
        b"POST /v1/hive-types HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 405);

    let (_, v) = get(http, "/v1/hives?q=cafe");
    assert_eq!(ids(&v), vec![h[0], h[1]], "accent and case: {v}");
    let (_, v) = get(http, "/v1/hives?type=cafe&zip=010001");
    assert_eq!(ids(&v), vec![h[0]]);
    let (_, v) = get(http, "/v1/hives?near=44.4300,26.1000&radius_m=2000");
    assert_eq!(ids(&v), vec![h[0], h[2], h[1]], "by distance: {v}");
    let (_, v) = get(
        http,
        "/v1/hives?near=44.4300,26.1000&radius_m=2000&type=gym",
    );
    assert_eq!(ids(&v), vec![h[2]]);
    let (r, v) = get(http, "/v1/hives?near=44.43,26.10");
    assert_eq!(r.status, 400, "{v}");
    assert_eq!(v["error"]["field"], "radius_m");
    let (r, v) = get(http, "/v1/hives?limit=2");
    assert_eq!(r.status, 200);
    assert_eq!(ids(&v).len(), 2);
    let cursor = v["next_cursor"].as_str().expect("a next page").to_string();
    let (_, v2) = get(http, &format!("/v1/hives?limit=2&cursor={cursor}"));
    let mut all = ids(&v);
    all.extend(ids(&v2));
    assert_eq!(all, h);

    assert!(
        eventually(Duration::from_secs(5), || mc
            .get(&keys::occupancy(h[0]))
            .is_some()),
        "the replica holds the occupancy"
    );

    let (r, _) = get_with(
        http,
        &format!("/v1/hives/{}", h[2]),
        &format!("Authorization: Bearer {}\r\n", boss_token()),
    );
    assert_eq!(r.status, 200, "a signed-in caller reads it too");
    let visit = format!(
        "SELECT count(*) FROM user_hive v JOIN app_user u ON u.id = v.user_id \
         WHERE u.firebase_uid = 'boss' AND v.hive_id = {} AND v.last_visited_at IS NOT NULL",
        h[2]
    );
    assert!(
        eventually(Duration::from_secs(5), || db.query(&visit)[0][0].as_deref()
            == Some("1")),
        "the visit is recorded for /v1/me/recent"
    );
    let (r, v) = get_with(
        http,
        &format!("/v1/hives/{}", h[2]),
        "Authorization: Bearer not-a-token\r\n",
    );
    assert_eq!(r.status, 401, "{v}");

    let metrics = common::get(http, "/metrics").text();
    let figure = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{metrics}"))
    };
    assert!(figure("bizzy_cache_answers_total{how=\"waited\"}") >= 3);
    let reads = figure("bizzy_cache_reads_total{from=\"replica\"}")
        + figure("bizzy_cache_reads_total{from=\"database\"}");
    assert!(reads >= 3, "{metrics}");
}

/// A legacy counter report with these totals and no valid clock.
fn legacy(total_in: u16, total_out: u16) -> Vec<u8> {
    let mut b = vec![0, 5, 0, 3];
    b.extend_from_slice(&total_in.to_be_bytes());
    b.extend_from_slice(&total_out.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    b
}

/// The occupancy an anonymous client reads for `hive`.
fn occupancy(http: SocketAddr, hive: &str) -> Value {
    get(http, &format!("/v1/hives/{hive}/occupancy")).1
}

#[test]
fn a_report_reaches_anonymous_reads_within_micro_ttl_and_one_reaction() {
    let db = TestDb::new();
    migrate_with(&db.url, MIGRATIONS).expect("the schema applies");
    let mc = Memcached::start();
    // Passes every 30 s: what shows sooner came by NOTIFY.
    let (_s, http, mqtt) = server(&db.url, &[mc.addr()], "120s");
    let (hive, _) = db.hive_with_sensor("door-1");
    assert_eq!(occupancy(http, &hive)["occupancy"], 0);
    let mut c = connect(
        mqtt,
        &Connect::new("door-1").login("door-1", &secret_of("door-1")),
    )
    .0;
    let mut worst = Duration::ZERO;
    for n in 1..=5u16 {
        let pid = c.next_pid();
        let sent = Instant::now();
        c.send(
            &Publish::new("sensors/door-1/counter", &legacy(10 * n, 0), 1)
                .pid(pid)
                .encode(),
        );
        assert!(matches!(
            c.recv(Duration::from_secs(5)),
            Some(Packet::Puback(p)) if p == pid
        ));
        let want = if n == 1 { 0 } else { 10 * (n - 1) };
        assert!(
            eventually(Duration::from_secs(3), || occupancy(http, &hive)
                ["occupancy"]
                == want),
            "report {n}: {}",
            occupancy(http, &hive)
        );
        worst = worst.max(sent.elapsed());
    }
    assert!(
        worst < Duration::from_millis(2500),
        "publish to anonymous read: {worst:?}"
    );
}

#[test]
fn memcached_stopped_reads_come_from_postgres_and_the_replica_is_refilled() {
    let db = TestDb::new();
    migrate_with(&db.url, MIGRATIONS).expect("the schema applies");
    let mut mc = Memcached::start();
    let (s, http, _) = server(&db.url, &[mc.addr()], "4s");
    let q = |sql: &str| db.query(sql);
    let h = hives(&q, &[("One", "bar", "1", 45.0, 25.0)]);
    let path = format!("/v1/hives/{}/occupancy", h[0]);
    assert_eq!(get(http, &path).0.status, 200);
    mc.stop();
    db.query(&format!(
        "UPDATE hive_status SET occupancy = 7, updated_at = now() WHERE hive_id = {}",
        h[0]
    ));
    // No notification: the worker's refresh reads PostgreSQL since memcached is down.
    assert!(
        eventually(Duration::from_secs(5), || {
            let (r, v) = get(http, &path);
            assert_eq!(r.status, 200, "{}", r.text());
            v["occupancy"] == 7
        }),
        "read from PostgreSQL while memcached is down: {}",
        s.error_log()
    );
    mc.start_again();
    assert!(
        eventually(Duration::from_secs(10), || {
            mc.get(&keys::occupancy(h[0]))
                .is_some_and(|v| String::from_utf8_lossy(&v).contains("\"occupancy\":7"))
        }),
        "the replica is refilled: {}",
        s.error_log()
    );
}

#[test]
fn postgres_stopped_the_replica_answers_stale_and_everything_recovers() {
    let mut pg = Cluster::start();
    let url = pg.database("bizzy");
    migrate_with(&url, MIGRATIONS).expect("the schema applies");
    let mc = Memcached::start();
    let (_s, http, _) = server(&url, &[mc.addr()], "120s");
    let q = |sql: &str| common::pg::query(&url, sql);
    let h = hives(&q, &[("One", "bar", "1", 45.0, 25.0)]);
    let occ_path = format!("/v1/hives/{}/occupancy", h[0]);
    let hive_path = format!("/v1/hives/{}", h[0]);
    assert!(
        eventually(Duration::from_secs(5), || mc
            .get(&keys::hive(h[0]))
            .is_some()),
        "the cache manager filled the replica"
    );
    assert_eq!(get(http, &occ_path).1["stale"], false);

    pg.stop();
    assert!(
        eventually(Duration::from_secs(10), || {
            let (r, v) = get(http, &occ_path);
            assert_eq!(r.status, 200, "{}", r.text());
            v["stale"] == true
        }),
        "stale once PostgreSQL is gone"
    );
    let (r, v) = get(http, &hive_path);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(v["occupancy"]["stale"], true);
    assert_eq!(get(http, "/v1/hive-types").0.status, 200);
    let (r, v) = get(http, "/v1/hives?q=one");
    assert_eq!(r.status, 503, "{v}");
    assert!(r.header("Retry-After").is_some());
    let body = r#"{"name":"New"}"#;
    let raw = format!(
        "POST /v1/accounts HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        boss_token(),
        body.len()
    );
    let r = common::send(http, raw.as_bytes());
    assert_eq!(r.status, 503, "a write: {}", r.text());
    assert!(r.header("Retry-After").is_some());

    pg.resume();
    assert!(
        eventually(Duration::from_secs(20), || get(http, &occ_path).1["stale"]
            == false),
        "fresh again without a restart"
    );
    let (r, _) = get(http, "/v1/hives?q=one");
    assert_eq!(r.status, 200);
}
