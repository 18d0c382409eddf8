//! The business API calls (`modules::api::route`) on a real, migrated PostgreSQL: each request
//! is routed as the HTTP side does, then run on a tokio current-thread runtime against a
//! database of its own. Every call's answer, each refusal (401, 403, 404, 405, 409, 400 with
//! its field, 413), the three roles, pagination under concurrent inserts, and configuration
//! ids. Run through `scripts/with-postgres cargo test --test api_calls`.

#[path = "common/api.rs"]
mod api;
mod common;

use std::cell::Cell;
use std::collections::HashSet;

use api::{call, connect, hive_body, with_db, World};
use bizzy::mqtt::auth::secret::verify;
use serde_json::{json, Value};
use tokio_postgres::NoTls;

const NONE: Value = Value::Null;

#[test]
fn accounts_are_made_by_platform_admins_and_seen_by_their_admins() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let (root, alice, bob) = (Some(&w.root), Some(&w.alice), Some(&w.bob));
        let acc = format!("/v1/accounts/{}", w.account);
        let a = w.alice("GET", &acc, NONE).await;
        assert_eq!(
            (a.status, &a.body),
            (200, &json!({"id": w.account, "name": "Acme"}))
        );
        assert_eq!(w.status(bob, "GET", &acc).await, 403);
        assert_eq!(w.status(None, "GET", &acc).await, 401);
        assert_eq!(w.status(root, "GET", "/v1/accounts/999").await, 404);
        assert_eq!(w.status(root, "PATCH", &acc).await, 405);
        let mine = w
            .by(&w.bob, "POST", "/v1/accounts", json!({"name": "Mine"}))
            .await;
        assert_eq!(mine.status, 403);
        let other = w
            .by(&w.root, "POST", "/v1/accounts", json!({"name": "Other"}))
            .await;
        assert_eq!(other.status, 201);

        let all = w.by(&w.root, "GET", "/v1/accounts", NONE).await;
        assert_eq!(all.body["items"].as_array().map(Vec::len), Some(2));
        let page = w.alice("GET", "/v1/accounts", NONE).await;
        let only = json!({"items": [{"id": w.account, "name": "Acme"}], "next_cursor": null});
        assert_eq!(page.body, only);
        let none = w.by(&w.bob, "GET", "/v1/accounts", NONE).await;
        assert_eq!(none.body["items"], json!([]));
        assert_eq!(w.status(alice, "GET", "/v1/accounts?limit=0").await, 400);
    });
}

#[test]
fn account_bodies_are_refused_with_their_field() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let post = |body: Value| w.by(&w.root, "POST", "/v1/accounts", body);
        assert_eq!(
            post(json!({"nmae": "x"})).await.refusal(),
            (400, Some("nmae"))
        );
        assert_eq!(
            post(json!({"name": 7})).await.refusal(),
            (400, Some("name"))
        );
        assert_eq!(
            post(json!({"name": ""})).await.refusal(),
            (400, Some("name"))
        );
        assert_eq!(post(json!({})).await.refusal(), (400, Some("name")));
        assert_eq!(post(json!([1])).await.body["code"], "bad_json");
        let big = post(json!({"name": "x".repeat(70_000)})).await;
        assert_eq!(big.status, 413);
    });
}

#[test]
fn platform_admins_name_and_remove_account_admins() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let (root, alice) = (Some(&w.root), Some(&w.alice));
        let acc = format!("/v1/accounts/{}", w.account);
        let admin = format!("{acc}/admins/alice");
        assert_eq!(
            w.status(alice, "PUT", &format!("{acc}/admins/bob")).await,
            403
        );
        assert_eq!(
            w.status(root, "PUT", &admin).await,
            204,
            "naming twice is fine"
        );
        assert_eq!(
            w.status(root, "PUT", "/v1/accounts/999/admins/x").await,
            404
        );
        assert_eq!(w.status(root, "DELETE", &admin).await, 204);
        assert_eq!(w.status(root, "DELETE", &admin).await, 404);
        assert_eq!(w.status(alice, "GET", &acc).await, 403);
        let long = format!("{acc}/admins/{}", "u".repeat(129));
        let a = w.by(&w.root, "PUT", &long, NONE).await;
        assert_eq!(a.refusal(), (400, Some("uid")));
        assert_eq!(
            w.status(root, "PUT", &format!("{acc}/admins/carol")).await,
            204
        );
        let carol = api::caller("carol", false);
        assert_eq!(w.status(Some(&carol), "GET", &acc).await, 200);
    });
}

