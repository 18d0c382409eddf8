//! The premium reads (`modules::api::premium`) on a real, migrated PostgreSQL: the gate (401
//! anonymous; 402 without a subscription, with an expired, cancelled, future or free one, and
//! for a platform admin; 200 with premium), 404 for an unknown or deleted hive, the history's
//! local hours across both DST changes of Europe/Bucharest in 2026 with figures, null hours and
//! range checks, and peak hours time-weighted, relative to the peak, null where unobserved, over
//! the weeks asked. Run through `scripts/with-postgres cargo test --test api_premium`.

// The business API's helpers are shared with tests/api_calls.rs, which uses them all.
#[path = "common/api.rs"]
#[allow(dead_code)]
mod api;
mod common;

use api::{caller, with_db, Answer, World};
use bizzy::modules::api::caller::Caller;
use serde_json::{json, Value};
use tokio_postgres::Client;

const NONE: Value = Value::Null;
/// An hour in milliseconds, as `hive_hourly` counts.
const HOUR_MS: i32 = 3_600_000;

/// Gives `uid` (made a user if need be) a subscription of type `code` starting `starts` from now
/// (an SQL interval), ending `ends` from now (None: open), cancelled `cancelled` from now.
async fn subscribe(
    db: &Client,
    uid: &str,
    code: &str,
    starts: &str,
    ends: Option<&str>,
    cancelled: Option<&str>,
) {
    db.execute(
        "INSERT INTO app_user (firebase_uid) VALUES ($1) ON CONFLICT (firebase_uid) DO NOTHING",
        &[&uid],
    )
    .await
    .expect("the user");
    db.execute(
        "INSERT INTO subscription (subscription_type_id, user_id, starts_at, ends_at, cancelled_at)
         SELECT t.id, u.id, now() + $3::text::interval, now() + $4::text::interval,
                now() + $5::text::interval
         FROM subscription_type t, app_user u WHERE t.code = $2 AND u.firebase_uid = $1",
        &[&uid, &code, &starts, &ends, &cancelled],
    )
    .await
    .expect("the subscription");
}

/// A rollup row of `hive` for the hour starting at the instant `hour` (SQL): `average` over
/// `observed_ms`, `peak`, `peak + 1` entries and `peak` exits.
async fn hourly(db: &Client, hive: i64, hour: &str, average: i64, observed_ms: i32, peak: i32) {
    let sql = format!(
        "INSERT INTO hive_hourly (hive_id, hour, occupancy_ms, observed_ms, peak_occupancy,
                                  entries, exits)
         VALUES ($1, {hour}, $2, $3, $4, $4 + 1, $4)"
    );
    db.execute(
        &sql,
        &[
            &hive,
            &(average * i64::from(observed_ms)),
            &observed_ms,
            &peak,
        ],
    )
    .await
    .expect("the rollup row");
}

async fn get(w: &World, who: Option<&Caller>, target: &str) -> Answer {
    api::call(&w.db, who, "GET", target, &NONE).await
}

