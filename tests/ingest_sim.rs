//! The whole ingest path under a fleet (issue 9): `bizzy sim` (the real binary, as its own
//! process) drives 200 simulated sensors over MQTT into the real server and a real PostgreSQL,
//! and afterwards the database holds exactly what the simulator says it must: one sensor_report
//! row per accepted report (none for the malformed ones, none twice) and each hive's occupancy
//! as the counting rules give it. Each run can be disturbed at half time (a reload, a worker
//! killed with SIGKILL, a binary upgrade, PostgreSQL stopped for 20 s): nothing acknowledged
//! may go missing, nothing may be stored twice. Run through `scripts/with-postgres`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::pg::TestDb;
use common::*;

use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};

/// Seconds of publishing in each run.
const DURATION: Duration = Duration::from_secs(6);
/// The runs share two cores: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A migrated database and bizzy (two workers) storing sensor reports into it.
struct Fixture {
    url: String,
    /// The database, on the shared test cluster or on a cluster of the test's own.
    _db: Option<TestDb>,
    cluster: Option<std::cell::RefCell<Cluster>>,
    server: Server,
    mqtt: u16,
}

impl Fixture {
    fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        common::pg::try_query(&self.url, sql).expect("PostgreSQL answers")
    }

    fn value(&self, sql: &str) -> Option<String> {
        self.query(sql).first().and_then(|r| r[0].clone())
    }
}

fn fixture() -> Fixture {
    let db = TestDb::new();
    let url = db.url.clone();
    serve(url, Some(db), None)
}

/// The fixture on a PostgreSQL cluster of its own, which the test may stop.
fn fixture_on_own_cluster() -> Fixture {
    let cluster = Cluster::start();
    let url = cluster.database("bizzy");
    serve(url, None, Some(cluster))
}

fn serve(url: String, db: Option<TestDb>, cluster: Option<Cluster>) -> Fixture {
    migrate_with(&url, MIGRATIONS).expect("the schema applies");
    let (http, mqtt) = two_free_ports();
    let conf = format!(
        "{}\n[mqtt]\nlisten = [\"127.0.0.1:{mqtt}\"]\nallow_anonymous = true\n\n\
         [database]\nurl = \"{url}?connect_timeout=2\"\nmigrate_on_start = false\n",
        basic_conf(http, "", "", ""),
    );
    let server = Server::start(http, &conf);
    assert!(
        eventually(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            mqtt
        ))
        .is_ok()),
        "MQTT listens"
    );
    Fixture {
        url,
        _db: db,
        cluster: cluster.map(std::cell::RefCell::new),
        server,
        mqtt,
    }
}

/// What the simulator printed.
#[derive(Debug)]
struct Expected {
    /// Occupancy by hive id.
    hives: BTreeMap<String, String>,
    /// The `sim key=value` summary.
    summary: BTreeMap<String, String>,
}

impl Expected {
    fn get(&self, key: &str) -> u64 {
        self.summary
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.summary))
    }
}

fn parse(stdout: &str) -> Expected {
    let mut hives = BTreeMap::new();
    let mut summary = BTreeMap::new();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["hive", id, "expected", n, ..] => {
                hives.insert(id.to_string(), n.to_string());
            }
            ["sim", fields @ ..] => {
                for f in fields {
                    let (k, v) = f.split_once('=').expect("key=value");
                    summary.insert(k.to_string(), v.to_string());
                }
            }
            _ => {}
        }
    }
    assert!(!summary.is_empty(), "no summary line in\n{stdout}");
    Expected { hives, summary }
}

/// Runs `bizzy sim` against the fixture: 200 sensors for [`DURATION`], with `disturb` called
/// half way through the publishing. Returns what it printed.
fn simulate(f: &Fixture, seed: u32, disturb: impl FnOnce(&Server)) -> Expected {
    simulate_for(f, seed, DURATION, DURATION / 2, disturb)
}

