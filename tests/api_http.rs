//! The business API through the real binary (issue 10): Firebase ID tokens minted with the
//! committed test key and refused in every way a forged one can be; the roles end to end over
//! HTTP; a sensor registered over HTTP logging in over MQTT with the password shown once, taking
//! a configuration pushed over HTTP and acknowledging it, then cut off by its deletion; a display
//! token created, used and revoked; and the waiting itself: a database slower than
//! `database.query_timeout` answers 503 JSON while the worker goes on serving, and a client that
//! leaves while its request waits is let go. Run through `scripts/with-postgres`.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use bizzy::modules::auth::mint::{Claims, Minter};
use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};
use common::mqtt::{handshake, Client, Connect, Packet, WAIT};
use common::pg::TestDb;
use common::{basic_conf, eventually, two_free_ports, Server};

const KEY: &str = include_str!("../src/modules/auth/testdata/key.pem");
const PROJECT: &str = "bizzy-test";
/// The platform admin of the tests' configuration.
const BOSS: &str = "boss";

/// A migrated database and bizzy (HTTP API at `/v1/`, MQTT, `[auth]` with the test
/// certificate) using it.
struct Fixture {
    db: TestDb,
    server: Server,
    http: SocketAddr,
    mqtt: SocketAddr,
}

fn fixture(workers: usize, query_timeout: &str) -> Fixture {
    fixture_with(workers, query_timeout, "0s")
}

