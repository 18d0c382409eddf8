//! The signed-in user's calls (`/v1/me...`, `modules::api::me`) and the threshold alerts of
//! migration 0014 on a real, migrated PostgreSQL: each call routed as the HTTP side does, then
//! run against a database of the test's own. The user row made on the first call; settings and
//! subscription; favourites with the occupancy now; recent hives newest first; rules and their
//! refusals; the inbox. Thresholds are driven as the ingest drives them, by UPDATEs of
//! hive_status.occupancy: one message per crossing, none while disarmed, armed again past the
//! hysteresis, none inside quiet hours nor at the daily reset, and one when two sessions change
//! the hive at once.
//! Run through `scripts/with-postgres cargo test --test api_me`.

#[path = "common/api.rs"]
#[allow(dead_code)]
mod api;
mod common;

use std::time::Duration;

use api::{caller, connect, with_db, Answer, World};
use bizzy::modules::api::caller::Caller;
use chrono::{Timelike, Utc};
use serde_json::{json, Value};
use tokio_postgres::Client;

const NONE: Value = Value::Null;

/// Sets the occupancy of `hive` as the ingest does (an UPDATE of hive_status).
async fn occupancy(db: &Client, hive: i64, n: i32) {
    db.execute(
        "UPDATE hive_status SET occupancy = $2, updated_at = now() WHERE hive_id = $1",
        &[&hive, &n],
    )
    .await
    .expect("hive_status updates");
}

/// The occupancy messages of `uid`.
async fn messages(db: &Client, uid: &str) -> Vec<String> {
    db.query(
        "SELECT m.content FROM user_message m JOIN app_user u ON u.id = m.user_id
         WHERE u.firebase_uid = $1 AND m.type = 'occupancy' ORDER BY m.id",
        &[&uid],
    )
    .await
    .expect("reads messages")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// A rule of `who` on `hive`, created.
async fn rule(w: &World, who: &Caller, hive: i64, kind: &str, percent: i64) -> i64 {
    let body = json!({"hive_id": hive, "kind": kind, "threshold_percent": percent});
    let a = w.by(who, "POST", "/v1/me/notifications", body).await;
    assert_eq!(a.status, 201, "{a:?}");
    a.id()
}

/// "HH:MM" of now plus `hours` in the time zone `tz`.
fn local(tz: chrono_tz::Tz, hours: i64) -> String {
    let t = chrono::DateTime::<Utc>::from(std::time::SystemTime::now()).with_timezone(&tz)
        + chrono::Duration::hours(hours);
    format!("{:02}:{:02}", t.hour(), t.minute())
}

fn ids(a: &Answer, key: &str) -> Vec<i64> {
    a.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {a:?}"))
        .iter()
        .map(|i| i[key].as_i64().expect("an id"))
        .collect()
}

#[test]
fn the_user_row_is_made_on_the_first_call_with_the_uid_only() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let carol = caller("carol", false);
        let count = "SELECT count(*) FROM app_user WHERE firebase_uid = 'carol'";
        let n: i64 = w.db.query_one(count, &[]).await.unwrap().get(0);
        assert_eq!(n, 0);
        let me = w.by(&carol, "GET", "/v1/me", NONE).await;
        assert_eq!(
            (me.status, &me.body),
            (
                200,
                &json!({"uid": "carol", "nickname": null, "role": "user", "time_zone": "UTC",
                        "quiet_hours": null, "subscription": null})
            )
        );
        let again = w.by(&carol, "GET", "/v1/me", NONE).await;
        assert_eq!(again.body, me.body);
        let n: i64 = w.db.query_one(count, &[]).await.unwrap().get(0);
        assert_eq!(n, 1, "one row, made once");
        assert_eq!(w.status(None, "GET", "/v1/me").await, 401);
        assert_eq!(w.status(None, "GET", "/v1/me/inbox").await, 401);
        assert_eq!(w.status(Some(&carol), "DELETE", "/v1/me").await, 405);
        assert_eq!(w.status(Some(&carol), "GET", "/v1/me/other").await, 404);
        assert_eq!(
            w.status(Some(&carol), "PUT", "/v1/me/favorites/x").await,
            404
        );
        let root = w.by(&w.root, "GET", "/v1/me", NONE).await;
        assert_eq!(root.body["role"], "admin");
    });
}

