//! The public resources (`modules::api::public`) on a real, migrated PostgreSQL: occupancy with
//! vs_usual, details, hive types, the search by each filter and combined (case and accents
//! ignored, distance order and radius), pages that neither repeat nor skip while hives are
//! added, and what the cache manager pulls (`changed_since`, `all_after`). Run through
//! `scripts/with-postgres cargo test --test api_public`.

// The business API's helpers are shared with tests/api_calls.rs, which uses them all.
#[path = "common/api.rs"]
#[allow(dead_code)]
mod api;
mod common;

use std::collections::HashSet;
use std::time::SystemTime;

use api::{hive_body, with_db, World};
use bizzy::modules::api::public::{self, search, Changed};
use serde_json::{json, Value};
use tokio_postgres::Client;

/// A hive of the world's account, as root: its id.
async fn add(w: &World, name: &str, kind: &str, zip: &str, lat: f64, lon: f64) -> i64 {
    let mut b = hive_body(name);
    b["type"] = json!(kind);
    b["address"]["zip"] = json!(zip);
    b["address"]["latitude"] = json!(lat);
    b["address"]["longitude"] = json!(lon);
    let h = w.by(&w.root, "POST", &w.under("hives"), b).await;
    assert_eq!(h.status, 201, "{h:?}");
    h.id()
}

/// The answer of a search, or the refusal's (status, field).
async fn find(db: &Client, query: &str) -> Result<Value, (u16, Option<String>)> {
    let s = search::parse(Some(query)).map_err(|e| (e.status, e.field))?;
    let j = search::run(db, &s).await.map_err(|e| (e.status, e.field))?;
    assert_eq!(j.status, 200);
    Ok(serde_json::from_slice(&j.body).expect("JSON"))
}

/// The ids a search finds, in order (one page).
async fn ids(db: &Client, query: &str) -> Vec<i64> {
    let v = find(db, query)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e:?}"));
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|h| h["id"].as_i64().expect("id"))
        .collect()
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

async fn exec(db: &Client, sql: &str) {
    db.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The database's clock now: what `changed_since` is given.
async fn clock(db: &Client) -> SystemTime {
    db.query_one("SELECT clock_timestamp()", &[])
        .await
        .expect("a clock")
        .get(0)
}

#[test]
fn details_carry_address_and_images_and_no_account() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        exec(
            &w.db,
            &format!(
                "UPDATE hive SET description = 'Live music' WHERE id = {h};
                 INSERT INTO hive_image (hive_id, url, kind, position) VALUES
                   ({h}, 'https://img.test/2.jpg', 'secondary', 2),
                   ({h}, 'https://img.test/0.jpg', 'cover', 0),
                   ({h}, 'https://img.test/1.jpg', 'secondary', 1)",
                h = w.hive
            ),
        )
        .await;
        let d = public::hive(&w.db, w.hive).await.unwrap().expect("live");
        let text = String::from_utf8(d.clone()).unwrap();
        assert!(
            text.starts_with(&format!(
                r#"{{"id":{},"name":"The Hive","type":"bar""#,
                w.hive
            )),
            "{text}"
        );
        assert_eq!(
            json_of(&d),
            json!({
                "id": w.hive, "name": "The Hive", "type": "bar", "description": "Live music",
                "address": {"street": "Str. Lipscani 1", "city": "Bucharest", "zip": "030031",
                            "country": "RO", "latitude": 44.43, "longitude": 26.1},
                "time_zone": "Europe/Bucharest", "capacity": 120, "reset_time": "04:00",
                "images": [{"url": "https://img.test/0.jpg", "kind": "cover"},
                           {"url": "https://img.test/1.jpg", "kind": "secondary"},
                           {"url": "https://img.test/2.jpg", "kind": "secondary"}],
            })
        );
        let other = add(&w, "Bare", "gym", "1", 0.0, 0.0).await;
        let bare = json_of(&public::hive(&w.db, other).await.unwrap().unwrap());
        assert_eq!(
            (&bare["images"], &bare["description"]),
            (&json!([]), &Value::Null)
        );
        assert_eq!(public::hive(&w.db, 999_999).await.unwrap(), None);
        let del = w
            .alice("DELETE", &format!("/v1/hives/{other}"), Value::Null)
            .await;
        assert_eq!(del.status, 204);
        assert_eq!(public::hive(&w.db, other).await.unwrap(), None);
        assert_eq!(public::occupancy(&w.db, other).await.unwrap(), None);
    });
}

