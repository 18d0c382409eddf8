//! The business API calls (`modules::api::route`) on a real, migrated PostgreSQL: each request
//! is routed as the HTTP side does, then run on a tokio current-thread runtime against a
//! database of its own. Every call's answer, each refusal (401, 403, 404, 405, 409, 400 with
//! its field, 413), the three roles, pagination under concurrent inserts, and configuration
//! ids. Run through `scripts/with-postgres cargo test --test api_calls`.

mod common;
use common::pg::TestDb;

use std::collections::HashSet;

use bizzy::modules::api::caller::Caller;
use bizzy::modules::api::route::route;
use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};
use bizzy::mqtt::auth::secret::verify;
use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls};

/// An answer: status, JSON body (null for none), and the field of a validation error.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    field: Option<String>,
}

fn caller(uid: &str, platform_admin: bool) -> Caller {
    Caller {
        uid: uid.into(),
        platform_admin,
    }
}

/// Routes and runs one call, as the HTTP side does.
async fn call(
    db: &Client,
    who: Option<&Caller>,
    method: &str,
    target: &str,
    body: &Value,
) -> Answer {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    let result = match route(method, path, query, &bytes, who) {
        Ok(c) => c.run(db).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(j) => Answer {
            status: j.status,
            body: if j.body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&j.body).expect("an answer is JSON")
            },
            field: None,
        },
        Err(e) => Answer {
            status: e.status,
            body: json!({ "code": e.code, "message": e.message }),
            field: e.field,
        },
    }
}

/// A migrated database and a runtime to run `test` on, with a client of its own.
fn with_db<F>(test: impl FnOnce(String, Client) -> F)
where
    F: std::future::Future<Output = ()>,
{
    let db = TestDb::new();
    migrate_with(&db.url, MIGRATIONS).expect("the schema applies");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = connect(&db.url).await;
        test(db.url.clone(), client).await;
    });
}

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connects");
    tokio::spawn(conn);
    client
}

fn hive_body(name: &str) -> Value {
    json!({
        "name": name,
        "type": "bar",
        "address": {"street": "Str. Lipscani 1", "city": "Bucharest", "zip": "030031",
                    "country": "RO", "latitude": 44.43, "longitude": 26.1},
        "time_zone": "Europe/Bucharest",
        "capacity": 120,
    })
}

/// The platform admin, an account "Acme" administered by `alice`, and one hive of it.
struct World {
    root: Caller,
    alice: Caller,
    bob: Caller,
    account: i64,
    hive: i64,
}

async fn world(db: &Client) -> World {
    let root = caller("root", true);
    let a = call(
        db,
        Some(&root),
        "POST",
        "/v1/accounts",
        &json!({"name": "Acme"}),
    )
    .await;
    assert_eq!(a.status, 201, "{a:?}");
    let account = a.body["id"].as_i64().unwrap();
    let put = call(
        db,
        Some(&root),
        "PUT",
        &format!("/v1/accounts/{account}/admins/alice"),
        &Value::Null,
    )
    .await;
    assert_eq!(put.status, 204, "{put:?}");
    let h = call(
        db,
        Some(&root),
        "POST",
        &format!("/v1/accounts/{account}/hives"),
        &hive_body("The Hive"),
    )
    .await;
    assert_eq!(h.status, 201, "{h:?}");
    World {
        root,
        alice: caller("alice", false),
        bob: caller("bob", false),
        account,
        hive: h.body["id"].as_i64().unwrap(),
    }
}