#[test]
fn settings_are_edited_and_refused_with_their_field() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let carol = caller("carol", false);
        let body = json!({"nickname": "Carol", "time_zone": "Asia/Tokyo",
                          "quiet_hours": {"from": "22:00", "to": "07:00"}});
        let a = w.by(&carol, "PATCH", "/v1/me", body).await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.body["nickname"], "Carol");
        assert_eq!(a.body["time_zone"], "Asia/Tokyo");
        assert_eq!(
            a.body["quiet_hours"],
            json!({"from": "22:00", "to": "07:00"})
        );
        let a = w
            .by(&carol, "PATCH", "/v1/me", json!({"quiet_hours": null}))
            .await;
        assert_eq!(a.body["quiet_hours"], NONE);
        assert_eq!(a.body["nickname"], "Carol", "absent fields stay");
        let a = w
            .by(&carol, "PATCH", "/v1/me", json!({"nickname": null}))
            .await;
        assert_eq!(a.body["nickname"], NONE);
        for (body, field) in [
            (json!({"nick": "x"}), "nick"),
            (json!({"nickname": ""}), "nickname"),
            (json!({"nickname": "x".repeat(65)}), "nickname"),
            (json!({"time_zone": "Mars/Base"}), "time_zone"),
            (json!({"time_zone": null}), "time_zone"),
            (json!({"quiet_hours": {"from": "22:00"}}), "quiet_hours.to"),
            (
                json!({"quiet_hours": {"from": "25:00", "to": "07:00"}}),
                "quiet_hours.from",
            ),
            (
                json!({"quiet_hours": {"from": "07:00", "to": "07:00"}}),
                "quiet_hours",
            ),
            (
                json!({"quiet_hours": {"from": "07:00", "to": "08:00", "x": 1}}),
                "quiet_hours.x",
            ),
        ] {
            let a = w.by(&carol, "PATCH", "/v1/me", body.clone()).await;
            assert_eq!(a.refusal(), (400, Some(field)), "{body}");
        }
    });
}

#[test]
fn the_subscription_running_now_is_shown_with_its_features() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let carol = caller("carol", false);
        w.by(&carol, "GET", "/v1/me", NONE).await;
        w.db.execute(
            "INSERT INTO subscription (subscription_type_id, user_id, starts_at, ends_at)
             SELECT t.id, u.id, now() - interval '1 day', timestamptz '2099-01-01 00:00:00Z'
             FROM subscription_type t, app_user u
             WHERE t.code = 'premium' AND u.firebase_uid = 'carol'",
            &[],
        )
        .await
        .unwrap();
        w.db.execute(
            "INSERT INTO subscription (subscription_type_id, user_id, starts_at, ends_at)
             SELECT t.id, u.id, now() - interval '2 days', now() - interval '1 day'
             FROM subscription_type t, app_user u
             WHERE t.code = 'free' AND u.firebase_uid = 'carol'",
            &[],
        )
        .await
        .unwrap();
        w.db.execute(
            "INSERT INTO subscription (subscription_type_id, user_id, starts_at, cancelled_at)
             SELECT t.id, u.id, now() - interval '1 hour', now() - interval '1 minute'
             FROM subscription_type t, app_user u
             WHERE t.code = 'free' AND u.firebase_uid = 'carol'",
            &[],
        )
        .await
        .unwrap();
        let me = w.by(&carol, "GET", "/v1/me", NONE).await;
        assert_eq!(
            me.body["subscription"],
            json!({"type": "premium", "features": ["history", "notifications", "peak_hours"],
                   "ends_at": "2099-01-01T00:00:00Z"})
        );
    });
}