#[test]
fn premium_reads_need_a_subscription_with_the_feature() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let history = format!("/v1/hives/{}/history", w.hive);
        let peaks = format!("/v1/hives/{}/peak-hours", w.hive);
        for path in [&history, &peaks] {
            assert_eq!(get(&w, None, path).await.status, 401, "{path}");
        }
        let refused = |a: &Answer| (a.status, a.body["code"].clone());
        let payment = (402, json!("payment_required"));
        for (uid, code, starts, ends, cancelled) in [
            ("expired", "premium", "-2 months", Some("-1 month"), None),
            ("cancelled", "premium", "-1 month", None, Some("-1 day")),
            ("future", "premium", "1 day", None, None),
            ("free", "free", "-1 month", None, None),
        ] {
            subscribe(&w.db, uid, code, starts, ends, cancelled).await;
            let who = caller(uid, false);
            for path in [&history, &peaks] {
                let a = get(&w, Some(&who), path).await;
                assert_eq!(refused(&a), payment, "{uid} {path}: {a:?}");
            }
        }
        for who in [&w.bob, &w.root, &w.alice] {
            let a = get(&w, Some(who), &history).await;
            assert_eq!(refused(&a), payment, "{}: {a:?}", who.uid);
        }
        let nobody = get(&w, Some(&w.bob), "/v1/hives/999/history").await;
        assert_eq!(nobody.status, 402, "the gate comes before the hive");

        subscribe(&w.db, "paid", "premium", "-1 day", Some("1 month"), None).await;
        subscribe(&w.db, "leaving", "premium", "-1 day", None, Some("1 week")).await;
        for uid in ["paid", "leaving"] {
            let who = caller(uid, false);
            for path in [&history, &peaks] {
                let a = get(&w, Some(&who), path).await;
                assert_eq!(a.status, 200, "{uid} {path}: {a:?}");
                assert_eq!(a.body["hive_id"], json!(w.hive));
                assert_eq!(a.body["time_zone"], json!("Europe/Bucharest"));
            }
        }
        let paid = caller("paid", false);
        for path in ["/v1/hives/999/history", "/v1/hives/999/peak-hours"] {
            assert_eq!(get(&w, Some(&paid), path).await.status, 404, "{path}");
        }
        let del = w
            .alice("DELETE", &format!("/v1/hives/{}", w.hive), NONE)
            .await;
        assert_eq!(del.status, 204, "{del:?}");
        for path in [&history, &peaks] {
            assert_eq!(get(&w, Some(&paid), path).await.status, 404, "{path}");
        }
    });
}

#[test]
fn premium_paths_answer_404_and_405_like_the_others() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let paid = Some(&w.root);
        for path in [
            "/v1/hives/1/history/x",
            "/v1/hives/1/peak_hours",
            "/v1/hives/1/histories",
        ] {
            assert_eq!(w.status(paid, "GET", path).await, 404, "{path}");
        }
        for m in ["POST", "PUT", "PATCH", "DELETE"] {
            assert_eq!(w.status(paid, m, "/v1/hives/1/history").await, 405, "{m}");
            assert_eq!(
                w.status(paid, m, "/v1/hives/1/peak-hours").await,
                405,
                "{m}"
            );
        }
    });
}

/// The `hour`s of a history answer.
fn hours(a: &Answer) -> Vec<&str> {
    a.body["hours"]
        .as_array()
        .unwrap_or_else(|| panic!("no hours: {a:?}"))
        .iter()
        .map(|h| h["hour"].as_str().expect("an hour"))
        .collect()
}

#[test]
fn history_has_one_item_per_local_hour_across_dst() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        subscribe(&w.db, "paid", "premium", "-1 day", None, None).await;
        let paid = caller("paid", false);
        let h = w.hive;
        // 2026-10-25, Europe/Bucharest: 04:00 EEST becomes 03:00 EET; 03:00 is lived twice.
        hourly(&w.db, h, "'2026-10-25T00:00:00Z'", 10, HOUR_MS, 14).await;
        hourly(&w.db, h, "'2026-10-25T01:00:00Z'", 4, HOUR_MS / 2, 6).await;
        let path = format!("/v1/hives/{h}/history?from=2026-10-25&to=2026-10-25");
        let a = get(&w, Some(&paid), &path).await;
        assert_eq!(a.status, 200, "{a:?}");
        let all = hours(&a);
        assert_eq!(all.len(), 25);
        assert_eq!(all[0], "2026-10-25T00:00:00+03:00");
        assert_eq!(
            all[2..6].to_vec(),
            [
                "2026-10-25T02:00:00+03:00",
                "2026-10-25T03:00:00+03:00",
                "2026-10-25T03:00:00+02:00",
                "2026-10-25T04:00:00+02:00",
            ]
        );
        assert_eq!(all[24], "2026-10-25T23:00:00+02:00");
        let items = &a.body["hours"];
        assert_eq!(
            items[3],
            json!({"hour": "2026-10-25T03:00:00+03:00", "average": 10.0, "peak": 14,
                   "entries": 15, "exits": 14, "completeness": 1.0})
        );
        assert_eq!(
            items[4],
            json!({"hour": "2026-10-25T03:00:00+02:00", "average": 4.0, "peak": 6,
                   "entries": 7, "exits": 6, "completeness": 0.5})
        );
        assert_eq!(
            items[5],
            json!({"hour": "2026-10-25T04:00:00+02:00", "average": null, "peak": null,
                   "entries": null, "exits": null, "completeness": 0.0})
        );

        // 2026-03-29: 03:00 EET becomes 04:00 EEST; 03:00 never happens.
        hourly(&w.db, h, "'2026-03-29T01:00:00Z'", 3, HOUR_MS, 5).await;
        let path = format!("/v1/hives/{h}/history?from=2026-03-29&to=2026-03-30");
        let a = get(&w, Some(&paid), &path).await;
        let all = hours(&a);
        assert_eq!(all.len(), 23 + 24);
        assert_eq!(
            all[2..4].to_vec(),
            ["2026-03-29T02:00:00+02:00", "2026-03-29T04:00:00+03:00"]
        );
        assert_eq!(a.body["hours"][3]["average"], json!(3.0));
        assert_eq!(all[23], "2026-03-30T00:00:00+03:00");
    });
}