/// The answer for a hive made from [`hive_body`] named `name`.
fn hive_json(id: i64, account: i64, name: &str, reset: Value) -> Value {
    let mut v = hive_body(name);
    v["id"] = json!(id);
    v["account_id"] = json!(account);
    v["reset_time"] = reset;
    v
}

/// The anonymous read of a hive shows what the business answer does, but for the account, with
/// the occupancy beside.
fn assert_public(public: &Value, business: &Value) {
    let mut want = business.clone();
    want.as_object_mut().unwrap().remove("account_id");
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&public[k], v, "{k} in {public}");
    }
    assert!(public.get("account_id").is_none(), "{public}");
    assert_eq!(public["occupancy"]["hive_id"], business["id"]);
}

#[test]
fn hives_are_created_with_their_defaults() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let mut body = hive_body("Night Bar");
        body["reset_time"] = NONE;
        let h = w.alice("POST", &w.under("hives"), body).await;
        assert_eq!(h.status, 201, "{h:?}");
        assert_eq!(h.body, hive_json(h.id(), w.account, "Night Bar", NONE));
        let first = call(&w.db, None, "GET", &format!("/v1/hives/{}", w.hive), &NONE).await;
        assert_public(
            &first.body,
            &hive_json(w.hive, w.account, "The Hive", json!("04:00")),
        );
        let list = w.alice("GET", &w.under("hives"), NONE).await;
        let items = list.body["items"].as_array().expect("items");
        let ids: Vec<i64> = items.iter().filter_map(|h| h["id"].as_i64()).collect();
        assert_eq!(ids, vec![w.hive, h.id()]);
        assert_eq!(w.status(Some(&w.bob), "GET", &w.under("hives")).await, 403);
        assert_eq!(w.status(None, "POST", &w.under("hives")).await, 401);
    });
}

#[test]
fn hive_bodies_are_refused_with_their_field() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        for (key, value, field) in [
            ("type", json!("casino"), "type"),
            ("time_zone", json!("Mars/Base"), "time_zone"),
            ("reset_time", json!("24:00"), "reset_time"),
            ("capacity", json!(0), "capacity"),
            ("name", json!(null), "name"),
            ("address", json!({"city": "X"}), "address.street"),
            ("address", json!({"street": "", "cty": "X"}), "address.cty"),
            ("extra", json!(1), "extra"),
        ] {
            let mut b = hive_body("Bad");
            b[key] = value;
            let a = w.alice("POST", &w.under("hives"), b).await;
            assert_eq!(a.refusal(), (400, Some(field)), "{key}: {a:?}");
        }
        let theirs = w
            .by(&w.bob, "POST", &w.under("hives"), hive_body("X"))
            .await;
        assert_eq!(theirs.status, 403);
        let n =
            w.db.query_one("SELECT count(*) FROM address", &[])
                .await
                .unwrap();
        assert_eq!(n.get::<_, i64>(0), 1, "no address left behind");
    });
}

