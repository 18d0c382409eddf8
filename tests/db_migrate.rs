//! `bizzy migrate` against a real PostgreSQL (DESIGN.md sections 3 and 7): a fresh database
//! gets the whole schema, a current one nothing, two nodes migrating at once apply each step
//! once, an unreachable server is a clear error, a failing migration leaves nothing behind, and
//! the subcommand refuses options that are not its own.
//! Run through `scripts/with-postgres` (it sets `BIZZY_TEST_PG`).

mod common;
use common::pg::TestDb;
use common::BIN;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bizzy::modules::database::migrate::{migrate_with, MigrateError, Migration, MIGRATIONS};

/// A prefix whose configuration points `database.url` at `url`.
fn prefix(url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("conf")).unwrap();
    let conf = format!("[database]\nurl = \"{url}\"\nmigrate_on_start = false\n");
    std::fs::write(dir.path().join("conf/bizzy.toml"), conf).unwrap();
    dir
}

fn migrate_cmd(dir: &tempfile::TempDir) -> Command {
    let mut c = Command::new(BIN);
    c.arg("migrate").arg("-p").arg(dir.path());
    c.stdin(Stdio::null());
    c
}

fn spawn_piped(dir: &tempfile::TempDir) -> std::process::Child {
    migrate_cmd(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn migrate(dir: &tempfile::TempDir) -> Output {
    migrate_cmd(dir).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn applied_lines(o: &Output) -> Vec<String> {
    text(&o.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("bizzy: applied migration "))
        .map(str::to_string)
        .collect()
}

fn names() -> Vec<String> {
    MIGRATIONS.iter().map(|m| m.name.to_string()).collect()
}

fn last_version() -> i32 {
    MIGRATIONS.last().expect("there are migrations").version
}

#[test]
fn a_fresh_database_gets_the_whole_schema() {
    let db = TestDb::new();
    let dir = prefix(&db.url);
    let o = migrate(&dir);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(applied_lines(&o), names());
    let want = format!("schema is now at version {}", last_version());
    assert!(text(&o.stdout).contains(&want), "{}", text(&o.stdout));

    for table in [
        "app_user",
        "user_message",
        "user_analytics",
        "subscription",
        "subscription_type",
        "subscription_type_feature",
        "feature",
        "transaction",
        "account",
        "account_admin",
        "address",
        "hive",
        "hive_type",
        "hive_status",
        "hive_network",
        "hive_image",
        "deal",
        "user_hive",
        "user_notification_def",
        "sensor",
        "modem",
        "sensor_network_config",
        "sensor_report_config",
        "sensor_report_schedule",
        "sensor_report",
        "sensor_report_seen",
        "hive_hourly",
        "schema_migrations",
    ] {
        let found = db.value(&format!("SELECT to_regclass('public.{table}')::text"));
        assert_eq!(found.as_deref(), Some(table), "table {table}");
    }
    let types = db.value("SELECT string_agg(code, ',' ORDER BY code) FROM hive_type");
    assert_eq!(
        types.as_deref(),
        Some("bar,cafe,club,gym,other,restaurant,store")
    );
    let recorded = db.value("SELECT count(*) FROM schema_migrations");
    assert_eq!(recorded, Some(MIGRATIONS.len().to_string()));
}

#[test]
fn this_and_next_months_partitions_exist() {
    let db = TestDb::new();
    let o = migrate(&prefix(&db.url));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let parts = db.query(
        "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid)
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'sensor_report'::regclass ORDER BY 1",
    );
    let month = |offset: &str| {
        db.value(&format!(
            "SELECT 'sensor_report_' || to_char(date_trunc('month', now() AT TIME ZONE 'UTC')
                    + interval '{offset}', 'YYYY_MM')"
        ))
        .unwrap()
    };
    let names: Vec<&str> = parts.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert_eq!(names, [month("0 months"), month("1 month")], "{parts:?}");
    // Bounds are whole UTC months.
    let bound = parts[0][1].as_deref().unwrap();
    assert!(bound.contains("-01 00:00:00+00"), "{bound}");

    // The timer's call creates only what is missing.
    let created = db.query("SELECT sensor_report_create_partitions(3)");
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0][0].as_deref(), Some(month("2 months").as_str()));
}

#[test]
fn a_current_schema_gets_nothing() {
    let db = TestDb::new();
    let dir = prefix(&db.url);
    let first = migrate(&dir);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let o = migrate(&dir);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(applied_lines(&o).is_empty(), "{}", text(&o.stdout));
    let want = format!("schema is current at version {}", last_version());
    assert!(text(&o.stdout).contains(&want), "{}", text(&o.stdout));
}