#[test]
fn hive_types_in_catalogue_order() {
    with_db(|_, db| async move {
        let t = json_of(&public::hive_types(&db).await.unwrap());
        let codes: Vec<&str> = t["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap())
            .collect();
        assert_eq!(
            codes,
            ["bar", "cafe", "restaurant", "club", "store", "gym", "other"]
        );
        assert_eq!(t["items"][1], json!({"code": "cafe", "name": "Café"}));
    });
}

#[test]
fn occupancy_is_section_8_plus_vs_usual() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        exec(
            &w.db,
            &format!(
                "UPDATE hive_status SET occupancy = 30, updated_at = '2026-11-22 18:30:05+00'
                 WHERE hive_id = {}",
                w.hive
            ),
        )
        .await;
        let o = public::occupancy(&w.db, w.hive).await.unwrap().unwrap();
        assert_eq!(
            String::from_utf8(o).unwrap(),
            format!(
                r#"{{"hive_id":{},"occupancy":30,"capacity":120,"percent":25.0,"updated_at":"2026-11-22T18:30:05Z","stale":false,"degraded":false,"vs_usual":null}}"#,
                w.hive
            )
        );
        assert_eq!(public::occupancy(&w.db, 999_999).await.unwrap(), None);

        // One week back, complete: not enough. An incomplete hour and another hour do not count.
        let hour = |weeks: i32, shift: &str, avg: f64, observed_ms: i64| {
            format!(
                "INSERT INTO hive_hourly (hive_id, hour, occupancy_ms, observed_ms)
                 SELECT {h}, (date_trunc('hour', now() AT TIME ZONE 'Europe/Bucharest')
                              - interval '{weeks} weeks' + interval '{shift}')
                             AT TIME ZONE 'Europe/Bucharest',
                        ({avg} * {observed_ms})::bigint, {observed_ms};",
                h = w.hive
            )
        };
        exec(&w.db, &hour(1, "0 hours", 40.0, 3_600_000)).await;
        exec(&w.db, &hour(2, "0 hours", 99.0, 1_000_000)).await;
        exec(&w.db, &hour(3, "1 hour", 99.0, 3_600_000)).await;
        exec(&w.db, &hour(5, "0 hours", 99.0, 3_600_000)).await;
        let o = json_of(&public::occupancy(&w.db, w.hive).await.unwrap().unwrap());
        assert_eq!(
            o["vs_usual"],
            Value::Null,
            "one hour of history is not enough"
        );

        // Four weeks back, half observed: the usual is (40 + 20) / 2 = 30, as busy as now.
        exec(&w.db, &hour(4, "0 hours", 20.0, 1_800_000)).await;
        let o = json_of(&public::occupancy(&w.db, w.hive).await.unwrap().unwrap());
        assert_eq!(o["vs_usual"], 100, "{o}");
        exec(
            &w.db,
            &format!(
                "UPDATE hive_status SET occupancy = 45 WHERE hive_id = {}",
                w.hive
            ),
        )
        .await;
        let both = public::occupancies(&w.db, &[w.hive, 999_999])
            .await
            .unwrap();
        assert_eq!(both.len(), 1);
        assert_eq!(both[0].0, w.hive);
        assert_eq!(json_of(&both[0].1)["vs_usual"], 150);

        // Usually empty at this hour: no ratio.
        exec(
            &w.db,
            &format!(
                "UPDATE hive_hourly SET occupancy_ms = 0 WHERE hive_id = {}",
                w.hive
            ),
        )
        .await;
        let o = json_of(&public::occupancy(&w.db, w.hive).await.unwrap().unwrap());
        assert_eq!(o["vs_usual"], Value::Null);
    });
}

#[test]
fn the_usual_hour_is_the_local_one_across_a_dst_change() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        // Bucharest leaves summer time on 2026-10-25: 18:00 local is 16:00Z on the 28th,
        // 15:00Z a week and two weeks before.
        exec(
            &w.db,
            &format!(
                "INSERT INTO hive_hourly (hive_id, hour, occupancy_ms, observed_ms) VALUES
                   ({h}, '2026-10-21 15:00:00+00', 36000000, 3600000),
                   ({h}, '2026-10-14 15:00:00+00', 72000000, 3600000),
                   ({h}, '2026-10-21 16:00:00+00', 360000000, 3600000)",
                h = w.hive
            ),
        )
        .await;
        let usual = |at: &'static str| {
            let db = &w.db;
            let hive = w.hive;
            async move {
                db.query_one(
                    "SELECT hive_usual($1, $2::text::timestamptz)",
                    &[&hive, &at],
                )
                .await
                .unwrap()
                .get::<_, Option<f64>>(0)
            }
        };
        assert_eq!(usual("2026-10-28 16:00:00+00").await, Some(15.0));
        assert_eq!(usual("2026-10-28 16:59:59+00").await, Some(15.0));
        assert_eq!(usual("2026-10-28 17:00:00+00").await, None);
    });
}