#[test]
fn accounts_and_their_admins() {
    with_db(|_, db| async move {
        let w = world(&db).await;
        let (root, alice, bob) = (Some(&w.root), Some(&w.alice), Some(&w.bob));
        let acc = format!("/v1/accounts/{}", w.account);
        let a = call(&db, alice, "GET", &acc, &Value::Null).await;
        assert_eq!(
            (a.status, &a.body),
            (200, &json!({"id": w.account, "name": "Acme"}))
        );
        assert_eq!(call(&db, bob, "GET", &acc, &Value::Null).await.status, 403);
        assert_eq!(call(&db, None, "GET", &acc, &Value::Null).await.status, 401);
        assert_eq!(
            call(&db, root, "GET", "/v1/accounts/999", &Value::Null)
                .await
                .status,
            404
        );
        assert_eq!(
            call(&db, root, "PATCH", &acc, &Value::Null).await.status,
            405
        );
        let other = call(&db, root, "POST", "/v1/accounts", &json!({"name": "Other"})).await;
        assert_eq!(other.status, 201);
        let b = call(&db, bob, "POST", "/v1/accounts", &json!({"name": "Mine"})).await;
        assert_eq!(b.status, 403);
        let bad = call(&db, root, "POST", "/v1/accounts", &json!({"nmae": "x"})).await;
        assert_eq!((bad.status, bad.field.as_deref()), (400, Some("nmae")));
        let bad = call(&db, root, "POST", "/v1/accounts", &json!({"name": 7})).await;
        assert_eq!((bad.status, bad.field.as_deref()), (400, Some("name")));
        let bad = call(&db, root, "POST", "/v1/accounts", &json!({})).await;
        assert_eq!((bad.status, bad.field.as_deref()), (400, Some("name")));
        let big = call(
            &db,
            root,
            "POST",
            "/v1/accounts",
            &json!({"name": "x".repeat(70_000)}),
        )
        .await;
        assert_eq!(big.status, 413);

        let all = call(&db, root, "GET", "/v1/accounts", &Value::Null).await;
        assert_eq!(all.body["items"].as_array().unwrap().len(), 2);
        let mine = call(&db, alice, "GET", "/v1/accounts", &Value::Null).await;
        assert_eq!(
            mine.body,
            json!({"items": [{"id": w.account, "name": "Acme"}], "next_cursor": null})
        );
        let none = call(&db, bob, "GET", "/v1/accounts", &Value::Null).await;
        assert_eq!(none.body["items"], json!([]));

        let admin = format!("{acc}/admins/alice");
        assert_eq!(
            call(
                &db,
                alice,
                "PUT",
                &format!("{acc}/admins/bob"),
                &Value::Null
            )
            .await
            .status,
            403
        );
        assert_eq!(
            call(&db, root, "PUT", &admin, &Value::Null).await.status,
            204,
            "naming twice is fine"
        );
        assert_eq!(
            call(&db, root, "PUT", "/v1/accounts/999/admins/x", &Value::Null)
                .await
                .status,
            404
        );
        assert_eq!(
            call(&db, root, "DELETE", &admin, &Value::Null).await.status,
            204
        );
        assert_eq!(
            call(&db, root, "DELETE", &admin, &Value::Null).await.status,
            404
        );
        assert_eq!(
            call(&db, alice, "GET", &acc, &Value::Null).await.status,
            403
        );
        let long = format!("{acc}/admins/{}", "u".repeat(129));
        assert_eq!(
            call(&db, root, "PUT", &long, &Value::Null)
                .await
                .field
                .as_deref(),
            Some("uid")
        );
    });
}