#[test]
fn favourites_are_listed_with_the_occupancy_now() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let carol = caller("carol", false);
        let c = Some(&carol);
        let (_, other) = w.other_account().await;
        let (a, b) = (
            format!("/v1/me/favorites/{}", w.hive),
            format!("/v1/me/favorites/{other}"),
        );
        assert_eq!(w.status(c, "PUT", &b).await, 204);
        assert_eq!(w.status(c, "PUT", &a).await, 204);
        assert_eq!(w.status(c, "PUT", &a).await, 204, "twice is fine");
        assert_eq!(w.status(c, "PUT", "/v1/me/favorites/999").await, 404);
        assert_eq!(w.status(None, "PUT", &a).await, 401);
        occupancy(&w.db, w.hive, 30).await;
        let list = w.by(&carol, "GET", "/v1/me/favorites", NONE).await;
        assert_eq!(list.status, 200, "{list:?}");
        assert_eq!(ids(&list, "id"), vec![w.hive, other], "by hive id");
        let first = &list.body["items"][0];
        assert_eq!(first["name"], "The Hive");
        assert_eq!(first["occupancy"]["occupancy"], 30);
        assert_eq!(first["occupancy"]["percent"], 25.0);
        assert!(first["favorite_since"].is_string(), "{first}");
        let page = w.by(&carol, "GET", "/v1/me/favorites?limit=1", NONE).await;
        assert_eq!(ids(&page, "id"), vec![w.hive]);
        let cursor = page.body["next_cursor"].as_str().expect("a next page");
        let next = w
            .by(
                &carol,
                "GET",
                &format!("/v1/me/favorites?limit=1&cursor={cursor}"),
                NONE,
            )
            .await;
        assert_eq!(ids(&next, "id"), vec![other]);
        assert_eq!(next.body["next_cursor"], NONE);
        assert_eq!(
            w.by(&w.bob, "GET", "/v1/me/favorites", NONE).await.body["items"],
            json!([]),
            "favourites are the caller's"
        );

        assert_eq!(w.status(c, "DELETE", &b).await, 204);
        assert_eq!(w.status(c, "DELETE", &b).await, 204);
        let alice = Some(&w.alice);
        let hive = format!("/v1/hives/{}", w.hive);
        assert_eq!(w.status(alice, "DELETE", &hive).await, 204);
        let list = w.by(&carol, "GET", "/v1/me/favorites", NONE).await;
        assert_eq!(list.body["items"], json!([]), "deleted hives are not shown");
        assert_eq!(w.status(c, "GET", "/v1/me/favorites?limit=0").await, 400);
    });
}

#[test]
fn recent_hives_come_newest_first() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let carol = caller("carol", false);
        let c = Some(&carol);
        let (_, other) = w.other_account().await;
        let visit = |h: i64| format!("/v1/me/recent/{h}");
        assert_eq!(w.status(c, "POST", &visit(w.hive)).await, 204);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(w.status(c, "POST", &visit(other)).await, 204);
        assert_eq!(w.status(c, "POST", &visit(999)).await, 404);
        let list = w.by(&carol, "GET", "/v1/me/recent", NONE).await;
        assert_eq!(list.status, 200, "{list:?}");
        assert_eq!(ids(&list, "id"), vec![other, w.hive]);
        assert!(list.body["items"][0]["last_visited_at"].is_string());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(w.status(c, "POST", &visit(w.hive)).await, 204);
        let list = w.by(&carol, "GET", "/v1/me/recent?limit=1", NONE).await;
        assert_eq!(ids(&list, "id"), vec![w.hive]);
        let cursor = list.body["next_cursor"].as_str().expect("a next page");
        let next = w
            .by(
                &carol,
                "GET",
                &format!("/v1/me/recent?limit=1&cursor={cursor}"),
                NONE,
            )
            .await;
        assert_eq!(ids(&next, "id"), vec![other]);
        assert_eq!(next.body["next_cursor"], NONE);
        let bad = w.by(&carol, "GET", "/v1/me/recent?cursor=MQ", NONE).await;
        assert_eq!(bad.refusal(), (400, Some("cursor")));
        assert_eq!(w.status(c, "GET", "/v1/me/recent/1").await, 405);
    });
}

