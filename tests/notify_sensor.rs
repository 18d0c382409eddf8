//! Threshold notifications driven by a real sensor (issue 12): the real binary (two workers,
//! MQTT with sensor logins, the API at `/v1/`, a real PostgreSQL), an account, a hive and a
//! sensor made over HTTP, rules set over HTTP by signed-in users, and every change of the
//! occupancy coming from a QoS 1 counter report whose PUBACK was awaited. The inbox, read over
//! HTTP, gets one message per crossing, none for more reports on the same side, none for a dip
//! back inside the hysteresis band, none while the user's quiet hours (in their own time zone)
//! cover now, and a crossing in quiet hours disarms the rule all the same; messages are marked
//! read one by one and the unread list follows; rules near 0 % and 100 % are armed again where a
//! count can reach (migration 0016). Run through
//! `scripts/with-postgres cargo test --test notify_sensor`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{Timelike, Utc};
use serde_json::{json, Value};

use bizzy::modules::auth::mint::{Claims, Minter};
use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};
use common::mqtt::{connect, Client, Connect, Packet, Publish, WAIT};
use common::pg::TestDb;
use common::{basic_conf, eventually, two_free_ports, Server};

const KEY: &str = include_str!("../src/modules/auth/testdata/key.pem");
const PROJECT: &str = "bizzy-test";
/// The platform admin of the configuration.
const BOSS: &str = "boss";
/// How long an effect may take to show.
const WITHIN: Duration = Duration::from_secs(10);
/// The hive's capacity: one visitor is 5 points.
const CAPACITY: u16 = 20;

/// bizzy (two workers, the API at `/v1/`, MQTT refusing anonymous clients, `[auth]` with the
/// test certificate) on a migrated database of its own. No micro-cache: a read after a PUBACK
/// sees what the report committed, so that "nothing more was raised" is checked, not assumed.
struct Fixture {
    db: TestDb,
    server: Server,
    http: SocketAddr,
    mqtt: SocketAddr,
}

fn fixture() -> Fixture {
    let db = TestDb::new();
    migrate_with(&db.url, MIGRATIONS).expect("the schema applies");
    let (http, mqtt) = two_free_ports();
    let location = "[[http.server.location]]\nprefix = \"/v1/\"\nhandler = \"api\"\n";
    let conf = format!(
        "{}\n[mqtt]\nlisten = [\"127.0.0.1:{mqtt}\"]\nallow_anonymous = false\n\n\
         [database]\nurl = \"{}\"\nmigrate_on_start = false\nquery_timeout = \"5s\"\n\n\
         [auth]\nfirebase_project_id = \"{PROJECT}\"\n\
         certificates = \"conf/firebase-certs.json\"\nadmin_uids = [\"{BOSS}\"]\n\n\
         [cache]\nmicro_ttl = \"0s\"\n",
        basic_conf(http, "", "", location),
        db.url
    );
    assert!(conf.contains("worker_processes = 2"), "two workers: {conf}");
    let (server, mqtt) = common::launch_with_test_certs(Server::prepare(http, &conf), mqtt);
    Fixture {
        db,
        server,
        http: ([127, 0, 0, 1], http).into(),
        mqtt,
    }
}

/// A Firebase ID token for `uid`, signed with the test key, valid for an hour.
fn token(uid: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let minter = Minter::from_pem(KEY, "test").expect("the test key loads");
    minter.mint(&Claims {
        project: PROJECT,
        uid,
        iat: now - 10,
        exp: now + 3600,
    })
}

impl Fixture {
    /// One call, by `uid` when given: the status and the JSON body (null when empty).
    fn call(
        &self,
        method: &str,
        path: &str,
        uid: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut raw =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        if let Some(uid) = uid {
            raw.push_str(&format!("Authorization: Bearer {}\r\n", token(uid)));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        if method != "GET" {
            raw.push_str("Content-Type: application/json\r\n");
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        raw.push_str(&body);
        let resp = common::send(self.http, raw.as_bytes());
        let v = if resp.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&resp.body)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", resp.text()))
        };
        (resp.status, v)
    }

    /// A call that must answer `status`: its body.
    fn ok(&self, method: &str, path: &str, uid: &str, body: Option<Value>, status: u16) -> Value {
        let (got, v) = self.call(method, path, Some(uid), body);
        assert_eq!(got, status, "{method} {path} by {uid}: {v}");
        v
    }