#[test]
fn hives_are_created_read_edited_and_deleted() {
    with_db(|_, db| async move {
        let w = world(&db).await;
        let (alice, bob) = (Some(&w.alice), Some(&w.bob));
        let hives = format!("/v1/accounts/{}/hives", w.account);
        let mut body = hive_body("Night Bar");
        body["reset_time"] = Value::Null;
        let h = call(&db, alice, "POST", &hives, &body).await;
        assert_eq!(h.status, 201, "{h:?}");
        let id = h.body["id"].as_i64().unwrap();
        let expected = json!({
            "id": id, "account_id": w.account, "name": "Night Bar", "type": "bar",
            "address": {"street": "Str. Lipscani 1", "city": "Bucharest", "zip": "030031",
                        "country": "RO", "latitude": 44.43, "longitude": 26.1},
            "time_zone": "Europe/Bucharest", "capacity": 120, "reset_time": null,
        });
        assert_eq!(h.body, expected);
        let first = call(
            &db,
            None,
            "GET",
            &format!("/v1/hives/{}", w.hive),
            &Value::Null,
        )
        .await;
        assert_eq!(first.body["reset_time"], "04:00", "omitted: 04:00");

        for (key, value, field) in [
            ("type", json!("casino"), "type"),
            ("time_zone", json!("Mars/Base"), "time_zone"),
            ("reset_time", json!("24:00"), "reset_time"),
            ("capacity", json!(0), "capacity"),
            ("address", json!({"city": "X"}), "address.street"),
            ("extra", json!(1), "extra"),
        ] {
            let mut b = hive_body("Bad");
            b[key] = value;
            let a = call(&db, alice, "POST", &hives, &b).await;
            assert_eq!(
                (a.status, a.field.as_deref()),
                (400, Some(field)),
                "{key}: {a:?}"
            );
        }
        assert_eq!(
            call(&db, bob, "POST", &hives, &hive_body("X")).await.status,
            403
        );
        assert_eq!(
            call(&db, None, "POST", &hives, &hive_body("X"))
                .await
                .status,
            401
        );

        let path = format!("/v1/hives/{id}");
        let patch = json!({"name": "Day Bar", "reset_time": "05:30", "capacity": null,
                           "type": "cafe", "address": {"city": "Cluj"}});
        let p = call(&db, alice, "PATCH", &path, &patch).await;
        assert_eq!(p.status, 200, "{p:?}");
        let mut after = expected.clone();
        after["name"] = json!("Day Bar");
        after["reset_time"] = json!("05:30");
        after["capacity"] = Value::Null;
        after["type"] = json!("cafe");
        after["address"]["city"] = json!("Cluj");
        assert_eq!(p.body, after);
        assert_eq!(
            call(&db, None, "GET", &path, &Value::Null).await.body,
            after
        );
        let p = call(&db, alice, "PATCH", &path, &json!({"reset_time": null})).await;
        assert_eq!(p.body["reset_time"], Value::Null);
        let p = call(&db, alice, "PATCH", &path, &json!({"name": "Same"})).await;
        assert_eq!(p.body["reset_time"], Value::Null, "omitted: left as it is");
        let bad = call(&db, alice, "PATCH", &path, &json!({"type": "casino"})).await;
        assert_eq!((bad.status, bad.field.as_deref()), (400, Some("type")));
        assert_eq!(
            call(&db, bob, "PATCH", &path, &json!({"name": "Mine"}))
                .await
                .status,
            403
        );
        assert_eq!(
            call(&db, bob, "DELETE", &path, &Value::Null).await.status,
            403
        );

        let list = call(&db, alice, "GET", &hives, &Value::Null).await;
        let ids: Vec<i64> = list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, vec![w.hive, id]);

        let occ = call(
            &db,
            None,
            "GET",
            &format!("/v1/hives/{}/occupancy", w.hive),
            &Value::Null,
        )
        .await;
        assert_eq!(occ.status, 200);
        assert_eq!(occ.body["hive_id"], w.hive);
        assert_eq!(
            (occ.body["occupancy"].clone(), occ.body["capacity"].clone()),
            (json!(0), json!(120))
        );
        assert_eq!(occ.body["percent"], 0.0);
        assert_eq!(
            (occ.body["stale"].clone(), occ.body["degraded"].clone()),
            (json!(false), json!(false))
        );
        assert!(occ.body["updated_at"].as_str().unwrap().ends_with('Z'));

        let sensor = call(
            &db,
            alice,
            "POST",
            &format!("/v1/accounts/{}/sensors", w.account),
            &json!({"hive_id": id, "device_id": "door-9"}),
        )
        .await;
        assert_eq!(sensor.status, 201);
        assert_eq!(
            call(&db, alice, "DELETE", &path, &Value::Null).await.status,
            204
        );
        for (m, p) in [
            ("GET", path.clone()),
            ("GET", format!("{path}/occupancy")),
            ("DELETE", path.clone()),
            ("PATCH", path.clone()),
            ("GET", "/v1/sensors/door-9".into()),
        ] {
            let a = call(&db, alice, m, &p, &json!({})).await;
            assert_eq!(a.status, 404, "{m} {p}: {a:?}");
        }
    });
}