#[test]
fn rules_are_the_callers_and_refused_with_their_field() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let carol = caller("carol", false);
        let c = Some(&carol);
        let id = rule(&w, &carol, w.hive, "below", 30).await;
        let dup = json!({"hive_id": w.hive, "kind": "below", "threshold_percent": 40});
        let a = w.by(&carol, "POST", "/v1/me/notifications", dup).await;
        assert_eq!(a.status, 409, "{a:?}");
        rule(&w, &carol, w.hive, "above", 90).await;
        let unknown = json!({"hive_id": 999, "kind": "below", "threshold_percent": 40});
        let a = w.by(&carol, "POST", "/v1/me/notifications", unknown).await;
        assert_eq!(a.status, 404);
        for (body, field) in [
            (
                json!({"hive_id": w.hive, "kind": "deal", "threshold_percent": 1}),
                "kind",
            ),
            (
                json!({"hive_id": w.hive, "kind": "below", "threshold_percent": 101}),
                "threshold_percent",
            ),
            (
                json!({"hive_id": w.hive, "kind": "below"}),
                "threshold_percent",
            ),
            (
                json!({"hive_id": 0, "kind": "below", "threshold_percent": 1}),
                "hive_id",
            ),
            (
                json!({"hive_id": w.hive, "kind": "below", "threshold_percent": 1, "x": 1}),
                "x",
            ),
        ] {
            let a = w
                .by(&carol, "POST", "/v1/me/notifications", body.clone())
                .await;
            assert_eq!(a.refusal(), (400, Some(field)), "{body}");
        }
        let list = w.by(&carol, "GET", "/v1/me/notifications", NONE).await;
        assert_eq!(list.body["items"].as_array().map(Vec::len), Some(2));
        let first = &list.body["items"][0];
        assert_eq!(
            (
                &first["kind"],
                &first["threshold_percent"],
                &first["enabled"],
                &first["armed"]
            ),
            (&json!("below"), &json!(30), &json!(true), &json!(false)),
            "an empty hive is below 30 % already: the rule waits for it to fill"
        );
        let one = format!("/v1/me/notifications/{id}");
        let a = w
            .by(
                &carol,
                "PATCH",
                &one,
                json!({"enabled": false, "threshold_percent": 20}),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(
            (&a.body["enabled"], &a.body["threshold_percent"]),
            (&json!(false), &json!(20))
        );
        let a = w.by(&carol, "PATCH", &one, json!({"enabled": "no"})).await;
        assert_eq!(a.refusal(), (400, Some("enabled")));
        let a = w.by(&carol, "PATCH", &one, json!({"enabled": null})).await;
        assert_eq!(a.refusal(), (400, Some("enabled")));
        assert_eq!(w.by(&w.bob, "PATCH", &one, json!({})).await.status, 404);
        assert_eq!(w.status(Some(&w.bob), "DELETE", &one).await, 404);
        assert_eq!(w.status(c, "DELETE", &one).await, 204);
        assert_eq!(w.status(c, "DELETE", &one).await, 404);
        assert_eq!(w.status(c, "PUT", &one).await, 405);
    });
}

#[test]
fn a_rule_fires_once_per_crossing_and_rearms_past_the_hysteresis() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let carol = caller("carol", false);
        occupancy(&w.db, w.hive, 100).await;
        // Capacity 120: below 50 % is under 60 people; armed again from 55 % (66).
        rule(&w, &carol, w.hive, "below", 50).await;
        occupancy(&w.db, w.hive, 50).await;
        let m = messages(&w.db, "carol").await;
        assert_eq!(
            m,
            vec!["The Hive is at 42% of its capacity, below your 50%."]
        );
        for n in [40, 62, 50, 65, 0] {
            occupancy(&w.db, w.hive, n).await;
        }
        assert_eq!(
            messages(&w.db, "carol").await.len(),
            1,
            "disarmed until 55 %"
        );
        occupancy(&w.db, w.hive, 66).await;
        occupancy(&w.db, w.hive, 59).await;
        assert_eq!(
            messages(&w.db, "carol").await.len(),
            2,
            "armed again at 55 %"
        );

        // Above 75 % is over 90 people; armed again from 70 % (84).
        rule(&w, &carol, w.hive, "above", 75).await;
        for n in [91, 85, 95, 84, 91] {
            occupancy(&w.db, w.hive, n).await;
        }
        let m = messages(&w.db, "carol").await;
        assert_eq!(m.len(), 4, "{m:?}");
        assert_eq!(m[2], "The Hive is at 76% of its capacity, above your 75%.");

        let list = w.by(&carol, "GET", "/v1/me/notifications", NONE).await;
        assert!(list.body["items"][0]["last_fired_at"].is_string());
    });
}