#[test]
fn hives_are_edited_field_by_field() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let path = format!("/v1/hives/{}", w.hive);
        let patch = json!({"name": "Day Bar", "reset_time": "05:30", "capacity": null,
                           "type": "cafe", "address": {"city": "Cluj"}});
        let p = w.alice("PATCH", &path, patch).await;
        assert_eq!(p.status, 200, "{p:?}");
        let mut after = hive_json(w.hive, w.account, "Day Bar", json!("05:30"));
        after["capacity"] = NONE;
        after["type"] = json!("cafe");
        after["address"]["city"] = json!("Cluj");
        assert_eq!(p.body, after);
        assert_public(&call(&w.db, None, "GET", &path, &NONE).await.body, &after);
        let p = w.alice("PATCH", &path, json!({"reset_time": null})).await;
        assert_eq!(p.body["reset_time"], NONE);
        let p = w.alice("PATCH", &path, json!({"name": "Same"})).await;
        assert_eq!(p.body["reset_time"], NONE, "omitted: left as it is");
        let bad = w.alice("PATCH", &path, json!({"type": "casino"})).await;
        assert_eq!(bad.refusal(), (400, Some("type")));
        let bad = w
            .alice("PATCH", &path, json!({"address": {"country": "ro"}}))
            .await;
        assert_eq!(bad.refusal(), (400, Some("address.country")));
        let theirs = w.by(&w.bob, "PATCH", &path, json!({"name": "Mine"})).await;
        assert_eq!(theirs.status, 403);
        assert_eq!(w.status(Some(&w.bob), "DELETE", &path).await, 403);
        let gone = w.by(&w.root, "PATCH", "/v1/hives/999", json!({})).await;
        assert_eq!(gone.status, 404);
    });
}

#[test]
fn occupancy_is_answered_anonymously() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let path = format!("/v1/hives/{}/occupancy", w.hive);
        let occ = call(&w.db, None, "GET", &path, &NONE).await;
        assert_eq!(occ.status, 200);
        let updated = occ.body["updated_at"].as_str().expect("a time").to_string();
        assert!(updated.ends_with('Z') && updated.len() == 20, "{updated}");
        let want = json!({"hive_id": w.hive, "occupancy": 0, "capacity": 120, "percent": 0.0,
                          "updated_at": updated, "stale": false, "degraded": false,
                          "vs_usual": null});
        assert_eq!(occ.body, want);
        assert_eq!(w.status(None, "GET", "/v1/hives/999/occupancy").await, 404);
        assert_eq!(w.status(None, "POST", &path).await, 405);
    });
}

#[test]
fn a_deleted_hive_and_its_sensors_exist_no_more() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let alice = Some(&w.alice);
        let path = format!("/v1/hives/{}", w.hive);
        w.sensor("d9").await;
        assert_eq!(w.status(alice, "DELETE", &path).await, 204);
        for (m, p) in [
            ("GET", path.clone()),
            ("GET", format!("{path}/occupancy")),
            ("DELETE", path.clone()),
            ("PATCH", path.clone()),
            ("GET", "/v1/sensors/d9".into()),
        ] {
            let a = w.alice(m, &p, json!({})).await;
            assert_eq!(a.status, 404, "{m} {p}: {a:?}");
        }
        let list = w.alice("GET", &w.under("hives"), NONE).await;
        assert_eq!(list.body["items"], json!([]));
    });
}

/// The secret_hash of `sql`'s one row.
async fn stored_hash(
    w: &World,
    sql: &str,
    key: &(dyn tokio_postgres::types::ToSql + Sync),
) -> String {
    w.db.query_one(sql, &[key]).await.expect("a row").get(0)
}

#[test]
fn sensors_are_registered_with_a_password_shown_once() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let s = w
            .alice("POST", &w.under("sensors"), json!({"hive_id": w.hive}))
            .await;
        assert_eq!(s.status, 201, "{s:?}");
        let dev = s.body["device_id"]
            .as_str()
            .expect("a device id")
            .to_string();
        assert!(dev.starts_with("s-") && dev.len() == 18, "{dev}");
        assert_eq!(s.body["mqtt_username"], dev.as_str());
        assert_eq!(
            (&s.body["hive_id"], &s.body["direction"]),
            (&json!(w.hive), &json!("normal"))
        );
        let password = s.body["mqtt_password"].as_str().expect("a password");
        assert!(password.len() >= 22, "at least 128 bits");
        let hash = stored_hash(
            &w,
            "SELECT secret_hash FROM sensor WHERE device_id = $1",
            &dev,
        )
        .await;
        assert!(verify(&hash, password.as_bytes()) && !hash.contains(password));
        let health = w.alice("GET", &format!("/v1/sensors/{dev}"), NONE).await;
        assert!(!health.body.to_string().contains(password));
        let list = w.alice("GET", &w.under("sensors"), NONE).await;
        assert_eq!(list.body["items"][0]["device_id"], dev.as_str());
        assert!(list.body["items"][0].get("mqtt_password").is_none());
    });
}