/// As [`fixture`], with the API's reads cached for `micro_ttl` in each worker.
fn fixture_with(workers: usize, query_timeout: &str, micro_ttl: &str) -> Fixture {
    let db = TestDb::new();
    migrate_with(&db.url, MIGRATIONS).expect("the schema applies");
    let (http, mqtt) = two_free_ports();
    let location = "[[http.server.location]]\nprefix = \"/v1/\"\nhandler = \"api\"\n";
    let conf = format!(
        "{}\n[mqtt]\nlisten = [\"127.0.0.1:{mqtt}\"]\nallow_anonymous = false\n\n\
         [database]\nurl = \"{}\"\nmigrate_on_start = false\nquery_timeout = \"{query_timeout}\"\n\n\
         [auth]\nfirebase_project_id = \"{PROJECT}\"\n\
         certificates = \"conf/firebase-certs.json\"\nadmin_uids = [\"{BOSS}\"]\n\n\
         [cache]\nmicro_ttl = \"{micro_ttl}\"\n",
        basic_conf(http, "", "", location).replace(
            "worker_processes = 2",
            &format!("worker_processes = {workers}")
        ),
        db.url
    );
    let (server, mqtt) = common::launch_with_test_certs(Server::prepare(http, &conf), mqtt);
    Fixture {
        db,
        http: ([127, 0, 0, 1], http).into(),
        server,
        mqtt,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A token for `uid` signed with the test key, valid for an hour.
fn token(uid: &str) -> String {
    let minter = Minter::from_pem(KEY, "test").expect("the test key loads");
    minter.mint(&Claims {
        project: PROJECT,
        uid,
        iat: now() - 10,
        exp: now() + 3600,
    })
}

/// An answer: status, headers, JSON body (null when empty).
#[derive(Debug)]
struct Answer {
    status: u16,
    resp: common::Resp,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

fn request(method: &str, path: &str, bearer: Option<&str>, body: Option<&Value>) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    if let Some(t) = bearer {
        raw.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() || method != "GET" {
        raw.push_str("Content-Type: application/json\r\n");
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    raw.push_str(&body);
    raw.into_bytes()
}

fn answer(resp: common::Resp) -> Answer {
    let body = if resp.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&resp.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", resp.text()))
    };
    if resp.status >= 400 {
        assert_eq!(
            resp.header("Content-Type"),
            Some("application/json"),
            "{resp:?}"
        );
    }
    Answer {
        status: resp.status,
        resp,
        body,
    }
}

impl Fixture {
    /// One call on a connection of its own (kept alive: the answer must not close it).
    fn call(&self, method: &str, path: &str, who: Option<&str>, body: Option<Value>) -> Answer {
        let t = who.map(token);
        self.raw_call(method, path, t.as_deref(), body.as_ref())
    }

    fn raw_call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut s = common::connect(self.http);
        s.write_all(&request(method, path, bearer, body)).unwrap();
        let mut buf = Vec::new();
        let resp = common::read_response(&mut s, &mut buf, false).expect("an answer");
        let a = answer(resp);
        assert!(
            common::still_open(&mut s, Duration::from_millis(50)),
            "{method} {path} ({}) closed the connection",
            a.status
        );
        a
    }

    /// An account named `name` administered by `admin` (through the platform admin): its id.
    fn account(&self, name: &str, admin: &str) -> i64 {
        let a = self.call(
            "POST",
            "/v1/accounts",
            Some(BOSS),
            Some(json!({ "name": name })),
        );
        assert_eq!(a.status, 201, "{a:?}");
        let id = a.body["id"].as_i64().expect("an id");
        let put = self.call(
            "PUT",
            &format!("/v1/accounts/{id}/admins/{admin}"),
            Some(BOSS),
            None,
        );
        assert_eq!(put.status, 204, "{put:?}");
        id
    }

    /// A hive of `account` created by `admin`: its id.
    fn hive(&self, account: i64, admin: &str) -> i64 {
        let a = self.call(
            "POST",
            &format!("/v1/accounts/{account}/hives"),
            Some(admin),
            Some(hive_body("The Hive")),
        );
        assert_eq!(a.status, 201, "{a:?}");
        a.body["id"].as_i64().expect("an id")
    }

    /// Sensor `device` registered on `hive` of `account` by alice: its MQTT password.
    fn sensor(&self, account: i64, hive: i64, device: &str) -> String {
        let reg = self.call(
            "POST",
            &format!("/v1/accounts/{account}/sensors"),
            Some("alice"),
            Some(json!({ "hive_id": hive, "device_id": device })),
        );
        assert_eq!(reg.status, 201, "{reg:?}");
        assert_eq!(reg.body["mqtt_username"], device);
        let password = reg.body["mqtt_password"].as_str().expect("shown once");
        password.to_string()
    }

    fn mqtt_login(&self, user: &str, password: &str) -> (Client, Option<u8>) {
        let (c, ack) = handshake(self.mqtt, &Connect::new(user).login(user, password));
        (c, ack.map(|(_, code)| code))
    }
}

fn hive_body(name: &str) -> Value {
    json!({
        "name": name,
        "type": "bar",
        "address": { "street": "Str. Lipscani 1", "city": "Bucharest", "zip": "030031",
                     "country": "RO", "latitude": 44.43, "longitude": 26.10 },
        "time_zone": "Europe/Bucharest",
        "capacity": 120,
        "reset_time": "04:00"
    })
}

#[test]
fn roles_decide_who_may_do_what_over_http() {
    let f = fixture(2, "5s");
    let acme = f.account("Acme", "alice");
    let hive = f.hive(acme, "alice");

    let anonymous = f.call("GET", &format!("/v1/accounts/{acme}/hives"), None, None);
    assert_eq!((anonymous.status, anonymous.code()), (401, "unauthorized"));
    assert_eq!(anonymous.resp.header("WWW-Authenticate"), Some("Bearer"));
    let mallory = f.call(
        "GET",
        &format!("/v1/accounts/{acme}/hives"),
        Some("mallory"),
        None,
    );
    assert_eq!((mallory.status, mallory.code()), (403, "forbidden"));
    let not_boss = f.call(
        "POST",
        "/v1/accounts",
        Some("alice"),
        Some(json!({"name": "Mine"})),
    );
    assert_eq!(not_boss.status, 403);
    let missing = f.call("GET", "/v1/accounts/999999/hives", Some("alice"), None);
    assert_eq!((missing.status, missing.code()), (404, "not_found"));

    let list = f.call(
        "GET",
        &format!("/v1/accounts/{acme}/hives?limit=10"),
        Some("alice"),
        None,
    );
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(list.body["items"][0]["id"], hive);
    assert_eq!(list.body["next_cursor"], Value::Null);
    let boss = f.call(
        "GET",
        &format!("/v1/accounts/{acme}/hives"),
        Some(BOSS),
        None,
    );
    assert_eq!(
        boss.status, 200,
        "a platform admin administers every account"
    );

    let mut typo = hive_body("Typo");
    typo["capacty"] = json!(3);
    let bad = f.call(
        "POST",
        &format!("/v1/accounts/{acme}/hives"),
        Some("alice"),
        Some(typo),
    );
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_eq!(bad.body["error"]["field"], "capacty");
    let mut mars = hive_body("Mars");
    mars["time_zone"] = json!("Mars/Olympus_Mons");
    let bad = f.call(
        "POST",
        &format!("/v1/accounts/{acme}/hives"),
        Some("alice"),
        Some(mars),
    );
    assert_eq!(
        (bad.status, bad.body["error"]["field"].as_str()),
        (400, Some("time_zone"))
    );

    let occupancy = f.call("GET", &format!("/v1/hives/{hive}/occupancy"), None, None);
    assert_eq!(occupancy.status, 200, "{occupancy:?}");
    for key in [
        "hive_id",
        "occupancy",
        "capacity",
        "percent",
        "updated_at",
        "stale",
        "degraded",
    ] {
        assert!(occupancy.body.get(key).is_some(), "{key}: {occupancy:?}");
    }
    let gone = f.call("DELETE", &format!("/v1/hives/{hive}"), Some("alice"), None);
    assert_eq!(gone.status, 204);
    let read = f.call("GET", &format!("/v1/hives/{hive}"), None, None);
    assert_eq!(read.status, 404);
    let unknown = f.call("GET", "/v1/nothing-here", None, None);
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
}

/// A token with this header and these claims, signed with `sign` (None: no signature).
fn forged(header: Value, claims: Value, sign: &str) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{sign}", enc(&header), enc(&claims))
}

#[test]
fn forged_expired_and_foreign_tokens_are_refused_401() {
    let f = fixture(1, "5s");
    let claims = |aud: &str, iss: &str, iat: u64, exp: u64| json!({ "aud": aud, "iss": iss, "sub": BOSS, "iat": iat, "exp": exp, "auth_time": iat });
    let iss = format!("https://securetoken.google.com/{PROJECT}");
    let good = token(BOSS);
    let signature = good.rsplit('.').next().unwrap();
    let minter = Minter::from_pem(KEY, "test").unwrap();
    let other_kid = Minter::from_pem(KEY, "unknown-kid").unwrap();
    let mint = |m: &Minter, project: &str, iat: u64, exp: u64| {
        m.mint(&Claims {
            project,
            uid: BOSS,
            iat,
            exp,
        })
    };
    let t = now();
    let refused = [
        ("expired", mint(&minter, PROJECT, t - 7200, t - 3600)),
        ("not yet valid", mint(&minter, PROJECT, t + 3600, t + 7200)),
        (
            "another project",
            mint(&minter, "someone-else", t - 10, t + 3600),
        ),
        (
            "unknown key id",
            mint(&other_kid, PROJECT, t - 10, t + 3600),
        ),
        (
            "wrong issuer",
            forged(
                json!({"alg": "RS256", "kid": "test"}),
                claims(PROJECT, "https://evil.example", t - 10, t + 3600),
                signature,
            ),
        ),
        (
            "wrong audience",
            forged(
                json!({"alg": "RS256", "kid": "test"}),
                claims("other", &iss, t - 10, t + 3600),
                signature,
            ),
        ),
        (
            "alg none",
            forged(
                json!({"alg": "none", "kid": "test"}),
                claims(PROJECT, &iss, t - 10, t + 3600),
                "",
            ),
        ),
        (
            "HS256",
            forged(
                json!({"alg": "HS256", "kid": "test"}),
                claims(PROJECT, &iss, t - 10, t + 3600),
                signature,
            ),
        ),
        ("tampered", {
            let mut parts: Vec<&str> = good.split('.').collect();
            let other = forged(json!({}), claims(PROJECT, &iss, t - 10, t + 7200), "");
            let payload = other.split('.').nth(1).unwrap().to_string();
            parts[1] = &payload;
            parts.join(".")
        }),
        ("garbage", "not-a-token".to_string()),
    ];
    for (why, t) in &refused {
        let a = f.raw_call("POST", "/v1/accounts", Some(t), Some(&json!({"name": "X"})));
        assert_eq!((a.status, a.code()), (401, "unauthorized"), "{why}: {a:?}");
    }
    let a = f.raw_call(
        "POST",
        "/v1/accounts",
        Some(&good),
        Some(&json!({"name": "X"})),
    );
    assert_eq!(a.status, 201, "the good token: {a:?}");
}

/// A status message (PROTOCOL.md section 4) saying configuration `id` is applied.
fn status_payload(id: u32) -> Vec<u8> {
    let mut b = vec![0u8; 20];
    b[4..6].copy_from_slice(&0xffffu16.to_be_bytes());
    b[10..12].copy_from_slice(&20u16.to_be_bytes());
    b[12..16].copy_from_slice(&0x0001_0200u32.to_be_bytes());
    b[16..20].copy_from_slice(&id.to_be_bytes());
    b
}

#[test]
fn a_sensor_registered_over_http_logs_in_takes_its_configuration_and_is_cut_off_when_deleted() {
    let f = fixture(2, "5s");
    let acme = f.account("Acme", "alice");
    let hive = f.hive(acme, "alice");
    let password = f.sensor(acme, hive, "door-7");
    let password = password.as_str();
    let listed = f.call(
        "GET",
        &format!("/v1/accounts/{acme}/sensors"),
        Some("alice"),
        None,
    );
    assert!(
        !listed.resp.text().contains(password),
        "the password is shown only once"
    );

    let (mut sensor, code) = f.mqtt_login("door-7", password);
    assert_eq!(code, Some(0), "the sensor logs in with its new password");
    sensor.subscribe(&[("commands/sensor/door-7", 1)]);
    let push = f.call(
        "PUT",
        "/v1/sensors/door-7/config",
        Some("alice"),
        Some(json!({ "threshold_cm": 80, "reporting_interval_min": 5,
                     "status_interval_min": 60, "event_threshold": 10 })),
    );
    assert_eq!(push.status, 200, "{push:?}");
    assert_eq!(
        push.body,
        json!({ "configuration_id": 1, "acknowledged": false })
    );
    let got = sensor.expect("the configuration", |p| matches!(p, Packet::Publish(_)));
    let Packet::Publish(p) = got else {
        unreachable!()
    };
    assert_eq!(p.topic, "commands/sensor/door-7");
    assert_eq!(p.payload, [0, 80, 0, 5, 0, 60, 0, 10, 0, 0, 0, 1]);
    if p.qos > 0 {
        sensor.send(&common::mqtt::puback(p.pid));
    }
    sensor.publish("sensors/door-7/status", &status_payload(1), 1, false);
    assert!(
        eventually(WAIT, || {
            let h = f.call("GET", "/v1/sensors/door-7", Some("alice"), None);
            h.body["configuration"] == json!({ "id": 1, "acknowledged": true })
        }),
        "the status acknowledges configuration 1"
    );
    let health = f.call("GET", "/v1/sensors/door-7", Some("alice"), None);
    assert_eq!(health.body["online"], true, "{health:?}");
    let stranger = f.call("GET", "/v1/sensors/door-7", Some("mallory"), None);
    assert_eq!(stranger.status, 403);

    let gone = f.call("DELETE", "/v1/sensors/door-7", Some("alice"), None);
    assert_eq!(gone.status, 204);
    assert!(
        sensor.closed_within(Duration::from_secs(2)),
        "a deleted sensor is cut off at once"
    );
    let (_, code) = f.mqtt_login("door-7", password);
    assert_ne!(code, Some(0), "a deleted sensor logs in no more");
    let read = f.call("GET", "/v1/sensors/door-7", Some("alice"), None);
    assert_eq!(read.status, 404);
}

#[test]
fn a_display_token_sees_its_hives_until_revoked() {
    let f = fixture(2, "5s");
    let acme = f.account("Acme", "alice");
    let hive = f.hive(acme, "alice");
    let other = f.hive(acme, "alice");
    let made = f.call(
        "POST",
        &format!("/v1/accounts/{acme}/tokens"),
        Some("alice"),
        Some(json!({ "name": "bar screen", "hive_ids": [hive] })),
    );
    assert_eq!(made.status, 201, "{made:?}");
    let user = made.body["mqtt_username"].as_str().unwrap().to_string();
    let password = made.body["mqtt_password"].as_str().unwrap().to_string();
    let (mut display, code) = f.mqtt_login(&user, &password);
    assert_eq!(code, Some(0));
    let mine = format!("hives/{hive}/occupancy");
    let theirs = format!("hives/{other}/occupancy");
    assert_eq!(display.subscribe(&[(&mine, 0), (&theirs, 0)]), [0, 0x80]);
    let id = made.body["id"].as_i64().unwrap();
    let revoked = f.call("DELETE", &format!("/v1/tokens/{id}"), Some("alice"), None);
    assert_eq!(revoked.status, 204);
    assert!(
        display.closed_within(Duration::from_secs(2)),
        "a revoked token is cut off at once"
    );
    let (_, code) = f.mqtt_login(&user, &password);
    assert_ne!(code, Some(0));
}

/// Holds an exclusive lock on the sensor table for `secs` from a psql of its own.
fn lock_sensors(db: &TestDb, secs: u32) -> std::process::Child {
    std::process::Command::new("psql")
        .args(["-q", "-d", &db.url, "-c"])
        .arg(format!(
            "BEGIN; LOCK TABLE sensor IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep({secs}); COMMIT;"
        ))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql runs")
}

fn wait_locked(db: &TestDb) {
    assert!(
        eventually(WAIT, || {
            db.value("SELECT count(*) FROM pg_locks WHERE relation = 'sensor'::regclass AND mode = 'AccessExclusiveLock' AND granted")
                .as_deref()
                == Some("1")
        }),
        "the lock is held"
    );
}

#[test]
fn a_slow_database_answers_503_in_time_and_the_worker_serves_meanwhile() {
    let f = fixture(1, "1s");
    let acme = f.account("Acme", "alice");
    let mut lock = lock_sensors(&f.db, 4);
    wait_locked(&f.db);
    let t = token("alice");
    let mut s = common::connect(f.http);
    let started = Instant::now();
    s.write_all(&request("GET", "/v1/sensors/door-1", Some(&t), None))
        .unwrap();
    // The worker answers others while that request waits.
    std::thread::sleep(Duration::from_millis(200));
    let health = common::get(f.http, "/health");
    assert_eq!(health.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "served while the other waited"
    );
    let mut buf = Vec::new();
    let a = answer(common::read_response(&mut s, &mut buf, false).expect("an answer"));
    let took = started.elapsed();
    assert_eq!((a.status, a.code()), (503, "unavailable"), "{a:?}");
    assert!(a.resp.header("Retry-After").is_some());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "answered at the deadline: {took:?}"
    );
    assert!(common::still_open(&mut s, Duration::from_millis(50)));
    let _ = lock.wait();
    let after = f.call(
        "GET",
        &format!("/v1/accounts/{acme}/sensors"),
        Some("alice"),
        None,
    );
    assert_eq!(after.status, 200, "the pool recovered: {after:?}");
}