#[test]
fn rules_already_met_disabled_or_without_capacity_do_not_fire() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let carol = caller("carol", false);
        occupancy(&w.db, w.hive, 10).await;
        let id = rule(&w, &carol, w.hive, "below", 50).await;
        occupancy(&w.db, w.hive, 5).await;
        assert!(messages(&w.db, "carol").await.is_empty(), "below already");
        let one = format!("/v1/me/notifications/{id}");
        occupancy(&w.db, w.hive, 100).await;
        w.by(&carol, "PATCH", &one, json!({"enabled": false})).await;
        occupancy(&w.db, w.hive, 5).await;
        assert!(messages(&w.db, "carol").await.is_empty(), "disabled");
        w.by(&carol, "PATCH", &one, json!({"enabled": true})).await;
        let path = format!("/v1/hives/{}", w.hive);
        let a = w.alice("PATCH", &path, json!({"capacity": null})).await;
        assert_eq!(a.status, 200, "{a:?}");
        occupancy(&w.db, w.hive, 100).await;
        occupancy(&w.db, w.hive, 1).await;
        assert!(messages(&w.db, "carol").await.is_empty(), "no capacity");
    });
}

#[test]
fn crossings_in_quiet_hours_are_not_raised_but_disarm() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let carol = caller("carol", false);
        let tz = chrono_tz::Asia::Tokyo;
        let inside = json!({"time_zone": "Asia/Tokyo",
                            "quiet_hours": {"from": local(tz, -1), "to": local(tz, 1)}});
        assert_eq!(w.by(&carol, "PATCH", "/v1/me", inside).await.status, 200);
        occupancy(&w.db, w.hive, 100).await;
        let id = rule(&w, &carol, w.hive, "below", 50).await;
        occupancy(&w.db, w.hive, 10).await;
        assert!(messages(&w.db, "carol").await.is_empty(), "quiet now");
        let list = w.by(&carol, "GET", "/v1/me/notifications", NONE).await;
        assert_eq!(
            list.body["items"][0]["armed"], false,
            "disarmed all the same"
        );
        assert_eq!(list.body["items"][0]["id"], id);

        let outside = json!({"quiet_hours": {"from": local(tz, 2), "to": local(tz, 3)}});
        assert_eq!(w.by(&carol, "PATCH", "/v1/me", outside).await.status, 200);
        occupancy(&w.db, w.hive, 20).await;
        assert!(messages(&w.db, "carol").await.is_empty(), "still disarmed");
        occupancy(&w.db, w.hive, 100).await;
        occupancy(&w.db, w.hive, 10).await;
        assert_eq!(
            messages(&w.db, "carol").await.len(),
            1,
            "outside quiet hours"
        );
    });
}

#[test]
fn the_daily_reset_to_zero_is_not_raised_but_disarms() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let carol = caller("carol", false);
        occupancy(&w.db, w.hive, 100).await;
        rule(&w, &carol, w.hive, "below", 50).await;
        w.db.execute(
            "UPDATE hive_status SET occupancy = 0, last_reset_at = now() WHERE hive_id = $1",
            &[&w.hive],
        )
        .await
        .unwrap();
        assert!(
            messages(&w.db, "carol").await.is_empty(),
            "a reset is no news"
        );
        let list = w.by(&carol, "GET", "/v1/me/notifications", NONE).await;
        assert_eq!(list.body["items"][0]["armed"], false);
        occupancy(&w.db, w.hive, 100).await;
        occupancy(&w.db, w.hive, 10).await;
        assert_eq!(
            messages(&w.db, "carol").await.len(),
            1,
            "the next crossing is"
        );
    });
}