    /// An account administered by `admin`, a hive of [`CAPACITY`] with no daily reset (the reset
    /// would disarm the rules and move the count), and the sensor `device` on it: the hive id
    /// and the sensor's MQTT password.
    fn venue(&self, admin: &str, device: &str) -> (i64, String) {
        let account = self.ok(
            "POST",
            "/v1/accounts",
            BOSS,
            Some(json!({"name": "Acme"})),
            201,
        )["id"]
            .as_i64()
            .expect("an account id");
        let admins = format!("/v1/accounts/{account}/admins/{admin}");
        self.ok("PUT", &admins, BOSS, None, 204);
        let hive = json!({
            "name": "The Hive",
            "type": "bar",
            "address": {"street": "Str. Lipscani 1", "city": "Bucharest", "zip": "030031",
                        "country": "RO", "latitude": 44.43, "longitude": 26.10},
            "time_zone": "Europe/Bucharest",
            "capacity": CAPACITY,
            "reset_time": null,
        });
        let hives = format!("/v1/accounts/{account}/hives");
        let hive = self.ok("POST", &hives, admin, Some(hive), 201)["id"]
            .as_i64()
            .expect("a hive id");
        let sensors = format!("/v1/accounts/{account}/sensors");
        let body = json!({"hive_id": hive, "device_id": device});
        let reg = self.ok("POST", &sensors, admin, Some(body), 201);
        let password = reg["mqtt_password"].as_str().expect("the password, once");
        (hive, password.to_string())
    }

    /// `uid`'s rule on `hive`: its id.
    fn rule(&self, uid: &str, hive: i64, kind: &str, percent: u16) -> i64 {
        let body = json!({"hive_id": hive, "kind": kind, "threshold_percent": percent});
        let v = self.ok("POST", "/v1/me/notifications", uid, Some(body), 201);
        v["id"].as_i64().expect("a rule id")
    }

    /// `uid`'s rule `id` as `GET /v1/me/notifications` shows it.
    fn rule_of(&self, uid: &str, id: i64) -> Value {
        let v = self.ok("GET", "/v1/me/notifications", uid, None, 200);
        let items = v["items"].as_array().expect("a list");
        let rule = items.iter().find(|r| r["id"] == id);
        rule.unwrap_or_else(|| panic!("rule {id} in {v}")).clone()
    }

    /// `uid`'s inbox, newest first (only the unread messages when `unread`).
    fn inbox(&self, uid: &str, unread: bool) -> Vec<Value> {
        let path = format!("/v1/me/inbox?unread={unread}&limit=100");
        let v = self.ok("GET", &path, uid, None, 200);
        assert_eq!(v["next_cursor"], Value::Null, "one page: {v}");
        v["items"].as_array().expect("a list").clone()
    }

    /// Waits until `uid`'s inbox holds exactly the messages `want` (contents, newest first).
    /// A message is raised in the transaction that commits the report, before its PUBACK: after
    /// the PUBACK, a missing message is not late, and one more would already show.
    fn expect_inbox(&self, uid: &str, want: &[&str], step: &str) {
        let contents = || -> Vec<String> {
            self.inbox(uid, false)
                .iter()
                .map(|m| m["content"].as_str().expect("a content").to_string())
                .collect()
        };
        assert!(
            eventually(WITHIN, || contents() == want),
            "{step}: {uid}'s inbox is {:?}, not {want:?}\n{}",
            contents(),
            self.server.error_log()
        );
        for m in self.inbox(uid, false) {
            assert_eq!(m["type"], "occupancy", "{m}");
            assert_eq!(m["read_at"], Value::Null, "{m}");
        }
    }

    /// The rules and the hive's status as PostgreSQL holds them, for a failure's message.
    fn state(&self) -> String {
        let rules = self.db.query(
            "SELECT d.id, d.kind, d.threshold_percent, d.enabled, d.armed, d.last_fired_at
             FROM user_notification_def d ORDER BY d.id",
        );
        let status = self
            .db
            .query("SELECT hive_id, occupancy, last_reset_at, updated_at FROM hive_status");
        format!("rules {rules:?}\nhive_status {status:?}")
    }

    /// Waits until the public occupancy of `hive` is `n`.
    fn expect_occupancy(&self, hive: i64, n: u16) {
        let path = format!("/v1/hives/{hive}/occupancy");
        let seen = eventually(WITHIN, || {
            self.call("GET", &path, None, None).1["occupancy"] == n
        });
        assert!(
            seen,
            "occupancy {n}: {}",
            self.call("GET", &path, None, None).1
        );
    }
}

/// The sensor: an MQTT session logged in with its password, and the totals it has reported.
struct Sensor {
    client: Client,
    topic: String,
    total_in: u16,
    total_out: u16,
    occupancy: u16,
}

impl Sensor {
    /// Logs in as `device` and sends the first report, which only sets the baseline.
    fn start(mqtt: SocketAddr, device: &str, password: &str) -> Sensor {
        let (client, _) = connect(mqtt, &Connect::new(device).login(device, password));
        let mut s = Sensor {
            client,
            topic: format!("sensors/{device}/counter"),
            total_in: 1000,
            total_out: 1000,
            occupancy: 0,
        };
        s.report();
        s
    }