/// The world's hive and five more, for the searches: (hive, central, noir, sud, pub, odd).
async fn town(w: &World) -> [i64; 6] {
    let central = add(w, "Café Central", "cafe", "010101", 44.43, 26.1).await;
    // About 1,112 m north of the world's hive, then 14 km south, then 63 km north.
    let noir = add(w, "CAFÉ NOIR", "bar", "020202", 44.44, 26.1).await;
    let sud = add(w, "Cafeteria Sud", "restaurant", "010101", 44.3, 26.1).await;
    let pubb = add(w, "The Pub", "bar", "030303", 45.0, 26.1).await;
    let odd = add(w, r"100% _Bar\", "bar", "040404", -33.9, 151.2).await;
    [w.hive, central, noir, sud, pubb, odd]
}

#[test]
fn search_by_each_filter_alone() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let [hive, central, noir, sud, pubb, odd] = town(&w).await;
        let all = vec![hive, central, noir, sud, pubb, odd];
        assert_eq!(ids(&w.db, "").await, all);
        for q in ["cafe", "CAFE", "café", "Caf%C3%A9", "CAF%C3%89"] {
            assert_eq!(
                ids(&w.db, &format!("q={q}")).await,
                vec![central, noir, sud],
                "{q}"
            );
        }
        assert_eq!(ids(&w.db, "q=%C3%A9+c").await, vec![central]);
        assert_eq!(ids(&w.db, "q=noir").await, vec![noir]);
        assert_eq!(ids(&w.db, "q=%25").await, vec![odd], "% is a character");
        assert_eq!(ids(&w.db, "q=_").await, vec![odd], "_ is a character");
        assert_eq!(ids(&w.db, "q=%5C").await, vec![odd], "\\ is a character");
        assert_eq!(ids(&w.db, "q=zzz").await, Vec::<i64>::new());
        assert_eq!(ids(&w.db, "type=bar").await, vec![hive, noir, pubb, odd]);
        assert_eq!(ids(&w.db, "type=sauna").await, Vec::<i64>::new());
        assert_eq!(ids(&w.db, "zip=010101").await, vec![central, sud]);
        assert_eq!(ids(&w.db, "zip=0101").await, Vec::<i64>::new(), "exact");

        let near = find(&w.db, "near=44.43,26.1&radius_m=2000").await.unwrap();
        let items = near["items"].as_array().unwrap();
        let found: Vec<i64> = items.iter().map(|i| i["id"].as_i64().unwrap()).collect();
        assert_eq!(found, vec![hive, central, noir], "by distance, then id");
        assert_eq!(items[0]["distance_m"], 0.0);
        let d = items[2]["distance_m"].as_f64().unwrap();
        assert!((1_100.0..1_125.0).contains(&d), "{d}");
        assert_eq!(items[2]["name"], "CAFÉ NOIR");
        assert_eq!(
            ids(&w.db, "near=44.43,26.1&radius_m=1000").await,
            vec![hive, central]
        );
        assert_eq!(
            ids(&w.db, "near=44.43,26.1&radius_m=50000").await,
            vec![hive, central, noir, sud]
        );
        let plain = find(&w.db, "type=bar").await.unwrap();
        assert!(plain["items"][0].get("distance_m").is_none());
        assert!(plain["items"][0].get("occupancy").is_none());
        assert!(plain["items"][0].get("account_id").is_none());
    });
}

#[test]
fn search_filters_combine_and_deleted_hives_never_appear() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let [hive, central, noir, sud, _, _] = town(&w).await;
        assert_eq!(ids(&w.db, "q=cafe&type=bar").await, vec![noir]);
        assert_eq!(ids(&w.db, "q=cafe&zip=010101").await, vec![central, sud]);
        assert_eq!(ids(&w.db, "type=cafe&zip=010101").await, vec![central]);
        assert_eq!(
            ids(&w.db, "q=cafe&near=44.43,26.1&radius_m=2000").await,
            vec![central, noir]
        );
        assert_eq!(
            ids(&w.db, "type=bar&near=44.43,26.1&radius_m=2000").await,
            vec![hive, noir]
        );
        assert_eq!(
            ids(
                &w.db,
                "q=caf&type=restaurant&zip=010101&near=44.43,26.1&radius_m=50000"
            )
            .await,
            vec![sud]
        );
        let del = w
            .alice("DELETE", &format!("/v1/hives/{central}"), Value::Null)
            .await;
        assert_eq!(del.status, 204);
        assert_eq!(ids(&w.db, "q=cafe").await, vec![noir, sud]);
        assert_eq!(
            ids(&w.db, "near=44.43,26.1&radius_m=2000").await,
            vec![hive, noir]
        );
        assert_eq!(ids(&w.db, "zip=010101").await, vec![sud]);
    });
}