#[test]
fn sensor_registrations_are_refused_with_their_field() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let body = json!({"hive_id": w.hive, "device_id": "door-1", "direction": "reversed",
                          "counter_modulus": 65523, "name": "Front door"});
        let s = w.alice("POST", &w.under("sensors"), body.clone()).await;
        assert_eq!((s.status, &s.body["counter_modulus"]), (201, &json!(65523)));
        assert_eq!(
            w.alice("POST", &w.under("sensors"), body.clone())
                .await
                .status,
            409
        );
        let (_, theirs) = w.other_account().await;
        for (b, field) in [
            (json!({"hive_id": theirs}), "hive_id"),
            (json!({"hive_id": w.hive, "device_id": "a b"}), "device_id"),
            (json!({"hive_id": w.hive, "direction": "up"}), "direction"),
            (json!({"device_id": "x"}), "hive_id"),
        ] {
            let a = w.alice("POST", &w.under("sensors"), b).await;
            assert_eq!(a.refusal(), (400, Some(field)), "{a:?}");
        }
        let bob = w
            .by(
                &w.bob,
                "POST",
                &w.under("sensors"),
                json!({"hive_id": w.hive}),
            )
            .await;
        assert_eq!(bob.status, 403);
        assert_eq!(
            w.alice("DELETE", "/v1/sensors/door-1", NONE).await.status,
            204
        );
        let again = w.alice("POST", &w.under("sensors"), body).await;
        assert_eq!(
            again.status, 201,
            "a deleted sensor's id may be registered again"
        );
    });
}

#[test]
fn sensor_health_edits_and_deletion() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        w.sensor("door-1").await;
        let h = w.alice("GET", "/v1/sensors/door-1", NONE).await;
        assert_eq!(h.status, 200, "{h:?}");
        let want = json!({"device_id": "door-1", "hive_id": w.hive, "online": false,
            "last_seen": null, "firmware_version": null, "battery_mv": null, "gprs_signal": null,
            "sensor_state": null, "discarded_events": null, "missed_messages": 0, "restarts": 0,
            "clock_skew_s": null, "configuration": {"id": 0, "acknowledged": true},
            "direction": "normal", "counter_modulus": 65536, "counting_mode": null, "name": null});
        assert_eq!(h.body, want);
        assert_eq!(
            w.status(Some(&w.bob), "GET", "/v1/sensors/door-1").await,
            403
        );
        assert_eq!(
            w.status(Some(&w.alice), "GET", "/v1/sensors/nobody").await,
            404
        );

        let edit = json!({"direction": "reversed", "counting_mode": "event", "name": "Back"});
        let p = w.alice("PATCH", "/v1/sensors/door-1", edit).await;
        assert_eq!(p.status, 200, "{p:?}");
        let got = (
            &p.body["direction"],
            &p.body["counting_mode"],
            &p.body["name"],
        );
        assert_eq!(got, (&json!("reversed"), &json!("event"), &json!("Back")));
        let p = w
            .alice("PATCH", "/v1/sensors/door-1", json!({"name": null}))
            .await;
        assert_eq!(p.body["name"], NONE);
        let (_, theirs) = w.other_account().await;
        let bad = w
            .alice("PATCH", "/v1/sensors/door-1", json!({"hive_id": theirs}))
            .await;
        assert_eq!(bad.refusal(), (400, Some("hive_id")));

        let alice = Some(&w.alice);
        assert_eq!(
            w.status(Some(&w.bob), "DELETE", "/v1/sensors/door-1").await,
            403
        );
        assert_eq!(w.status(alice, "DELETE", "/v1/sensors/door-1").await, 204);
        assert_eq!(w.status(alice, "GET", "/v1/sensors/door-1").await, 404);
        assert_eq!(w.status(alice, "DELETE", "/v1/sensors/door-1").await, 404);
    });
}

