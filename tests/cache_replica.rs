//! The cache manager's replica (`modules::cache::manager`) against a real, migrated PostgreSQL
//! and real memcached servers: the manager's body runs in a thread of the test, as the master's
//! helper process would run it, with a real `Stop` the test requests. It must fill the replica,
//! follow NOTIFY within 0.5 s, catch what no notification told within a pass, refill a
//! memcached that lost its data, spread keys by the ring, survive a PostgreSQL outage, and stop
//! promptly.
//!
//! Run as `scripts/with-postgres cargo test --test cache_replica`.

mod common;

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bizzy::core::config::Conf;
use bizzy::core::process::{Helper, HelperCtx, Stop, StopKind};
use bizzy::core::shm::Zones;
use bizzy::modules::cache::manager::CacheManager;
use bizzy::modules::cache::{keys, ring::Ring};
use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};
use common::cluster::Cluster;
use common::eventually;
use common::memcached::Memcached;
use common::pg::{query, TestDb};

/// A cache manager body running in a thread.
struct Manager {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl Manager {
    /// The manager of `[database] url` and `[cache] memcached = servers`, `max_stale` as given.
    fn start(url: &str, servers: &[String], max_stale: &str) -> Manager {
        let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
        Manager::with_conf(format!(
            "[database]\nurl = \"{url}\"\nmigrate_on_start = false\n\n\
             [cache]\nmemcached = [{}]\nmax_stale = \"{max_stale}\"\n",
            list.join(", ")
        ))
    }