#[test]
fn two_nodes_migrating_at_once_apply_each_migration_once() {
    let db = TestDb::new();
    let (a, b) = (prefix(&db.url), prefix(&db.url));
    // Both started before either connects: they race for the lock.
    let (ca, cb) = (spawn_piped(&a), spawn_piped(&b));
    let (oa, ob) = (
        ca.wait_with_output().unwrap(),
        cb.wait_with_output().unwrap(),
    );
    assert_eq!(oa.status.code(), Some(0), "{}", text(&oa.stderr));
    assert_eq!(ob.status.code(), Some(0), "{}", text(&ob.stderr));
    let mut all = applied_lines(&oa);
    all.extend(applied_lines(&ob));
    all.sort();
    assert_eq!(
        all,
        names(),
        "a: {}\nb: {}",
        text(&oa.stdout),
        text(&ob.stdout)
    );
    let recorded = db.value("SELECT count(*) FROM schema_migrations");
    assert_eq!(recorded, Some(MIGRATIONS.len().to_string()));
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let port = common::free_port();
    let dir = prefix(&format!("postgresql://bizzy:secret@127.0.0.1:{port}/bizzy"));
    let start = Instant::now();
    let o = migrate(&dir);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(err.contains("cannot connect to"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("secret"), "the password is not shown: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(text(&o.stdout).is_empty(), "{}", text(&o.stdout));
}

#[test]
fn a_failing_migration_is_rolled_back_whole() {
    let db = TestDb::new();
    let good = Migration {
        version: 1,
        name: "0001_good",
        sql: "CREATE TABLE kept (id integer);",
    };
    let bad = Migration {
        version: 2,
        name: "0002_bad",
        sql: "CREATE TABLE half (id integer); INSERT INTO kept VALUES (1); SELECT 1 / 0;",
    };
    match migrate_with(&db.url, &[good, bad]) {
        Err(MigrateError::Apply { version: 2, .. }) => {}
        other => panic!("wanted migration 2 to fail, got {other:?}"),
    }
    assert_eq!(db.value("SELECT to_regclass('half')::text"), None);
    assert_eq!(db.value("SELECT count(*) FROM kept").as_deref(), Some("0"));
    let versions = db.value("SELECT string_agg(version::text, ',') FROM schema_migrations");
    assert_eq!(versions.as_deref(), Some("1"));

    let fixed = Migration {
        sql: "CREATE TABLE half (id integer);",
        ..bad
    };
    let report = migrate_with(&db.url, &[good, fixed]).expect("the fixed migration applies");
    assert_eq!(report.applied, [(2, "0002_bad")]);
}

#[test]
fn an_edited_migration_is_refused() {
    let db = TestDb::new();
    let m = Migration {
        version: 1,
        name: "0001_t",
        sql: "CREATE TABLE t (id integer);",
    };
    migrate_with(&db.url, &[m]).expect("applies");
    let edited = Migration {
        sql: "CREATE TABLE t (id bigint);",
        ..m
    };
    match migrate_with(&db.url, &[edited]) {
        Err(e @ MigrateError::Changed { version: 1, .. }) => {
            assert!(
                e.to_string().contains("was changed after it was applied"),
                "{e}"
            )
        }
        other => panic!("wanted the edit refused, got {other:?}"),
    }
}

#[test]
fn migrate_takes_only_its_options() {
    let dir = prefix("postgresql://bizzy@127.0.0.1:1/bizzy");
    let o = migrate_cmd(&dir).arg("-t").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("migrate takes only -c and -p"));

    let o = migrate_cmd(&dir).arg("-h").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains("bizzy migrate [-c FILE] [-p PREFIX]"));

    let o = migrate_cmd(&dir)
        .args(["-c", "conf/absent.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("absent.toml"),
        "{}",
        text(&o.stderr)
    );
}

/// bizzy with MQTT and `[database]` at `url`, migrating on start.
fn server_migrating_on_start(url: &str) -> (common::Server, u16) {
    let (http, mqtt) = common::two_free_ports();
    let conf = format!(
        "{}\n[mqtt]\nlisten = [\"127.0.0.1:{mqtt}\"]\nallow_anonymous = true\n\n\
         [database]\nurl = \"{url}\"\nmigrate_on_start = true\n",
        common::basic_conf(http, "", "", ""),
    );
    (common::Server::start(http, &conf), http)
}

#[test]
fn migrate_on_start_applies_the_schema_before_the_workers_start() {
    let db = TestDb::new();
    let (server, http) = server_migrating_on_start(&db.url);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], http));
    assert_eq!(common::get(addr, "/").status, 404, "a worker answers");
    let latest = MIGRATIONS.iter().map(|m| m.version).max().unwrap();
    assert_eq!(
        db.value("SELECT max(version) FROM schema_migrations"),
        Some(latest.to_string()),
        "applied by the time a worker answers"
    );
    let log = server.error_log();
    assert!(log.contains("applied migration 0001_people"), "{log}");
}

#[test]
fn a_database_down_at_start_does_not_stop_the_server() {
    let port = common::free_port();
    let url = format!("postgresql://bizzy@127.0.0.1:{port}/bizzy?connect_timeout=1");
    let (server, http) = server_migrating_on_start(&url);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], http));
    assert_eq!(common::get(addr, "/").status, 404, "a worker answers");
    let log = server.error_log();
    assert!(
        log.contains("the server starts without it"),
        "the failed migration is logged: {log}"
    );
}