#[test]
fn sensors_are_registered_read_edited_and_deleted() {
    with_db(|_, db| async move {
        let w = world(&db).await;
        let (alice, bob) = (Some(&w.alice), Some(&w.bob));
        let sensors = format!("/v1/accounts/{}/sensors", w.account);
        let s = call(&db, alice, "POST", &sensors, &json!({"hive_id": w.hive})).await;
        assert_eq!(s.status, 201, "{s:?}");
        let dev = s.body["device_id"].as_str().unwrap().to_string();
        assert!(dev.starts_with("s-") && dev.len() == 18, "{dev}");
        assert_eq!(s.body["mqtt_username"], dev.as_str());
        assert_eq!(
            (s.body["hive_id"].clone(), s.body["direction"].clone()),
            (json!(w.hive), json!("normal"))
        );
        let password = s.body["mqtt_password"].as_str().unwrap();
        assert!(password.len() >= 22, "at least 128 bits");
        let hash: String = db
            .query_one(
                "SELECT secret_hash FROM sensor WHERE device_id = $1",
                &[&dev],
            )
            .await
            .unwrap()
            .get(0);
        assert!(verify(&hash, password.as_bytes()) && !hash.contains(password));

        let body = json!({"hive_id": w.hive, "device_id": "door-1", "direction": "reversed",
                          "counter_modulus": 65523, "name": "Front door"});
        let s = call(&db, alice, "POST", &sensors, &body).await;
        assert_eq!(s.status, 201, "{s:?}");
        assert_eq!(s.body["counter_modulus"], 65523);
        assert_eq!(call(&db, alice, "POST", &sensors, &body).await.status, 409);
        let other = call(
            &db,
            Some(&w.root),
            "POST",
            "/v1/accounts",
            &json!({"name": "Other"}),
        )
        .await;
        let theirs = call(
            &db,
            Some(&w.root),
            "POST",
            &format!("/v1/accounts/{}/hives", other.body["id"]),
            &hive_body("Theirs"),
        )
        .await;
        let bad = call(
            &db,
            alice,
            "POST",
            &sensors,
            &json!({"hive_id": theirs.body["id"]}),
        )
        .await;
        assert_eq!((bad.status, bad.field.as_deref()), (400, Some("hive_id")));
        let bad = call(
            &db,
            alice,
            "POST",
            &sensors,
            &json!({"hive_id": w.hive, "device_id": "a b"}),
        )
        .await;
        assert_eq!((bad.status, bad.field.as_deref()), (400, Some("device_id")));
        assert_eq!(
            call(&db, bob, "POST", &sensors, &json!({"hive_id": w.hive}))
                .await
                .status,
            403
        );

        let h = call(&db, alice, "GET", "/v1/sensors/door-1", &Value::Null).await;
        assert_eq!(h.status, 200, "{h:?}");
        let keys: HashSet<&str> = h
            .body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for k in [
            "device_id",
            "hive_id",
            "online",
            "last_seen",
            "firmware_version",
            "battery_mv",
            "gprs_signal",
            "sensor_state",
            "discarded_events",
            "missed_messages",
            "restarts",
            "clock_skew_s",
            "configuration",
            "direction",
            "counter_modulus",
            "counting_mode",
            "name",
        ] {
            assert!(keys.contains(k), "{k} in {}", h.body);
        }
        assert_eq!(h.body["online"], false);
        assert_eq!(
            h.body["configuration"],
            json!({"id": 0, "acknowledged": true})
        );
        assert_eq!(
            call(&db, bob, "GET", "/v1/sensors/door-1", &Value::Null)
                .await
                .status,
            403
        );
        assert_eq!(
            call(&db, alice, "GET", "/v1/sensors/nobody", &Value::Null)
                .await
                .status,
            404
        );

        let p = call(
            &db,
            alice,
            "PATCH",
            "/v1/sensors/door-1",
            &json!({"direction": "normal", "counting_mode": "event", "name": null}),
        )
        .await;
        assert_eq!(p.status, 200, "{p:?}");
        assert_eq!(
            (
                p.body["direction"].clone(),
                p.body["counting_mode"].clone(),
                p.body["name"].clone()
            ),
            (json!("normal"), json!("event"), Value::Null)
        );
        let bad = call(
            &db,
            alice,
            "PATCH",
            "/v1/sensors/door-1",
            &json!({"hive_id": theirs.body["id"]}),
        )
        .await;
        assert_eq!((bad.status, bad.field.as_deref()), (400, Some("hive_id")));

        let list = call(&db, alice, "GET", &sensors, &Value::Null).await;
        let items = list.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(|s| s.get("mqtt_password").is_none()));

        assert_eq!(
            call(&db, bob, "DELETE", "/v1/sensors/door-1", &Value::Null)
                .await
                .status,
            403
        );
        assert_eq!(
            call(&db, alice, "DELETE", "/v1/sensors/door-1", &Value::Null)
                .await
                .status,
            204
        );
        assert_eq!(
            call(&db, alice, "GET", "/v1/sensors/door-1", &Value::Null)
                .await
                .status,
            404
        );
        assert_eq!(
            call(&db, alice, "DELETE", "/v1/sensors/door-1", &Value::Null)
                .await
                .status,
            404
        );
        let again = call(&db, alice, "POST", &sensors, &body).await;
        assert_eq!(
            again.status, 201,
            "a deleted sensor's id may be registered again"
        );
    });
}