/// Four pushes at once, each on a connection of its own: their configuration ids, sorted.
async fn race(w: &World, url: &str, conf: &Value) -> Vec<i64> {
    let path = "/v1/sensors/door-1/config";
    let (c1, c2, c3, c4) = (
        connect(url).await,
        connect(url).await,
        connect(url).await,
        connect(url).await,
    );
    let alice = Some(&w.alice);
    let (a, b, c, d) = tokio::join!(
        call(&c1, alice, "PUT", path, conf),
        call(&c2, alice, "PUT", path, conf),
        call(&c3, alice, "PUT", path, conf),
        call(&c4, alice, "PUT", path, conf),
    );
    let mut ids: Vec<i64> = [a, b, c, d]
        .iter()
        .map(|x| {
            x.body["configuration_id"]
                .as_i64()
                .unwrap_or_else(|| panic!("{x:?}"))
        })
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn configuration_ids_increase_from_1_even_when_pushes_race() {
    with_db(|url, db| async move {
        let w = World::new(db).await;
        w.sensor("door-1").await;
        let conf = json!({"threshold_cm": 120, "reporting_interval_min": 5,
                          "status_interval_min": 60, "event_threshold": 3});
        let path = "/v1/sensors/door-1/config";
        for want in 1..=3 {
            let a = w.alice("PUT", path, conf.clone()).await;
            assert_eq!(
                (a.status, &a.body),
                (
                    200,
                    &json!({"configuration_id": want, "acknowledged": false})
                )
            );
        }
        assert_eq!(race(&w, &url, &conf).await, vec![4, 5, 6, 7]);
        let h = w.alice("GET", "/v1/sensors/door-1", NONE).await;
        assert_eq!(
            h.body["configuration"],
            json!({"id": 7, "acknowledged": false})
        );

        let mut bad = conf.clone();
        bad["reporting_interval_min"] = json!(1441);
        assert_eq!(
            w.alice("PUT", path, bad.clone()).await.refusal(),
            (400, Some("reporting_interval_min"))
        );
        bad.as_object_mut()
            .expect("an object")
            .remove("reporting_interval_min");
        assert_eq!(
            w.alice("PUT", path, bad).await.refusal(),
            (400, Some("reporting_interval_min"))
        );
        assert_eq!(w.by(&w.bob, "PUT", path, conf.clone()).await.status, 403);
        assert_eq!(
            w.alice("PUT", "/v1/sensors/nobody/config", conf)
                .await
                .status,
            404
        );
    });
}

#[test]
fn display_tokens_are_created_with_a_password_shown_once() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let t = w.token("Lobby").await;
        assert_eq!(t.status, 201, "{t:?}");
        let id = t.id();
        assert_eq!(t.body["mqtt_username"], format!("token:{id}"));
        assert_eq!(
            (&t.body["hive_ids"], &t.body["name"]),
            (&json!([w.hive]), &json!("Lobby"))
        );
        let password = t.body["mqtt_password"].as_str().expect("a password");
        let hash = stored_hash(&w, "SELECT secret_hash FROM api_token WHERE id = $1", &id).await;
        assert!(verify(&hash, password.as_bytes()));
        let (_, theirs) = w.other_account().await;
        for ids in [
            json!([]),
            json!([w.hive, w.hive]),
            json!([theirs]),
            json!("x"),
        ] {
            let a = w
                .alice(
                    "POST",
                    &w.under("tokens"),
                    json!({"name": "Bad", "hive_ids": ids}),
                )
                .await;
            assert_eq!(a.refusal(), (400, Some("hive_ids")), "{ids}");
        }
        let body = json!({"name": "B", "hive_ids": [w.hive]});
        let bob = w.by(&w.bob, "POST", &w.under("tokens"), body).await;
        assert_eq!(bob.status, 403);
    });
}

#[test]
fn revoked_display_tokens_exist_no_more() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let alice = Some(&w.alice);
        let (first, second) = (w.token("Lobby").await, w.token("Bar").await);
        assert_eq!((first.status, second.status), (201, 201));
        let path = format!("/v1/tokens/{}", first.id());
        assert_eq!(w.status(Some(&w.bob), "DELETE", &path).await, 403);
        assert_eq!(w.status(alice, "GET", &path).await, 405);
        assert_eq!(w.status(alice, "DELETE", &path).await, 204);
        assert_eq!(w.status(alice, "DELETE", &path).await, 404);
        let list = w.alice("GET", &w.under("tokens"), NONE).await;
        let items = list.body["items"].as_array().expect("items");
        assert_eq!(items.len(), 1);
        assert_eq!(
            (&items[0]["name"], &items[0]["id"]),
            (&json!("Bar"), &json!(second.id()))
        );
        assert!(items[0].get("mqtt_password").is_none());
        assert_eq!(w.status(Some(&w.bob), "GET", &w.under("tokens")).await, 403);
        for list in ["tokens", "sensors", "hives"] {
            let path = format!("/v1/accounts/999/{list}");
            assert_eq!(w.status(Some(&w.root), "GET", &path).await, 404, "{list}");
        }
    });
}