#[test]
fn quiet_hours_may_span_midnight() {
    with_db(|_, db| async move {
        for (t, inside) in [
            ("23:30", true),
            ("03:00", true),
            ("07:00", false),
            ("21:59", false),
            ("22:00", true),
        ] {
            let row = db
                .query_one(
                    "SELECT in_quiet_hours($1::text::time, '22:00', '07:00'),
                            in_quiet_hours($1::text::time, '07:00', '22:00'),
                            in_quiet_hours($1::text::time, NULL, NULL)",
                    &[&t],
                )
                .await
                .unwrap();
            assert_eq!(row.get::<_, bool>(0), inside, "{t}");
            assert_eq!(row.get::<_, bool>(1), !inside, "{t}");
            assert!(!row.get::<_, bool>(2));
        }
    });
}

#[test]
fn two_sessions_changing_a_hive_at_once_raise_it_once() {
    with_db(|url, db| async move {
        let w = World::new(db).await;
        let carol = caller("carol", false);
        occupancy(&w.db, w.hive, 100).await;
        rule(&w, &carol, w.hive, "below", 50).await;
        let (one, two) = (connect(&url).await, connect(&url).await);
        one.batch_execute("BEGIN").await.unwrap();
        two.batch_execute("BEGIN").await.unwrap();
        occupancy(&one, w.hive, 10).await;
        let (_, committed) = tokio::join!(occupancy(&two, w.hive, 5), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            one.batch_execute("COMMIT").await
        });
        committed.unwrap();
        two.batch_execute("COMMIT").await.unwrap();
        assert_eq!(messages(&w.db, "carol").await.len(), 1);
    });
}

#[test]
fn the_inbox_lists_newest_first_and_marks_read() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let carol = caller("carol", false);
        let c = Some(&carol);
        occupancy(&w.db, w.hive, 100).await;
        rule(&w, &carol, w.hive, "below", 50).await;
        for n in [10, 100, 10, 100, 10] {
            occupancy(&w.db, w.hive, n).await;
        }
        let inbox = w.by(&carol, "GET", "/v1/me/inbox", NONE).await;
        let all = ids(&inbox, "id");
        assert_eq!(all.len(), 3);
        assert!(all.windows(2).all(|p| p[0] > p[1]), "newest first");
        assert_eq!(inbox.body["items"][0]["type"], "occupancy");
        assert_eq!(inbox.body["items"][0]["read_at"], NONE);
        let read = format!("/v1/me/inbox/{}/read", all[0]);
        assert_eq!(w.status(c, "POST", &read).await, 204);
        assert_eq!(w.status(c, "POST", &read).await, 204);
        assert_eq!(w.status(Some(&w.bob), "POST", &read).await, 404);
        assert_eq!(w.status(c, "POST", "/v1/me/inbox/999/read").await, 404);
        let unread = w.by(&carol, "GET", "/v1/me/inbox?unread=true", NONE).await;
        assert_eq!(ids(&unread, "id"), all[1..].to_vec());
        let page = w.by(&carol, "GET", "/v1/me/inbox?limit=2", NONE).await;
        assert_eq!(ids(&page, "id"), all[..2].to_vec());
        let cursor = page.body["next_cursor"].as_str().expect("a next page");
        let next = w
            .by(
                &carol,
                "GET",
                &format!("/v1/me/inbox?limit=2&cursor={cursor}"),
                NONE,
            )
            .await;
        assert_eq!(ids(&next, "id"), all[2..].to_vec());
        let bad = w.by(&carol, "GET", "/v1/me/inbox?unread=1", NONE).await;
        assert_eq!(bad.refusal(), (400, Some("unread")));
        assert!(
            w.by(&w.bob, "GET", "/v1/me/inbox", NONE).await.body["items"]
                .as_array()
                .is_some_and(Vec::is_empty)
        );
    });
}