#[test]
fn search_refusals_name_their_parameter() {
    with_db(|_, db| async move {
        for (query, field) in [
            ("q=", "q"),
            ("type=BAR", "type"),
            ("zip=", "zip"),
            ("near=1,2", "radius_m"),
            ("radius_m=5", "radius_m"),
            ("near=1&radius_m=5", "near"),
            ("near=100,2&radius_m=5", "near"),
            ("near=1,2&radius_m=50001", "radius_m"),
            ("limit=0", "limit"),
            ("cursor=xyz", "cursor"),
            ("city=Cluj", "city"),
        ] {
            let e = find(&db, query).await.unwrap_err();
            assert_eq!(e, (400, Some(field.to_string())), "{query}");
        }
    });
}

/// Every page of a search, `between` run after each page: the ids in the order shown.
async fn pages<F, Fut>(db: &Client, query: &str, mut between: F) -> Vec<i64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for n in 0.. {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_string(),
        };
        let v = find(db, &q).await.unwrap_or_else(|e| panic!("{q}: {e:?}"));
        let items = v["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|i| i["id"].as_i64().unwrap()));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        between(n).await;
        assert!(n < 50, "the pages never end");
    }
    seen
}

#[test]
fn pages_by_id_neither_repeat_nor_skip_while_hives_are_added() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let mut before = vec![w.hive];
        for i in 0..6 {
            before.push(add(&w, &format!("Bar {i}"), "bar", "1", 44.0, 26.0).await);
        }
        let added = std::cell::RefCell::new(Vec::new());
        let seen = pages(&w.db, "type=bar&limit=2", |n| {
            let (w, added) = (&w, &added);
            async move {
                let id = add(w, &format!("New {n}"), "bar", "1", 44.0, 26.0).await;
                added.borrow_mut().push(id);
            }
        })
        .await;
        let unique: HashSet<i64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "no repeat: {seen:?}");
        assert_eq!(&seen[..before.len()], &before[..], "no skip: {seen:?}");
        assert!(seen.windows(2).all(|p| p[0] < p[1]), "by id: {seen:?}");
        assert!(!added.borrow().is_empty());
    });
}

#[test]
fn pages_near_a_point_neither_repeat_nor_skip_while_hives_are_added() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        // The world's hive at 44.43,26.1; then pairs at the same place (equal distances, by
        // id), each pair farther north.
        let mut before = vec![w.hive];
        for i in 1..=4 {
            let lat = 44.43 + f64::from(i) * 0.001;
            before.push(add(&w, &format!("A{i}"), "bar", "1", lat, 26.1).await);
            before.push(add(&w, &format!("B{i}"), "bar", "1", lat, 26.1).await);
        }
        let later = std::cell::RefCell::new(Vec::new());
        let query = "near=44.43,26.1&radius_m=5000&limit=2";
        let seen = pages(&w.db, query, |n| {
            let (w, later) = (&w, &later);
            async move {
                // One at the very point (before every cursor: never shown), one at the same
                // place as the last pair, one beyond all (shown at the end).
                add(w, &format!("Here {n}"), "bar", "1", 44.43, 26.1).await;
                add(w, &format!("Tie {n}"), "bar", "1", 44.434, 26.1).await;
                let far = add(w, &format!("Far {n}"), "bar", "1", 44.46, 26.1).await;
                later.borrow_mut().push(far);
            }
        })
        .await;
        let unique: HashSet<i64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "no repeat: {seen:?}");
        for id in &before {
            assert!(unique.contains(id), "{id} skipped: {seen:?}");
        }
        let pos = |id: i64| seen.iter().position(|s| *s == id).unwrap();
        assert!(
            before.windows(2).all(|p| pos(p[0]) < pos(p[1])),
            "by distance then id: {seen:?}"
        );
        for far in later.borrow().iter() {
            assert!(unique.contains(far), "{far} beyond all is shown at the end");
        }
    });
}

/// The ids `changed_since(since)` names.
async fn changed_ids(db: &Client, since: SystemTime) -> Vec<i64> {
    public::changed_since(db, since)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect()
}