    /// A legacy counter report (PROTOCOL.md section 1) of the totals, with no clock (the
    /// receive time is used), published with QoS 1; returns once it is acknowledged, that is
    /// committed with the occupancy it moved.
    fn report(&mut self) {
        let mut b = vec![0, 5, 0, 3];
        b.extend_from_slice(&self.total_in.to_be_bytes());
        b.extend_from_slice(&self.total_out.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        let pid = self.client.next_pid();
        let publish = Publish::new(&self.topic, &b, 1).pid(pid);
        self.client.send(&publish.encode());
        assert_eq!(self.client.recv(WAIT), Some(Packet::Puback(pid)), "PUBACK");
    }

    /// Reports the entries or exits that bring the count to `n`.
    fn to(&mut self, n: u16) {
        if n > self.occupancy {
            self.total_in += n - self.occupancy;
        } else {
            self.total_out += self.occupancy - n;
        }
        self.occupancy = n;
        self.report();
    }

    /// Reports one entry and one exit: a report that leaves the count as it is.
    fn churn(&mut self) {
        self.total_in += 1;
        self.total_out += 1;
        self.report();
    }
}

/// "HH:MM" of now plus `minutes` in the time zone `tz`.
fn local(tz: chrono_tz::Tz, minutes: i64) -> String {
    let t = chrono::DateTime::<Utc>::from(SystemTime::now()).with_timezone(&tz)
        + chrono::Duration::minutes(minutes);
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// Quiet hours from an hour ago to an hour ahead in `tz`, by `PATCH /v1/me`, with the user's
/// time zone set to `zone`.
fn quiet_around_now(f: &Fixture, uid: &str, zone: &str, tz: chrono_tz::Tz) {
    let quiet = json!({"from": local(tz, -60), "to": local(tz, 60)});
    let body = json!({"time_zone": zone, "quiet_hours": quiet});
    let me = f.ok("PATCH", "/v1/me", uid, Some(body), 200);
    assert_eq!(me["time_zone"], zone);
    assert_eq!(me["quiet_hours"], quiet);
}

#[test]
fn sensor_reports_raise_one_message_per_crossing_with_hysteresis_and_quiet_hours() {
    let f = fixture();
    let (hive, password) = f.venue("alice", "door-1");
    // ana has no quiet hours; ben's cover now where he lives; cai's cover now in UTC but not in
    // Tokyo, where he lives: only the user's own clock counts.
    quiet_around_now(&f, "ben", "Asia/Tokyo", chrono_tz::Asia::Tokyo);
    quiet_around_now(&f, "cai", "Asia/Tokyo", chrono_tz::UTC);
    let mut sensor = Sensor::start(f.mqtt, "door-1", &password);
    f.expect_occupancy(hive, 0);

    // "Below 30 %" of an empty hive holds already: the rules wait for the next crossing.
    let ana = f.rule("ana", hive, "below", 30);
    let ben = f.rule("ben", hive, "below", 30);
    let cai = f.rule("cai", hive, "below", 30);
    assert_eq!(f.rule_of("ana", ana)["armed"], false);
    let first = "The Hive is at 25% of its capacity, below your 30%.";

    sensor.to(10);
    f.expect_occupancy(hive, 10);
    for uid in ["ana", "ben", "cai"] {
        f.expect_inbox(uid, &[], "50 %: armed, nothing to say");
    }
    assert_eq!(f.rule_of("ana", ana)["armed"], true, "{}", f.state());

    sensor.to(5);
    f.expect_occupancy(hive, 5);
    f.expect_inbox("ana", &[first], "down to 25 %");
    f.expect_inbox("cai", &[first], "down to 25 %, outside cai's quiet hours");
    f.expect_inbox("ben", &[], "down to 25 % in ben's quiet hours");
    let quiet = f.rule_of("ben", ben);
    assert_eq!(quiet["armed"], false, "a quiet crossing disarms: {quiet}");
    assert_eq!(
        quiet["last_fired_at"],
        Value::Null,
        "and fires nothing: {quiet}"
    );
    assert!(f.rule_of("ana", ana)["last_fired_at"].is_string());

    // More reports on the same side: nothing more.
    for step in [4, 3] {
        sensor.to(step);
        f.expect_occupancy(hive, step);
        f.expect_inbox("ana", &[first], "more reports below");
    }
    sensor.churn();
    f.expect_inbox("ana", &[first], "a report that changes nothing");

    // Up to 30 % and down again: inside the band, the rule stays disarmed.
    sensor.to(6);
    f.expect_occupancy(hive, 6);
    f.expect_inbox("ana", &[first], "back to 30 %, inside the band");
    sensor.to(5);
    f.expect_occupancy(hive, 5);
    f.expect_inbox("ana", &[first], "below again without leaving the band");
    assert_eq!(f.rule_of("ana", ana)["armed"], false);

    // ben's quiet hours end: the crossing he slept through is not raised late.
    let me = f.ok(
        "PATCH",
        "/v1/me",
        "ben",
        Some(json!({"quiet_hours": null})),
        200,
    );
    assert_eq!(me["quiet_hours"], Value::Null);
    sensor.to(4);
    f.expect_occupancy(hive, 4);
    f.expect_inbox("ben", &[], "still below after the quiet hours");

    // 35 %, 5 points past the threshold, arms the rules again; the next crossing is raised.
    sensor.to(7);
    f.expect_occupancy(hive, 7);
    for uid in ["ana", "cai"] {
        f.expect_inbox(uid, &[first], "35 %: armed again");
    }
    f.expect_inbox("ben", &[], "35 %: armed again");
    assert_eq!(f.rule_of("ben", ben)["armed"], true);
    sensor.to(5);
    f.expect_occupancy(hive, 5);
    for uid in ["ana", "cai"] {
        f.expect_inbox(uid, &[first, first], "the second crossing");
    }
    f.expect_inbox("ben", &[first], "ben's first crossing out of quiet hours");
    assert_eq!(f.rule_of("cai", cai)["armed"], false);

    read_one_by_one(&f);
}

/// ana's two messages marked read, oldest first: the unread list follows, marking again changes
/// nothing, and no one marks a message that is not theirs.
fn read_one_by_one(f: &Fixture) {
    let all = f.inbox("ana", false);
    let ids: Vec<i64> = all
        .iter()
        .map(|m| m["id"].as_i64().expect("an id"))
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] > ids[1], "newest first: {ids:?}");
    assert_eq!(f.inbox("ana", true).len(), 2);