    /// The manager of the configuration `text`.
    fn with_conf(text: String) -> Manager {
        let stop = Arc::new(Stop::new().expect("a pipe"));
        let theirs = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let sections = bizzy::server::sections(&bizzy::modules::all());
            let conf = Conf::parse(&text, Path::new("test.toml"), Path::new("/tmp"), &sections)
                .expect("the configuration reads");
            let zones = Zones::build(&[], None).expect("no zones");
            let manager = CacheManager::new(&conf).expect("[cache] is written");
            let ctx = HelperCtx {
                conf: &conf,
                zones: &zones,
                generation: 0,
                stop: &theirs,
            };
            manager.run(&ctx).expect("the manager ends well");
        });
        Manager {
            stop,
            thread: Some(thread),
        }
    }

    fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Asks it to stop; how long it took to return.
    fn stop(&mut self, kind: StopKind) -> Duration {
        let t = Instant::now();
        self.stop.request(kind);
        let thread = self.thread.take().expect("running");
        while !thread.is_finished() {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "the manager does not stop"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        thread.join().expect("the manager thread does not panic");
        t.elapsed()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop.request(StopKind::Terminate);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Adds `n` hives named `{prefix} 1` .. `{prefix} n`; their ids.
fn add_hives(url: &str, prefix: &str, n: usize) -> Vec<i64> {
    query(
        url,
        "INSERT INTO account (name) SELECT 'Acme' WHERE NOT EXISTS (SELECT 1 FROM account)",
    );
    let rows = query(
        url,
        &format!(
            "WITH ad AS (
                 INSERT INTO address (street, city, zip, country, latitude, longitude)
                 SELECT 'Str. ' || g, 'Bucharest', '030031', 'RO', 44.43, 26.10
                 FROM generate_series(1, {n}) g RETURNING id)
             INSERT INTO hive (account_id, address_id, hive_type_id, name, time_zone, capacity)
             SELECT (SELECT min(id) FROM account), ad.id, t.id, '{prefix} ' || ad.id,
                    'Europe/Bucharest', 100
             FROM ad, hive_type t WHERE t.code = 'bar'
             RETURNING id"
        ),
    );
    rows.iter()
        .map(|r| r[0].as_deref().expect("an id").parse().expect("a number"))
        .collect()
}

/// A migrated test database with `n` hives.
fn database(n: usize) -> (TestDb, Vec<i64>) {
    let db = TestDb::new();
    migrate_with(&db.url, MIGRATIONS).expect("the schema applies");
    let ids = add_hives(&db.url, "Hive", n);
    (db, ids)
}

/// The occupancy of `hive` set to `n` the way the ingest does it: hive_status, and the
/// notification of `bizzy_occupancy` in the same transaction (`notify` false: silently).
fn set_occupancy(url: &str, hive: i64, n: u32, notify: bool) {
    let mut sql = format!(
        "BEGIN; UPDATE hive_status SET occupancy = {n}, updated_at = now() WHERE hive_id = {hive};"
    );
    if notify {
        sql.push_str(&format!(
            "SELECT pg_notify('bizzy_occupancy', 'test [{{\"hive_id\":{hive},\"occupancy\":{n},\
             \"capacity\":100,\"updated_at\":0,\"degraded\":false}}]');"
        ));
    }
    sql.push_str("COMMIT;");
    query(url, &sql);
}

/// Waits (at most `within`) until `key` on `m` satisfies `f`; how long it took.
fn until(
    m: &Memcached,
    key: &str,
    within: Duration,
    f: impl Fn(Option<String>) -> bool,
) -> Duration {
    let t = Instant::now();
    let ok = eventually(within, || f(m.text(key)));
    assert!(ok, "{key} after {within:?}: {:?}", m.text(key));
    t.elapsed()
}

fn has(part: &'static str) -> impl Fn(Option<String>) -> bool {
    move |v| v.is_some_and(|v| v.contains(part))
}

fn occupancy_is(n: u32) -> impl Fn(Option<String>) -> bool {
    move |v| v.is_some_and(|v| v.contains(&format!("\"occupancy\":{n},")))
}

/// The payloads of `channel` at `url` from now on, collected by a thread of their own.
fn listen(url: &str, channel: &str) -> Arc<Mutex<Vec<String>>> {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let (url, sql, theirs) = (
        url.to_string(),
        format!("LISTEN {channel}"),
        Arc::clone(&heard),
    );
    let (ready, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let (client, mut conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connects");
            let listen = client.batch_execute(&sql);
            let mut listen = std::pin::pin!(listen);
            let mut listening = false;
            loop {
                let msg = std::future::poll_fn(|cx| {
                    if !listening && listen.as_mut().poll(cx).is_ready() {
                        listening = true;
                        let _ = ready.send(());
                    }
                    conn.poll_message(cx)
                })
                .await;
                match msg {
                    Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                        theirs.lock().unwrap().push(n.payload().to_string())
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
        });
    });
    wait.recv_timeout(Duration::from_secs(10))
        .expect("LISTEN takes effect");
    heard
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
}

/// Waits until the replica holds every hive of `ids`, the types and `pass`.
fn filled(m: &Memcached, ids: &[i64], within: Duration) {
    until(m, &keys::pass(), within, |v| v.is_some());
    for id in ids {
        until(m, &keys::hive(*id), within, has("Hive"));
        until(m, &keys::occupancy(*id), within, occupancy_is(0));
    }
    until(m, &keys::hive_types(), within, has("Bar"));
}

#[test]
fn notifications_reach_the_replica_within_half_a_second() {
    let (db, ids) = database(3);
    let mc = Memcached::start();
    // Passes every 15 s: what shows within 0.5 s came through NOTIFY.
    let mut manager = Manager::start(&db.url, &[mc.addr()], "60s");
    filled(&mc, &ids, Duration::from_secs(10));
    let pass: u128 = mc.text(&keys::pass()).unwrap().parse().expect("unix ms");
    assert!(unix_ms() - pass < 10_000, "pass {pass} is recent");
    // LISTEN takes effect beside the first pass: give it a moment.
    std::thread::sleep(Duration::from_millis(300));

    let half = Duration::from_millis(500);
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    let replica = listen(&db.url, bizzy::modules::cache::REPLICA_CHANNEL);
    set_occupancy(&db.url, a, 17, true);
    until(&mc, &keys::occupancy(a), half, occupancy_is(17));
    assert!(
        eventually(half, || replica.lock().unwrap().contains(&a.to_string())),
        "the workers are told: {:?}",
        replica.lock().unwrap()
    );

    query(
        &db.url,
        &format!("UPDATE hive SET name = 'Renamed' WHERE id = {a}"),
    );
    until(&mc, &keys::hive(a), half, has("Renamed"));

    query(
        &db.url,
        &format!("UPDATE address SET city = 'Cluj' WHERE id = (SELECT address_id FROM hive WHERE id = {b})"),
    );
    until(&mc, &keys::hive(b), half, has("Cluj"));

    query(
        &db.url,
        &format!("INSERT INTO hive_image (hive_id, url) VALUES ({b}, 'https://img.example/b.jpg')"),
    );
    until(&mc, &keys::hive(b), half, has("img.example/b.jpg"));

    query(
        &db.url,
        &format!("UPDATE hive SET deleted_at = now() WHERE id = {c}"),
    );
    until(&mc, &keys::hive(c), half, |v| v.is_none());
    until(&mc, &keys::occupancy(c), half, |v| v.is_none());

    query(
        &db.url,
        "UPDATE hive_type SET name = 'Pub' WHERE code = 'bar'",
    );
    until(&mc, &keys::hive_types(), half, has("Pub"));

    let took = manager.stop(StopKind::Quit);
    assert!(took < Duration::from_secs(1), "Quit took {took:?}");
    assert_eq!(
        mc.text(&keys::hive(a)).map(|v| v.contains("Renamed")),
        Some(true)
    );
}

#[test]
fn passes_catch_up_without_notifications_and_refill_a_restarted_memcached() {
    let (db, ids) = database(2);
    let mut mc = Memcached::start();
    // max_stale 4 s: a pass every second.
    let mut manager = Manager::start(&db.url, &[mc.addr()], "4s");
    filled(&mc, &ids, Duration::from_secs(10));

    set_occupancy(&db.url, ids[0], 33, false);
    let took = until(
        &mc,
        &keys::occupancy(ids[0]),
        Duration::from_secs(3),
        occupancy_is(33),
    );
    assert!(took <= Duration::from_millis(2500), "one pass: {took:?}");
    let pass: u128 = mc.text(&keys::pass()).unwrap().parse().expect("unix ms");
    assert!(
        unix_ms() - pass < 4_000,
        "the pass is younger than max_stale"
    );

    // Down for a pass or two (the writes fail), then back, empty.
    mc.stop();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(manager.running(), "the manager outlives memcached");
    mc.start_again();
    assert_eq!(
        mc.get(&keys::hive(ids[0])),
        None,
        "a new memcached is empty"
    );
    filled_after_restart(&mc, &ids);
    assert!(manager.running());

    let took = manager.stop(StopKind::Terminate);
    assert!(took < Duration::from_secs(1), "Terminate took {took:?}");
}

/// The replica is back within two passes (of a second), with what changed meanwhile.
fn filled_after_restart(mc: &Memcached, ids: &[i64]) {
    let within = Duration::from_secs(4);
    until(mc, &keys::hive(ids[1]), within, has("Hive"));
    until(mc, &keys::occupancy(ids[0]), within, occupancy_is(33));
    until(mc, &keys::occupancy(ids[1]), within, occupancy_is(0));
    until(mc, &keys::hive_types(), within, has("Bar"));
    until(mc, &keys::pass(), within, |v| v.is_some());
}

#[test]
fn keys_spread_over_two_servers_as_the_ring_says() {
    let (db, ids) = database(24);
    let servers = [Memcached::start(), Memcached::start()];
    let addrs: Vec<String> = servers.iter().map(Memcached::addr).collect();
    let _manager = Manager::start(&db.url, &addrs, "60s");
    let ring = Ring::new(&addrs);
    let mut keys: Vec<String> = ids
        .iter()
        .flat_map(|id| [keys::hive(*id), keys::occupancy(*id)])
        .collect();
    keys.push(keys::hive_types());
    keys.push(keys::pass());
    let mut used = [0, 0];
    for key in &keys {
        let at = ring.server(key).expect("two servers");
        until(&servers[at], key, Duration::from_secs(10), |v| v.is_some());
        assert_eq!(
            servers[1 - at].get(key),
            None,
            "{key} only on {}",
            addrs[at]
        );
        used[at] += 1;
    }
    assert!(
        used[0] > 0 && used[1] > 0,
        "both servers hold keys: {used:?}"
    );
}

#[test]
fn a_postgresql_outage_is_survived_and_caught_up() {
    let mut cluster = Cluster::start();
    let url = cluster.database("bizzy");
    migrate_with(&url, MIGRATIONS).expect("the schema applies");
    let ids = add_hives(&url, "Hive", 2);
    let mc = Memcached::start();
    let mut manager = Manager::start(&url, &[mc.addr()], "4s");
    filled(&mc, &ids, Duration::from_secs(10));

    cluster.stop();
    std::thread::sleep(Duration::from_secs(3));
    assert!(manager.running(), "the manager outlives PostgreSQL");
    assert!(
        mc.text(&keys::hive(ids[0])).is_some(),
        "the replica keeps what it has"
    );
    cluster.resume();

    // One change told by NOTIFY, one by nothing: both arrive.
    set_occupancy(&url, ids[0], 5, true);
    set_occupancy(&url, ids[1], 6, false);
    let within = Duration::from_secs(8);
    until(&mc, &keys::occupancy(ids[0]), within, occupancy_is(5));
    until(&mc, &keys::occupancy(ids[1]), within, occupancy_is(6));
    let before: u128 = mc.text(&keys::pass()).unwrap().parse().expect("unix ms");
    until(&mc, &keys::pass(), within, |v| {
        v.and_then(|v| v.parse::<u128>().ok())
            .is_some_and(|p| p > before)
    });
    let took = manager.stop(StopKind::Quit);
    assert!(took < Duration::from_secs(2), "Quit took {took:?}");
}

#[test]
fn without_a_database_the_manager_only_waits_for_its_stop() {
    let mc = Memcached::start();
    let mut manager = Manager::with_conf(format!("[cache]\nmemcached = [\"{}\"]\n", mc.addr()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(manager.running());
    assert_eq!(mc.get(&keys::pass()), None, "nothing is written");
    let took = manager.stop(StopKind::Quit);
    assert!(took < Duration::from_secs(1), "Quit took {took:?}");
}

/// Pids of the cache manager processes of `s`.
fn managers(s: &common::Server) -> Vec<i32> {
    common::children_titled(s.master_pid(), "bizzy: cache manager process")
}

/// Waits until `s` has one cache manager that is not `not`; its pid.
fn one_manager(s: &common::Server, not: Option<i32>) -> i32 {
    let mut found = Vec::new();
    let ok = eventually(Duration::from_secs(10), || {
        found = managers(s);
        found.len() == 1 && Some(found[0]) != not
    });
    assert!(
        ok,
        "cache managers {found:?} (not {not:?})\n{}",
        s.error_log()
    );
    found[0]
}

#[test]
fn the_real_binary_keeps_the_replica_across_a_crash_and_a_reload() {
    let (db, ids) = database(2);
    let mut mc = Memcached::start();
    let port = common::free_port();
    let conf = format!(
        "{}\n[database]\nurl = \"{}\"\nmigrate_on_start = true\n\n\
         [cache]\nmemcached = [\"{}\"]\nmax_stale = \"60s\"\n",
        common::basic_conf(port, "", "", ""),
        db.url,
        mc.addr()
    );
    let s = common::Server::start(port, &conf);
    let first = one_manager(&s, None);
    filled(&mc, &ids, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    query(
        &db.url,
        &format!("UPDATE hive SET name = 'Edited' WHERE id = {}", ids[0]),
    );
    until(
        &mc,
        &keys::hive(ids[0]),
        Duration::from_millis(500),
        has("Edited"),
    );

    // Killed: the master starts another, which fills an empty memcached and follows NOTIFY.
    common::kill(first, libc::SIGKILL);
    mc.start_again();
    let second = one_manager(&s, Some(first));
    until(
        &mc,
        &keys::hive(ids[1]),
        Duration::from_secs(10),
        has("Hive"),
    );
    std::thread::sleep(Duration::from_millis(300));
    set_occupancy(&db.url, ids[1], 8, true);
    until(
        &mc,
        &keys::occupancy(ids[1]),
        Duration::from_millis(500),
        occupancy_is(8),
    );

    // A reload replaces it; the old one finishes its pass and exits.
    s.signal(libc::SIGHUP);
    let third = one_manager(&s, Some(second));
    assert!(eventually(Duration::from_secs(10), || !common::alive(
        second
    )));
    std::thread::sleep(Duration::from_millis(300));
    query(
        &db.url,
        &format!("UPDATE hive SET name = 'Again' WHERE id = {}", ids[0]),
    );
    until(
        &mc,
        &keys::hive(ids[0]),
        Duration::from_millis(500),
        has("Again"),
    );
    assert!(common::alive(third));
    let log = s.error_log();
    assert!(
        log.contains(&format!(
            "cache manager process {second} exited with code 0"
        )),
        "{log}"
    );
}

#[test]
fn an_entry_memcached_refuses_leaves_the_server_in_use() {
    let (db, ids) = database(2);
    let long = "x".repeat(3000);
    query(
        &db.url,
        &format!(
            "UPDATE hive SET description = '{long}' WHERE id = {}",
            ids[0]
        ),
    );
    // Items of 1 KiB at most: the first hive's details do not fit.
    let mc = Memcached::start_with(&["-I", "1k", "-o", "slab_chunk_max=512"]);
    let _manager = Manager::start(&db.url, &[mc.addr()], "60s");
    until(
        &mc,
        &keys::hive(ids[1]),
        Duration::from_secs(10),
        has("Hive"),
    );
    until(
        &mc,
        &keys::occupancy(ids[0]),
        Duration::from_secs(10),
        occupancy_is(0),
    );
    assert_eq!(mc.get(&keys::hive(ids[0])), None, "refused");
    std::thread::sleep(Duration::from_millis(300));
    set_occupancy(&db.url, ids[0], 4, true);
    until(
        &mc,
        &keys::occupancy(ids[0]),
        Duration::from_millis(500),
        occupancy_is(4),
    );
}
