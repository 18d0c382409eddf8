//! The ingest spool (issue 9, DESIGN.md section 7): while PostgreSQL is unreachable, QoS 1 reports
//! are acknowledged once fsynced to a spool file and replayed exactly once when it is back, by the
//! worker that spooled them or by whoever adopts its orphaned file (a worker killed, one a reload
//! retired, a server stopped). The real binary and a real PostgreSQL, with the outage made by a TCP
//! proxy between them ([`Proxy`]): the shared test cluster is never stopped. A spool that cannot be
//! written holds the acknowledgement until PostgreSQL is back instead. Also the two guarantees
//! replay rests on, on the database alone: the dedupe catches a re-applied counter or event batch,
//! and a record applied with its progress is never applied twice (status messages included, which
//! the dedupe never catches). Run through `scripts/with-postgres`.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::mqtt::{connect, Client, Connect, Packet, Publish, WAIT};
use common::pg::TestDb;
use common::{basic_conf, eventually, two_free_ports, Server};

use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};
use bizzy::modules::ingest::batch::{Report, Stored};
use bizzy::modules::ingest::decode::decode;
use bizzy::modules::ingest::spool::replay;
use bizzy::modules::ingest::{store, IngestConf};

/// How long a replay may take once PostgreSQL is back (the back-off tops out at 5 s).
const REPLAYED: Duration = Duration::from_secs(20);

/// A TCP proxy on 127.0.0.1 in front of PostgreSQL: [`Proxy::cut`] closes every connection
/// and closes each new one at once; [`Proxy::restore`] forwards again.
struct Proxy {
    port: u16,
    shared: Arc<ProxyShared>,
    accept: Option<JoinHandle<()>>,
}

struct ProxyShared {
    up: AtomicBool,
    stop: AtomicBool,
    upstream: SocketAddr,
    /// Both sockets of every forwarded connection, to cut them.
    conns: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a proxy port");
        let port = listener.local_addr().expect("bound").port();
        let shared = Arc::new(ProxyShared {
            up: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            upstream,
            conns: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if !s.up.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(server) = TcpStream::connect(s.upstream) else {
                    continue;
                };
                forward(&s, client, server);
            }
        });
        Proxy {
            port,
            shared,
            accept: Some(accept),
        }
    }

    /// The URL of `url`'s database through the proxy.
    fn url(&self, url: &str) -> String {
        let at = url.find('@').expect("a user in the test URL") + 1;
        let slash = url[at..].find('/').expect("a database name") + at;
        format!("{}127.0.0.1:{}{}", &url[..at], self.port, &url[slash..])
    }

    /// PostgreSQL becomes unreachable: open connections are cut, new ones closed.
    fn cut(&self) {
        self.shared.up.store(false, Ordering::SeqCst);
        for c in self.shared.conns.lock().expect("not poisoned").drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Copies bytes both ways between `client` and `server` on two threads.
fn forward(s: &ProxyShared, client: TcpStream, server: TcpStream) {
    let pair = [&client, &server].map(|c| c.try_clone().expect("a socket clone"));
    s.conns.lock().expect("not poisoned").extend(pair);
    let (c2, s2) = (
        client.try_clone().expect("a socket clone"),
        server.try_clone().expect("a socket clone"),
    );
    std::thread::spawn(move || pipe(client, server));
    std::thread::spawn(move || pipe(s2, c2));
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// A migrated database with the sensor `door-1` on a hive, and a proxy in front of it.
struct Db {
    db: TestDb,
    hive: String,
    proxy: Proxy,
}

impl Db {
    fn new() -> Db {
        let db = TestDb::new();
        migrate_with(&db.url, MIGRATIONS).expect("the schema applies");
        let (hive, _) = db.hive_with_sensor("door-1");
        let upstream = upstream(&db.url);
        Db {
            db,
            hive,
            proxy: Proxy::start(upstream),
        }
    }

    fn count(&self, sql: &str) -> i64 {
        let n = self.db.value(sql);
        n.and_then(|n| n.parse().ok()).expect("a count")
    }

    fn reports(&self) -> i64 {
        self.count("SELECT count(*) FROM sensor_report")
    }

    fn occupancy(&self) -> Option<String> {
        self.db.value(&format!(
            "SELECT occupancy FROM hive_status WHERE hive_id = {}",
            self.hive
        ))
    }

    /// bizzy with MQTT (anonymous) and its database through the proxy; `spool_dir` as given
    /// (`None`: the default, `var/spool` in the prefix).
    fn server(&self, spool_dir: Option<&Path>) -> (Server, u16) {
        let (http, port) = two_free_ports();
        let spool = spool_dir.map_or(String::new(), |d| {
            format!("spool_dir = \"{}\"\n", d.display())
        });
        let conf = format!(
            "{}\n[mqtt]\nlisten = [\"127.0.0.1:{port}\"]\nallow_anonymous = true\n\n\
             [database]\nurl = \"{}\"\nmigrate_on_start = false\n{spool}",
            basic_conf(http, "", "", ""),
            self.proxy.url(&self.db.url)
        );
        let server = Server::start(http, &conf);
        assert!(
            eventually(WAIT, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "MQTT listens"
        );
        (server, port)
    }
}

/// The PostgreSQL address in a test URL (`postgresql://user@host:port/db`).
fn upstream(url: &str) -> SocketAddr {
    let at = url.find('@').expect("a user in the test URL") + 1;
    let slash = url[at..].find('/').expect("a database name") + at;
    url[at..slash].parse().expect("host:port")
}

/// A legacy counter report with these totals, at `minute` past 18:00 on 2024-11-22 (a clock
/// this far off is replaced by the receive time).
fn legacy(total_in: u16, total_out: u16, minute: u8) -> Vec<u8> {
    let mut b = vec![0, 5, 0, 3];
    b.extend_from_slice(&total_in.to_be_bytes());
    b.extend_from_slice(&total_out.to_be_bytes());
    b.extend_from_slice(&[24, 11, 22, 18, minute, 5, 0xff, 0xff]);
    b
}

/// A status message (PROTOCOL.md section 4): mains powered, firmware 1.2.3.
const STATUS: [u8; 20] = [
    0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 20, 0, 1, 2, 3, 0, 0, 0, 0,
];

/// Publishes `payload` on `sensors/door-1/{leaf}` with QoS 1 and waits for its PUBACK.
fn publish_acked(c: &mut Client, leaf: &str, payload: &[u8]) {
    let pid = c.next_pid();
    let topic = format!("sensors/door-1/{leaf}");
    c.send(&Publish::new(&topic, payload, 1).pid(pid).encode());
    assert_eq!(c.recv(WAIT), Some(Packet::Puback(pid)), "PUBACK on {topic}");
}

/// The reports of the outage in every test: +10/-2, +5/-1 (occupancy 8 then 12 over the
/// baseline), the second again (a duplicate) and a status message: 3 rows.
fn outage_reports(c: &mut Client) {
    publish_acked(c, "counter", &legacy(110, 52, 1));
    publish_acked(c, "counter", &legacy(115, 53, 2));
    publish_acked(c, "counter", &legacy(115, 53, 2));
    publish_acked(c, "status", &STATUS);
}

/// The `*.spool` files in `dir`.
fn spool_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "spool"))
        .collect()
}