    let read =
        |uid: &str, id: i64| f.call("POST", &format!("/v1/me/inbox/{id}/read"), Some(uid), None);
    assert_eq!(read("ana", ids[1]).0, 204);
    let unread = f.inbox("ana", true);
    assert_eq!(unread.len(), 1);
    assert_eq!(unread[0]["id"], ids[0]);
    let older = f.inbox("ana", false)[1].clone();
    assert!(older["read_at"].is_string(), "{older}");

    assert_eq!(read("ana", ids[1]).0, 204, "marking again");
    assert_eq!(f.inbox("ana", false)[1]["read_at"], older["read_at"]);
    let (status, v) = read("cai", ids[0]);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    assert_eq!(read("ana", ids[0] + 1000).0, 404);
    assert_eq!(
        f.inbox("ana", true).len(),
        1,
        "cai's attempt changed nothing"
    );

    assert_eq!(read("ana", ids[0]).0, 204);
    assert!(f.inbox("ana", true).is_empty());
    assert_eq!(
        f.inbox("ana", false).len(),
        2,
        "read messages stay in the inbox"
    );
    assert_eq!(f.inbox("cai", true).len(), 2, "cai's own are still unread");
}

/// Regression (issue 12): the hysteresis band ran past what a count can reach, so an "above"
/// rule under 5 % was never armed again once it fired (the count cannot go below 0 %), and a
/// "below" rule over 95 % was armed only past 100 %, beyond the capacity. The band now ends at
/// 0 % and at 100 %: an empty hive arms the first, a full one the second.
#[test]
fn rules_near_0_and_100_percent_are_armed_again_where_the_count_can_reach() {
    let f = fixture();
    let (hive, password) = f.venue("alice", "door-1");
    let mut sensor = Sensor::start(f.mqtt, "door-1", &password);
    f.expect_occupancy(hive, 0);
    let anyone = f.rule("ana", hive, "above", 2);
    let room = f.rule("bo", hive, "below", 98);
    assert_eq!(f.rule_of("ana", anyone)["armed"], true);
    assert_eq!(f.rule_of("bo", room)["armed"], false, "{}", f.state());
    let arrived = "The Hive is at 5% of its capacity, above your 2%.";

    sensor.to(1);
    f.expect_occupancy(hive, 1);
    f.expect_inbox("ana", &[arrived], "the first visitor");
    sensor.to(0);
    f.expect_occupancy(hive, 0);
    assert_eq!(f.rule_of("ana", anyone)["armed"], true, "{}", f.state());
    sensor.to(1);
    f.expect_occupancy(hive, 1);
    f.expect_inbox("ana", &[arrived, arrived], "the next first visitor");

    sensor.to(CAPACITY);
    f.expect_occupancy(hive, CAPACITY);
    assert_eq!(f.rule_of("bo", room)["armed"], true, "{}", f.state());
    sensor.to(CAPACITY - 1);
    f.expect_occupancy(hive, CAPACITY - 1);
    let space = "The Hive is at 95% of its capacity, below your 98%.";
    f.expect_inbox("bo", &[space], "a place free again");
}