#[test]
fn a_client_that_leaves_while_its_request_waits_is_let_go() {
    let f = fixture(1, "5s");
    let _ = f.account("Acme", "alice");
    let mut lock = lock_sensors(&f.db, 3);
    wait_locked(&f.db);
    let t = token("alice");
    let mut s = common::connect(f.http);
    s.write_all(&request("GET", "/v1/sensors/door-1", Some(&t), None))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.shutdown(Shutdown::Write).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "closed when the client left, not at the deadline"
    );
    assert!(rest.is_empty(), "nothing answered: {rest:?}");
    assert!(
        eventually(WAIT, || f
            .server
            .error_log()
            .contains("prematurely closed the connection")),
        "{}",
        f.server.error_log()
    );
    let _ = lock.wait();
}

#[test]
fn pages_neither_repeat_nor_skip_while_hives_are_added() {
    let f = fixture(2, "5s");
    let acme = f.account("Acme", "alice");
    let before: Vec<i64> = (0..7).map(|_| f.hive(acme, "alice")).collect();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        let target = match &cursor {
            Some(c) => format!("/v1/accounts/{acme}/hives?limit=3&cursor={c}"),
            None => format!("/v1/accounts/{acme}/hives?limit=3"),
        };
        let a = f.call("GET", &target, Some("alice"), None);
        assert_eq!(a.status, 200, "{a:?}");
        seen.extend(
            a.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|h| h["id"].as_i64().expect("an id")),
        );
        // Someone adds hives while the list is read.
        if page < 2 {
            f.hive(acme, "alice");
        }
        match a.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no hive twice: {seen:?}");
    for id in &before {
        assert!(seen.contains(id), "hive {id} skipped: {seen:?}");
    }
    let bad = f.call(
        "GET",
        &format!("/v1/accounts/{acme}/hives?cursor=not-a-cursor!"),
        Some("alice"),
        None,
    );
    assert_eq!(
        (bad.status, bad.body["error"]["field"].as_str()),
        (400, Some("cursor"))
    );
}