/// Every file in `dir` (nothing should be left once replayed, hidden or damaged).
fn all_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The worker pid in a spool file's name (`{created_ns}-{pid}-{n}.spool`).
fn spooling_pid(file: &Path) -> i32 {
    let name = file.file_name().expect("a name").to_string_lossy();
    name.split('-')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {name}"))
}

/// The value of metric `name` (no labels).
fn metric(server: &Server, name: &str) -> Option<u64> {
    let text = common::get(server.addr(), "/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// What every test expects once the outage's reports are replayed: the baseline and three
/// rows (the duplicate stored once), occupancy 12, one claim per distinct counter payload.
fn assert_replayed_once(db: &Db, dir: &Path) {
    assert!(
        eventually(REPLAYED, || db.reports() == 4 && all_files(dir).is_empty()),
        "rows: {}, files: {:?}",
        db.reports(),
        all_files(dir)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(db.reports(), 4, "nothing is applied twice");
    assert_eq!(db.occupancy().as_deref(), Some("12"));
    assert_eq!(
        db.count("SELECT count(*) FROM sensor_report WHERE kind = 'status'"),
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM sensor_report_seen"), 3);
    assert_eq!(
        db.count("SELECT count(*) FROM spool_replay"),
        0,
        "progress rows are forgotten"
    );
}

#[test]
fn reports_acknowledged_during_an_outage_are_stored_once_when_it_ends() {
    let db = Db::new();
    let (server, port) = db.server(None);
    let dir = server.path("var/spool");
    let mut c = connect(([127, 0, 0, 1], port).into(), &Connect::new("door-1")).0;
    publish_acked(&mut c, "counter", &legacy(100, 50, 0));
    assert_eq!(db.reports(), 1, "the baseline is committed");

    db.proxy.cut();
    outage_reports(&mut c);
    assert_eq!(spool_files(&dir).len(), 1, "{:?}", all_files(&dir));
    assert_eq!(db.reports(), 1, "nothing reached PostgreSQL");
    assert_eq!(
        metric(&server, "bizzy_ingest_reports_spooled_total"),
        Some(4)
    );
    assert_eq!(metric(&server, "bizzy_ingest_spool_reports"), Some(4));
    assert!(metric(&server, "bizzy_ingest_spool_bytes").is_some_and(|b| b > 4 * 16));

    db.proxy.restore();
    assert_replayed_once(&db, &dir);
    assert_eq!(metric(&server, "bizzy_ingest_spool_reports"), Some(0));
    assert_eq!(metric(&server, "bizzy_ingest_spool_bytes"), Some(0));
    assert_eq!(
        metric(&server, "bizzy_ingest_reports_stored_total"),
        Some(5)
    );
    assert_eq!(metric(&server, "bizzy_ingest_duplicates_total"), Some(1));

    publish_acked(&mut c, "counter", &legacy(120, 53, 3));
    assert_eq!(
        db.reports(),
        5,
        "direct writes again, committed before the PUBACK"
    );
    assert!(spool_files(&dir).is_empty());
    assert_eq!(db.occupancy().as_deref(), Some("17"));
}

#[test]
fn the_spool_of_a_killed_worker_is_adopted_and_replayed_once() {
    let db = Db::new();
    let (server, port) = db.server(None);
    let dir = server.path("var/spool");
    let mut c = connect(([127, 0, 0, 1], port).into(), &Connect::new("door-1")).0;
    publish_acked(&mut c, "counter", &legacy(100, 50, 0));

    db.proxy.cut();
    outage_reports(&mut c);
    let files = spool_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let pid = spooling_pid(&files[0]);
    assert!(server.workers().contains(&pid), "{pid} is a worker");
    common::kill(pid, libc::SIGKILL);
    server.wait_workers(2, &[pid]);
    assert_eq!(spool_files(&dir), files, "the orphan waits for PostgreSQL");
    assert_eq!(db.reports(), 1);

    db.proxy.restore();
    assert_replayed_once(&db, &dir);
    assert!(
        server.error_log().contains("adopted the spool file"),
        "{}",
        server.error_log()
    );
}

#[test]
fn the_spool_of_a_worker_a_reload_retired_is_adopted_by_a_new_one() {
    let db = Db::new();
    let (server, port) = db.server(None);
    let dir = server.path("var/spool");
    let mut c = connect(([127, 0, 0, 1], port).into(), &Connect::new("door-1")).0;
    publish_acked(&mut c, "counter", &legacy(100, 50, 0));

    db.proxy.cut();
    outage_reports(&mut c);
    let old = server.workers();
    server.signal(libc::SIGHUP);
    server.wait_workers(2, &old);
    // The new workers started while the old one still held its file: a later scan takes it.
    assert!(
        eventually(Duration::from_secs(15), || server
            .error_log()
            .contains("adopted the spool file")),
        "{}",
        server.error_log()
    );
    assert_eq!(db.reports(), 1);
    db.proxy.restore();
    assert_replayed_once(&db, &dir);
}

#[test]
fn a_spool_left_by_a_stopped_server_is_replayed_by_the_next() {
    let db = Db::new();
    let spool = tempfile::tempdir().expect("a spool directory");
    let (mut first, port) = db.server(Some(spool.path()));
    let mut c = connect(([127, 0, 0, 1], port).into(), &Connect::new("door-1")).0;
    publish_acked(&mut c, "counter", &legacy(100, 50, 0));

    db.proxy.cut();
    outage_reports(&mut c);
    first.signal(libc::SIGQUIT);
    assert_eq!(
        first.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        first.error_log()
    );
    assert_eq!(spool_files(spool.path()).len(), 1);
    assert_eq!(db.reports(), 1);

    let (next, _) = db.server(Some(spool.path()));
    assert!(
        eventually(WAIT, || metric(&next, "bizzy_ingest_spool_reports")
            == Some(4)),
        "the next server adopted the file at start: {}",
        next.error_log()
    );
    db.proxy.restore();
    assert_replayed_once(&db, spool.path());
}

#[test]
fn an_unwritable_spool_holds_the_acknowledgement_until_postgresql_is_back() {
    let db = Db::new();
    // A regular file where the spool's parent directory should be: no one can write there,
    // root included.
    let blocker = tempfile::NamedTempFile::new().expect("a file");
    let (server, port) = db.server(Some(&blocker.path().join("spool")));
    let mut c = connect(([127, 0, 0, 1], port).into(), &Connect::new("door-1")).0;
    publish_acked(&mut c, "counter", &legacy(100, 50, 0));

    db.proxy.cut();
    let pid = c.next_pid();
    let report = legacy(110, 52, 1);
    c.send(
        &Publish::new("sensors/door-1/counter", &report, 1)
            .pid(pid)
            .encode(),
    );
    assert_eq!(
        c.recv(Duration::from_millis(1500)),
        None,
        "no PUBACK while the report is durable nowhere"
    );
    assert!(
        eventually(WAIT, || server.error_log().lines().any(|l| l
            .contains("[crit]")
            && l.contains("cannot spool 1 reports"))),
        "{}",
        server.error_log()
    );

    db.proxy.restore();
    assert_eq!(c.recv(REPLAYED), Some(Packet::Puback(pid)));
    assert_eq!(db.reports(), 2, "committed before its PUBACK");
    assert_eq!(db.occupancy().as_deref(), Some("8"));
}

/// One report of `door-1` on `topic`, received at `received_ns`.
fn report(topic: &str, raw: &[u8], received_ns: i64) -> Report {
    let (_, payload) = decode(topic, raw).expect("a valid test payload");
    Report {
        ticket: None,
        device_id: "door-1".into(),
        payload,
        raw: raw.to_vec(),
        received_at: chrono::DateTime::from_timestamp_nanos(received_ns),
    }
}

/// A batch as a spool keeps it: counters, an event and a status message, received now.
fn batch() -> Vec<Report> {
    let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
        .timestamp_nanos_opt()
        .expect("a time before 2262");
    let entry = [0x01, 0x03, 0x20, 0x00, 0x67, 0x40, 0x9a, 0x00];
    vec![
        report("sensors/door-1/counter", &legacy(100, 50, 0), now),
        report("sensors/door-1/counter", &legacy(110, 52, 1), now + 1_000),
        report("sensors/door-1/event", &entry, now + 2_000),
        report("sensors/door-1/status", &STATUS, now + 3_000),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL answers");
    tokio::spawn(conn);
    client
}

#[test]
fn a_re_applied_batch_is_caught_by_the_dedupe_except_its_status_messages() {
    let db = Db::new();
    let reports = batch();
    let conf = IngestConf::default();
    let (first, again) = runtime().block_on(async {
        let mut c = client(&db.db.url).await;
        let first = store::write(&mut c, &reports, &conf).await.expect("stored");
        let again = store::write(&mut c, &reports, &conf).await.expect("stored");
        (first.stored, again.stored)
    });
    use Stored::{Duplicate, ModeMismatch, Stored as S};
    assert_eq!(first, [S, S, ModeMismatch, S]);
    assert_eq!(again, [Duplicate, Duplicate, Duplicate, S]);
    // +10 -2 once; the event is stored, not counted: the first report set counter mode.
    assert_eq!(db.occupancy().as_deref(), Some("8"));
    assert_eq!(
        db.count("SELECT count(*) FROM sensor_report WHERE kind = 'status'"),
        2,
        "a status message is never a duplicate: replay needs its own progress"
    );
}

#[test]
fn a_record_applied_with_its_progress_is_never_applied_twice() {
    let db = Db::new();
    let reports = batch();
    let conf = IngestConf::default();
    let id = *b"spool-file-id-01";
    let (first, again, earlier, next, progress) = runtime().block_on(async {
        let mut c = client(&db.db.url).await;
        let first = replay::apply(&mut c, &id, 500, &reports, &conf).await;
        let again = replay::apply(&mut c, &id, 500, &reports, &conf).await;
        let earlier = replay::apply(&mut c, &id, 300, &reports[..1], &conf).await;
        let next = replay::apply(&mut c, &id, 900, &[], &conf).await;
        let progress = replay::progress(&c, &id).await;
        (first, again, earlier, next, progress)
    });
    let first = first.expect("applied").expect("not applied before");
    use Stored::{ModeMismatch, Stored as S};
    assert_eq!(first.stored, [S, S, ModeMismatch, S]);
    assert!(again.expect("no error").is_none(), "already applied");
    assert!(earlier.expect("no error").is_none(), "behind the progress");
    assert!(next.expect("no error").is_some(), "a later record applies");
    assert_eq!(progress.expect("read"), Some(900));
    assert_eq!(db.reports(), 4);
    assert_eq!(db.occupancy().as_deref(), Some("8"));
}