#[test]
fn changed_since_sees_every_kind_of_change() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let a = w.hive;
        let b = add(&w, "B", "bar", "1", 1.0, 1.0).await;
        let c = add(&w, "C", "bar", "1", 1.0, 1.0).await;
        let d = add(&w, "D", "bar", "1", 1.0, 1.0).await;
        let start = clock(&w.db).await;
        assert_eq!(changed_ids(&w.db, start).await, Vec::<i64>::new());

        let t = clock(&w.db).await;
        exec(
            &w.db,
            &format!(
                "UPDATE hive_status SET occupancy = 7, updated_at = now() WHERE hive_id = {a}"
            ),
        )
        .await;
        let got = public::changed_since(&w.db, t).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, a);
        let occ = json_of(got[0].occupancy.as_deref().unwrap());
        assert_eq!(
            (occ["hive_id"].as_i64(), occ["occupancy"].as_i64()),
            (Some(a), Some(7))
        );
        assert_eq!(
            got[0].occupancy,
            public::occupancy(&w.db, a).await.unwrap(),
            "the same bytes as the occupancy answer"
        );
        assert_eq!(got[0].hive, public::hive(&w.db, a).await.unwrap());

        let t = clock(&w.db).await;
        let moved = w
            .alice(
                "PATCH",
                &format!("/v1/hives/{b}"),
                json!({"address": {"city": "Cluj"}}),
            )
            .await;
        assert_eq!(moved.status, 200);
        exec(&w.db, &format!("UPDATE address SET zip = '9' WHERE id = (SELECT address_id FROM hive WHERE id = {b})")).await;
        assert_eq!(changed_ids(&w.db, t).await, vec![b]);
        let t = clock(&w.db).await;
        exec(
            &w.db,
            &format!(
                "UPDATE address SET street = 'Moved 2'
                 WHERE id = (SELECT address_id FROM hive WHERE id = {c})"
            ),
        )
        .await;
        let got = public::changed_since(&w.db, t).await.unwrap();
        assert_eq!(got.iter().map(|c| c.id).collect::<Vec<_>>(), vec![c]);
        assert_eq!(
            json_of(got[0].hive.as_deref().unwrap())["address"]["street"],
            "Moved 2"
        );

        let t = clock(&w.db).await;
        exec(
            &w.db,
            &format!(
                "INSERT INTO hive_image (hive_id, url) VALUES ({d}, 'https://img.test/d.jpg')"
            ),
        )
        .await;
        assert_eq!(changed_ids(&w.db, t).await, vec![d]);
        let t = clock(&w.db).await;
        exec(
            &w.db,
            &format!("UPDATE hive_image SET position = 3 WHERE hive_id = {d}"),
        )
        .await;
        assert_eq!(changed_ids(&w.db, t).await, vec![d]);
        let t = clock(&w.db).await;
        exec(
            &w.db,
            &format!("DELETE FROM hive_image WHERE hive_id = {d}"),
        )
        .await;
        let got = public::changed_since(&w.db, t).await.unwrap();
        assert_eq!(got.iter().map(|c| c.id).collect::<Vec<_>>(), vec![d]);
        assert_eq!(
            json_of(got[0].hive.as_deref().unwrap())["images"],
            json!([])
        );

        let t = clock(&w.db).await;
        let del = w
            .alice("DELETE", &format!("/v1/hives/{c}"), Value::Null)
            .await;
        assert_eq!(del.status, 204);
        assert_eq!(
            public::changed_since(&w.db, t).await.unwrap(),
            vec![Changed {
                id: c,
                hive: None,
                occupancy: None
            }]
        );
        assert_eq!(changed_ids(&w.db, start).await, vec![a, b, c, d]);
    });
}

#[test]
fn all_after_pages_through_the_live_hives() {
    with_db(|_, db| async move {
        let w = World::new(db).await;
        let mut live = vec![w.hive];
        for i in 0..4 {
            live.push(add(&w, &format!("H{i}"), "bar", "1", 1.0, 1.0).await);
        }
        let gone = live.remove(2);
        let del = w
            .alice("DELETE", &format!("/v1/hives/{gone}"), Value::Null)
            .await;
        assert_eq!(del.status, 204);
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = public::all_after(&w.db, after, 2).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.id;
            for c in &page {
                assert!(c.hive.is_some() && c.occupancy.is_some(), "{c:?}");
                assert_eq!(c.occupancy, public::occupancy(&w.db, c.id).await.unwrap());
                assert_eq!(c.hive, public::hive(&w.db, c.id).await.unwrap());
            }
            seen.extend(page.iter().map(|c| c.id));
        }
        assert_eq!(seen, live);
    });
}