/// [`simulate`] for `duration`, disturbed `at` after the publishing started.
fn simulate_for(
    f: &Fixture,
    seed: u32,
    duration: Duration,
    at: Duration,
    disturb: impl FnOnce(&Server),
) -> Expected {
    let mut sim = Command::new(BIN)
        .args(["sim", "-p"])
        .arg(f.server.dir.path())
        .args([
            "--create",
            "--sensors",
            "200",
            "--hives",
            "20",
            "--rate",
            "600",
        ])
        .args(["--bad", "10", "--drain", "30", "--mqtt"])
        .arg(format!("127.0.0.1:{}", f.mqtt))
        .args(["--duration", &duration.as_secs().to_string()])
        .args(["--seed", &seed.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bizzy sim starts");
    let (lines, errors) = stderr_lines(&mut sim);
    let started = lines.recv_timeout(Duration::from_secs(30));
    assert!(
        started.as_deref().is_ok_and(|l| l.contains("publishing")),
        "the simulator did not start publishing: {started:?}"
    );
    std::thread::sleep(at);
    disturb(&f.server);
    let status = wait(&mut sim, Duration::from_secs(60));
    let mut stdout = String::new();
    sim.stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)
        .expect("the simulator's output");
    let stderr = errors.join().expect("the stderr reader");
    assert!(
        status.success(),
        "bizzy sim failed ({status}):\n{stdout}\n{stderr}\n{}",
        f.server.error_log()
    );
    parse(&stdout)
}

/// The simulator's standard error: its first line as soon as it comes, all of it at the end.
fn stderr_lines(sim: &mut Child) -> (mpsc::Receiver<String>, std::thread::JoinHandle<String>) {
    let stderr = sim.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (rx, reader)
}

/// Waits for the simulator; kills it past `within`.
fn wait(sim: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = sim.try_wait().expect("waitpid") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = sim.kill();
            panic!("bizzy sim still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The database against the expectation: every accepted report stored once, each simulated
/// hive at its expected occupancy.
fn check(f: &Fixture, e: &Expected) {
    // A spool may still be replaying: what is acknowledged reaches the database in time.
    let reports = e.get("stored") - e.get("status");
    eventually(Duration::from_secs(60), || {
        f.value("SELECT count(*) FROM sensor_report WHERE kind <> 'status'")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= reports)
    });
    eprintln!("bizzy sim said: {:?}", e.summary);
    assert_eq!(e.get("unacked"), 0);
    assert_eq!(
        e.get("acked"),
        e.get("sent"),
        "QoS 1: every publish acknowledged"
    );
    assert!(
        e.get("stored") > 1000,
        "a run worth checking: {:?}",
        e.summary
    );
    let rows = |kind: &str| -> u64 {
        f.value(&format!("SELECT count(*) FROM sensor_report WHERE {kind}"))
            .and_then(|n| n.parse().ok())
            .expect("a count")
    };
    let status = e.get("status");
    assert_eq!(
        rows("kind <> 'status'"),
        reports,
        "counter and event rows: each accepted report once ({:?})",
        e.summary
    );
    // A status message carries nothing that tells two copies apart (PROTOCOL.md: never a
    // duplicate): one sent again after a broken connection may be stored twice.
    let status_rows = rows("kind = 'status'");
    assert!(
        (status..=status + e.get("status_resent")).contains(&status_rows),
        "{status_rows} status rows, {status} sent ({:?})",
        e.summary
    );
    let got: BTreeMap<String, String> = f
        .query(
            "SELECT hs.hive_id, hs.occupancy FROM hive_status hs JOIN hive h ON h.id = hs.hive_id
             WHERE h.deleted_at IS NULL ORDER BY hs.hive_id",
        )
        .into_iter()
        .map(|r| {
            let text = |i: usize| r[i].clone().expect("not null");
            (text(0), text(1))
        })
        .collect();
    assert_eq!(
        got, e.hives,
        "occupancy per hive, database against expectation"
    );
}

#[test]
fn two_hundred_sensors_leave_exactly_the_expected_rows_and_occupancy() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = fixture();
    let e = simulate(&f, 1, |_| {});
    check(&f, &e);
    assert_eq!(e.get("reconnects"), 0);
    assert!(e.get("bad") == 10 && e.get("duplicates") > 0 && e.get("wraps") > 0);
}

#[test]
fn a_reload_mid_run_loses_and_doubles_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = fixture();
    let e = simulate(&f, 2, |s| {
        let old = s.workers();
        s.signal(libc::SIGHUP);
        s.wait_workers(2, &old);
    });
    check(&f, &e);
}

#[test]
fn a_worker_killed_mid_run_loses_and_doubles_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = fixture();
    let e = simulate(&f, 3, |s| {
        let workers = s.wait_workers(2, &[]);
        kill(workers[0], libc::SIGKILL);
        s.wait_workers(2, &workers[..1]);
    });
    check(&f, &e);
    assert!(
        e.get("reconnects") > 0,
        "the killed worker's sensors came back"
    );
}

#[test]
fn postgresql_stopped_for_20_seconds_mid_run_loses_and_doubles_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = fixture_on_own_cluster();
    let cluster = f.cluster.as_ref().expect("a cluster of its own");
    let e = simulate_for(
        &f,
        5,
        Duration::from_secs(26),
        Duration::from_secs(3),
        |_| {
            cluster.borrow_mut().stop();
            std::thread::sleep(Duration::from_secs(20));
            cluster.borrow_mut().resume();
        },
    );
    check(&f, &e);
    let spooled: f64 = common::get(f.server.addr(), "/metrics")
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("bizzy_ingest_reports_spooled_total "))
        .and_then(|v| v.parse().ok())
        .expect("the spooled figure");
    assert!(
        spooled > 1000.0,
        "reports were spooled and acknowledged: {spooled}"
    );
}

#[test]
fn a_binary_upgrade_mid_run_loses_and_doubles_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = fixture();
    let mut new = None;
    let e = simulate(&f, 4, |s| {
        let master = start_new_binary(s);
        winch_stops_old_workers(s, &s.workers());
        s.signal(libc::SIGQUIT);
        new = Some(master);
    });
    check(&f, &e);
    drop(new);
}