#[test]
fn history_ranges_default_to_a_week_and_are_checked() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        subscribe(&w.db, "paid", "premium", "-1 day", None, None).await;
        let paid = caller("paid", false);
        let path = format!("/v1/hives/{}/history", w.hive);
        let at = |q: &str| format!("{path}?{q}");

        let week = get(&w, Some(&paid), &path).await;
        let all = hours(&week);
        assert!((167..=169).contains(&all.len()), "{}", all.len());
        let today =
            w.db.query_one(
                "SELECT to_char(now() AT TIME ZONE 'Europe/Bucharest', 'YYYY-MM-DD')",
                &[],
            )
            .await
            .expect("today")
            .get::<_, String>(0);
        assert!(all[all.len() - 1].starts_with(&format!("{today}T23:00:00")));
        assert!(all.iter().all(|h| h.len() == 25), "{all:?}");

        for q in ["from=2026-10-25", "to=2026-10-31"] {
            let a = get(&w, Some(&paid), &at(q)).await;
            let all = hours(&a);
            assert_eq!(all.len(), 7 * 24 + 1, "{q}");
            assert_eq!(all[0], "2026-10-25T00:00:00+03:00", "{q}");
            assert_eq!(all[all.len() - 1], "2026-10-31T23:00:00+02:00", "{q}");
        }
        let month = get(&w, Some(&paid), &at("from=2026-01-01&to=2026-01-31")).await;
        assert_eq!(hours(&month).len(), 31 * 24);
        let last = get(&w, Some(&paid), &at("from=9999-12-31")).await;
        assert_eq!(hours(&last).len(), 24, "the calendar ends at 9999");
        let first = get(&w, Some(&paid), &at("to=1970-01-03")).await;
        assert_eq!(hours(&first).len(), 3 * 24, "the calendar starts in 1970");

        for (q, field) in [
            ("from=2026-01-01&to=2026-02-01", "to"),
            ("from=2026-01-02&to=2026-01-01", "to"),
            ("from=2026-02-30", "from"),
            ("from=26-01-01", "from"),
            ("to=yesterday", "to"),
            ("from=2026-01-01&from=2026-01-02", "from"),
            ("limit=10", "limit"),
        ] {
            let a = get(&w, Some(&paid), &at(q)).await;
            assert_eq!(a.refusal(), (400, Some(field)), "{q}: {a:?}");
        }
    });
}

/// The local ISO weekday (1 Monday) and hour of the instant `at` (SQL) in Bucharest.
async fn slot(db: &Client, at: &str) -> (usize, usize) {
    let sql = format!(
        "SELECT extract(isodow FROM ({at}) AT TIME ZONE 'Europe/Bucharest')::int,
                extract(hour FROM ({at}) AT TIME ZONE 'Europe/Bucharest')::int"
    );
    let r = db.query_one(&sql, &[]).await.expect("the slot");
    let (d, h): (i32, i32) = (r.get(0), r.get(1));
    (d as usize - 1, h as usize)
}

/// The instant the local hour started `back` (an SQL interval) before the current local hour.
fn local_hour(back: &str) -> String {
    format!(
        "((date_trunc('hour', now() AT TIME ZONE 'Europe/Bucharest') - interval '{back}')
          AT TIME ZONE 'Europe/Bucharest')"
    )
}