#[test]
fn reads_are_cached_per_worker_for_micro_ttl_and_a_write_there_empties_them() {
    let f = fixture_with(1, "5s", "2s");
    let acme = f.account("Acme", "alice");
    let hive = f.hive(acme, "alice");
    f.sensor(acme, hive, "door-9");
    let name = |f: &Fixture, who: &str| {
        let a = f.call("GET", "/v1/sensors/door-9", Some(who), None);
        (a.status, a.body["name"].clone())
    };
    assert_eq!(name(&f, "alice"), (200, Value::Null));
    f.db.query("UPDATE sensor SET name = 'by SQL' WHERE device_id = 'door-9'");
    assert_eq!(
        name(&f, "alice"),
        (200, Value::Null),
        "answered from the cache within micro_ttl"
    );
    assert_eq!(
        name(&f, "mallory").0,
        403,
        "the cache never answers another caller"
    );
    let patch = f.call(
        "PATCH",
        "/v1/sensors/door-9",
        Some("alice"),
        Some(json!({ "name": "front door" })),
    );
    assert_eq!(patch.status, 200, "{patch:?}");
    assert_eq!(
        name(&f, "alice"),
        (200, json!("front door")),
        "a write on this worker is read back at once"
    );
    f.db.query("UPDATE sensor SET name = 'by SQL' WHERE device_id = 'door-9'");
    assert!(
        eventually(Duration::from_secs(4), || name(&f, "alice")
            == (200, json!("by SQL"))),
        "the cached read expires"
    );
}