#[test]
fn configuration_ids_increase_from_1() {
    with_db(|url, db| async move {
        let w = world(&db).await;
        let alice = Some(&w.alice);
        let s = call(
            &db,
            alice,
            "POST",
            &format!("/v1/accounts/{}/sensors", w.account),
            &json!({"hive_id": w.hive, "device_id": "door-1"}),
        )
        .await;
        assert_eq!(s.status, 201);
        let conf = json!({"threshold_cm": 120, "reporting_interval_min": 5,
                          "status_interval_min": 60, "event_threshold": 3});
        for want in 1..=3 {
            let a = call(&db, alice, "PUT", "/v1/sensors/door-1/config", &conf).await;
            assert_eq!(
                (a.status, &a.body),
                (
                    200,
                    &json!({"configuration_id": want, "acknowledged": false})
                )
            );
        }
        let other = connect(&url).await;
        let (a, b) = tokio::join!(
            call(&db, alice, "PUT", "/v1/sensors/door-1/config", &conf),
            call(&other, alice, "PUT", "/v1/sensors/door-1/config", &conf),
        );
        let mut ids = [
            a.body["configuration_id"].as_i64(),
            b.body["configuration_id"].as_i64(),
        ];
        ids.sort();
        assert_eq!(ids, [Some(4), Some(5)], "{a:?} {b:?}");
        let h = call(&db, alice, "GET", "/v1/sensors/door-1", &Value::Null).await;
        assert_eq!(
            h.body["configuration"],
            json!({"id": 5, "acknowledged": false})
        );

        let mut bad = conf.clone();
        bad["reporting_interval_min"] = json!(1441);
        let a = call(&db, alice, "PUT", "/v1/sensors/door-1/config", &bad).await;
        assert_eq!(
            (a.status, a.field.as_deref()),
            (400, Some("reporting_interval_min"))
        );
        bad.as_object_mut()
            .unwrap()
            .remove("reporting_interval_min");
        let a = call(&db, alice, "PUT", "/v1/sensors/door-1/config", &bad).await;
        assert_eq!(
            (a.status, a.field.as_deref()),
            (400, Some("reporting_interval_min"))
        );
        assert_eq!(
            call(&db, Some(&w.bob), "PUT", "/v1/sensors/door-1/config", &conf)
                .await
                .status,
            403
        );
        assert_eq!(
            call(&db, alice, "PUT", "/v1/sensors/nobody/config", &conf)
                .await
                .status,
            404
        );
    });
}