/// The relative values of a peak-hours answer, [weekday][hour].
fn grid(a: &Answer) -> Vec<Vec<Option<f64>>> {
    let days = a.body["days"]
        .as_array()
        .unwrap_or_else(|| panic!("no days: {a:?}"));
    assert_eq!(days.len(), 7);
    let names = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    days.iter()
        .zip(names)
        .map(|(d, name)| {
            assert_eq!(d["weekday"], json!(name));
            let hours = d["hours"].as_array().expect("hours");
            assert_eq!(hours.len(), 24);
            (0..24)
                .map(|h| {
                    assert_eq!(hours[h]["hour"], json!(h));
                    hours[h]["relative"].as_f64()
                })
                .collect()
        })
        .collect()
}

fn observed(g: &[Vec<Option<f64>>]) -> usize {
    g.iter().flatten().filter(|v| v.is_some()).count()
}

#[test]
fn peak_hours_are_time_weighted_and_relative_to_the_busiest_hour() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        subscribe(&w.db, "paid", "premium", "-1 day", None, None).await;
        let paid = caller("paid", false);
        let path = format!("/v1/hives/{}/peak-hours", w.hive);

        let empty = get(&w, Some(&paid), &path).await;
        assert_eq!(empty.status, 200, "{empty:?}");
        assert_eq!(empty.body["weeks"], json!(4));
        assert_eq!(observed(&grid(&empty)), 0);

        let h = w.hive;
        let (a, a_week_before) = (local_hour("1 day 3 hours"), local_hour("8 days 3 hours"));
        let (b, unseen) = (local_hour("2 days 5 hours"), local_hour("3 days 7 hours"));
        let old = local_hour("39 days 9 hours");
        // a: 20 for a whole hour, and 40 for half an hour a week before: 26.67 time-weighted.
        hourly(&w.db, h, &a, 20, HOUR_MS, 25).await;
        hourly(&w.db, h, &a_week_before, 40, HOUR_MS / 2, 45).await;
        hourly(&w.db, h, &b, 80, HOUR_MS, 90).await;
        hourly(&w.db, h, &unseen, 0, 0, 0).await;
        hourly(&w.db, h, &old, 160, HOUR_MS, 170).await;
        let (sa, sb) = (slot(&w.db, &a).await, slot(&w.db, &b).await);
        let (su, so) = (slot(&w.db, &unseen).await, slot(&w.db, &old).await);
        assert_eq!(slot(&w.db, &a_week_before).await, sa);

        let four = get(&w, Some(&paid), &path).await;
        let g = grid(&four);
        let third = (20.0 * 3600.0 + 40.0 * 1800.0) / 5400.0 / 80.0;
        assert!((g[sa.0][sa.1].expect("a") - third).abs() < 1e-9, "{g:?}");
        assert_eq!(g[sb.0][sb.1], Some(1.0));
        assert_eq!(g[su.0][su.1], None, "nothing observed");
        assert_eq!(g[so.0][so.1], None, "five weeks ago");
        assert_eq!(observed(&g), 2);

        let six = get(&w, Some(&paid), &format!("{path}?weeks=6")).await;
        assert_eq!(six.body["weeks"], json!(6));
        let g = grid(&six);
        assert_eq!(g[so.0][so.1], Some(1.0));
        assert_eq!(g[sb.0][sb.1], Some(0.5));
        assert_eq!(observed(&g), 3);

        let one = get(&w, Some(&paid), &format!("{path}?weeks=1")).await;
        let g = grid(&one);
        assert_eq!(g[sa.0][sa.1], Some(0.25), "a week back holds a alone");
        assert_eq!(observed(&g), 2);

        for q in [
            "weeks=0",
            "weeks=13",
            "weeks=two",
            "weeks=",
            "weeks=1&weeks=2",
        ] {
            let a = get(&w, Some(&paid), &format!("{path}?{q}")).await;
            assert_eq!(a.refusal(), (400, Some("weeks")), "{q}: {a:?}");
        }
        let a = get(&w, Some(&paid), &format!("{path}?from=2026-01-01")).await;
        assert_eq!(a.refusal(), (400, Some("from")));
    });
}