/// Hives inserted while the list is read.
const INSERTS: usize = 30;

/// Every hive id of a list read page by page (`limit` 4); before each next page, it waits
/// until the writer has inserted two more hives (`inserted`), so inserts land mid-listing.
async fn read_pages(w: &World, inserted: &Cell<usize>) -> Vec<i64> {
    let hives = w.under("hives");
    let mut seen = Vec::new();
    let mut target = format!("{hives}?limit=4");
    loop {
        let page = w.alice("GET", &target, NONE).await;
        assert_eq!(page.status, 200, "{page:?}");
        let items = page.body["items"].as_array().expect("items");
        assert!(items.len() <= 4);
        seen.extend(items.iter().filter_map(|h| h["id"].as_i64()));
        match page.body["next_cursor"].as_str() {
            Some(c) => target = format!("{hives}?cursor={c}&limit=4"),
            None => return seen,
        }
        let want = (inserted.get() + 2).min(INSERTS);
        while inserted.get() < want {
            tokio::task::yield_now().await;
        }
    }
}

#[test]
fn pages_stay_whole_while_rows_are_inserted() {
    with_db(|url, db| async move {
        let w = World::new(db).await;
        let hives = w.under("hives");
        for i in 0..24 {
            assert_eq!(
                w.alice("POST", &hives, hive_body(&format!("H{i}")))
                    .await
                    .status,
                201
            );
        }
        let rows =
            w.db.query("SELECT id FROM hive ORDER BY id", &[])
                .await
                .unwrap();
        let before: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let writer = connect(&url).await;
        let inserted = Cell::new(0);
        let insert = async {
            for i in 0..INSERTS {
                let body = hive_body(&format!("N{i}"));
                let a = call(&writer, Some(&w.alice), "POST", &hives, &body).await;
                assert_eq!(a.status, 201);
                inserted.set(i + 1);
                tokio::task::yield_now().await;
            }
        };
        let ((), seen) = tokio::join!(insert, read_pages(&w, &inserted));
        let unique: HashSet<i64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "no duplicate: {seen:?}");
        assert!(seen.windows(2).all(|p| p[0] < p[1]));
        assert!(
            before.iter().all(|id| unique.contains(id)),
            "no gap: {seen:?}"
        );
        assert!(
            seen.len() > before.len(),
            "the inserts ran during the listing"
        );
        let bad = w.alice("GET", &format!("{hives}?limit=201"), NONE).await;
        assert_eq!(bad.refusal(), (400, Some("limit")));
        let bad = w.alice("GET", &format!("{hives}?cursor=%%"), NONE).await;
        assert_eq!(bad.refusal(), (400, Some("cursor")));
    });
}

#[test]
fn a_lost_connection_answers_503() {
    with_db(|url, _| async move {
        let (client, conn) = tokio_postgres::connect(&url, NoTls)
            .await
            .expect("connects");
        let task = tokio::spawn(conn);
        task.abort();
        let _ = task.await;
        let a = call(&client, None, "GET", "/v1/hives/1", &NONE).await;
        assert_eq!((a.status, &a.body["code"]), (503, &json!("unavailable")));
    });
}

#[test]
fn a_read_only_database_answers_503() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        w.db.batch_execute("SET default_transaction_read_only = on")
            .await
            .expect("the session turns read-only");
        let a = w
            .by(&w.root, "POST", "/v1/accounts", json!({"name": "Late"}))
            .await;
        assert_eq!((a.status, &a.body["code"]), (503, &json!("unavailable")));
    });
}