#[test]
fn display_tokens_are_created_listed_and_revoked() {
    with_db(|_, db| async move {
        let w = world(&db).await;
        let (alice, bob) = (Some(&w.alice), Some(&w.bob));
        let tokens = format!("/v1/accounts/{}/tokens", w.account);
        let t = call(
            &db,
            alice,
            "POST",
            &tokens,
            &json!({"name": "Lobby", "hive_ids": [w.hive]}),
        )
        .await;
        assert_eq!(t.status, 201, "{t:?}");
        let id = t.body["id"].as_i64().unwrap();
        assert_eq!(t.body["mqtt_username"], format!("token:{id}"));
        assert_eq!(t.body["hive_ids"], json!([w.hive]));
        let password = t.body["mqtt_password"].as_str().unwrap();
        let hash: String = db
            .query_one("SELECT secret_hash FROM api_token WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        assert!(verify(&hash, password.as_bytes()));

        for (ids, field) in [
            (json!([]), "hive_ids"),
            (json!([w.hive, w.hive]), "hive_ids"),
            (json!([w.hive + 100]), "hive_ids"),
            (json!("x"), "hive_ids"),
        ] {
            let a = call(
                &db,
                alice,
                "POST",
                &tokens,
                &json!({"name": "Bad", "hive_ids": ids}),
            )
            .await;
            assert_eq!((a.status, a.field.as_deref()), (400, Some(field)), "{ids}");
        }
        assert_eq!(
            call(
                &db,
                bob,
                "POST",
                &tokens,
                &json!({"name": "B", "hive_ids": [w.hive]})
            )
            .await
            .status,
            403
        );
        let second = call(
            &db,
            alice,
            "POST",
            &tokens,
            &json!({"name": "Bar", "hive_ids": [w.hive]}),
        )
        .await;
        assert_eq!(second.status, 201);

        let path = format!("/v1/tokens/{id}");
        assert_eq!(
            call(&db, bob, "DELETE", &path, &Value::Null).await.status,
            403
        );
        assert_eq!(
            call(&db, alice, "GET", &path, &Value::Null).await.status,
            405
        );
        assert_eq!(
            call(&db, alice, "DELETE", &path, &Value::Null).await.status,
            204
        );
        assert_eq!(
            call(&db, alice, "DELETE", &path, &Value::Null).await.status,
            404
        );
        let list = call(&db, alice, "GET", &tokens, &Value::Null).await;
        let items = list.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["name"], "Bar");
        assert!(items[0].get("mqtt_password").is_none());
    });
}

#[test]
fn pages_stay_whole_while_rows_are_inserted() {
    with_db(|url, db| async move {
        let w = world(&db).await;
        let hives = format!("/v1/accounts/{}/hives", w.account);
        for i in 0..24 {
            assert_eq!(
                call(
                    &db,
                    Some(&w.alice),
                    "POST",
                    &hives,
                    &hive_body(&format!("H{i}"))
                )
                .await
                .status,
                201
            );
        }
        let before: Vec<i64> = db
            .query(
                "SELECT id FROM hive WHERE account_id = $1 ORDER BY id",
                &[&w.account],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let writer = connect(&url).await;
        let insert = async {
            for i in 0..30 {
                let a = call(
                    &writer,
                    Some(&w.alice),
                    "POST",
                    &hives,
                    &hive_body(&format!("N{i}")),
                )
                .await;
                assert_eq!(a.status, 201);
                tokio::task::yield_now().await;
            }
        };
        let read = async {
            let mut seen = Vec::new();
            let mut target = format!("{hives}?limit=4");
            loop {
                let page = call(&db, Some(&w.alice), "GET", &target, &Value::Null).await;
                assert_eq!(page.status, 200, "{page:?}");
                let items = page.body["items"].as_array().unwrap();
                assert!(items.len() <= 4);
                seen.extend(items.iter().map(|h| h["id"].as_i64().unwrap()));
                match page.body["next_cursor"].as_str() {
                    Some(c) => target = format!("{hives}?cursor={c}&limit=4"),
                    None => break seen,
                }
                tokio::task::yield_now().await;
            }
        };
        let ((), seen) = tokio::join!(insert, read);
        let unique: HashSet<i64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "no duplicate: {seen:?}");
        assert!(seen.windows(2).all(|p| p[0] < p[1]));
        for id in &before {
            assert!(unique.contains(id), "hive {id} missing: {seen:?}");
        }
        let bad = call(
            &db,
            Some(&w.alice),
            "GET",
            &format!("{hives}?limit=201"),
            &Value::Null,
        )
        .await;
        assert_eq!((bad.status, bad.field.as_deref()), (400, Some("limit")));
        let bad = call(
            &db,
            Some(&w.alice),
            "GET",
            &format!("{hives}?cursor=%%"),
            &Value::Null,
        )
        .await;
        assert_eq!((bad.status, bad.field.as_deref()), (400, Some("cursor")));
    });
}

#[test]
fn a_lost_connection_answers_503() {
    with_db(|url, _| async move {
        let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        let task = tokio::spawn(conn);
        task.abort();
        let _ = task.await;
        let a = call(&client, None, "GET", "/v1/hives/1", &Value::Null).await;
        assert_eq!(
            (a.status, a.body["code"].clone()),
            (503, json!("unavailable"))
        );
    });
}
