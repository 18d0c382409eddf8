//! Live updates through the real binary (issue 12): `GET /v1/hives/{id}/live` streams a hive's
//! state as server-sent events, with a real PostgreSQL and real MQTT sensors. A sensor's report
//! reaches streams on both workers of its node and on another node sharing the database; a
//! reader too slow for every change gets the newest state, not a backlog; a reload ends the
//! streams cleanly (the last chunk, then the close) and a client that reconnects with
//! `Last-Event-ID` is not sent again what it has; a quiet stream gets heartbeats.
//! Run through `scripts/with-postgres`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};
use common::mqtt::{connect, Client, Connect, Packet, Publish};
use common::pg::{secret_of, TestDb};
use common::{basic_conf, eventually, two_free_ports, Server};

/// A node: 2 workers, the API at /v1/, MQTT with sensor logins, the database at `url`, and
/// `[live]` with a short heartbeat.
fn node(url: &str) -> (Server, SocketAddr, SocketAddr) {
    let (http, mqtt) = two_free_ports();
    let location = "[[http.server.location]]\nprefix = \"/v1/\"\nhandler = \"api\"\n";
    let conf = format!(
        "{}\n[mqtt]\nlisten = [\"127.0.0.1:{mqtt}\"]\nallow_anonymous = false\n\n\
         [database]\nurl = \"{url}\"\nmigrate_on_start = false\nquery_timeout = \"2s\"\n\n\
         [live]\nheartbeat = \"700ms\"\nretry = \"1s\"\n",
        basic_conf(http, "", "", location),
    );
    let server = Server::start(http, &conf);
    let mqtt: SocketAddr = ([127, 0, 0, 1], mqtt).into();
    assert!(
        eventually(Duration::from_secs(10), || TcpStream::connect(mqtt).is_ok()),
        "MQTT listens"
    );
    (server, ([127, 0, 0, 1], http).into(), mqtt)
}

/// One event of a stream.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    id: String,
    data: Value,
}

/// A client of one stream: the head read, then the chunked body decoded as it comes.
struct Sse {
    s: TcpStream,
    raw: Vec<u8>,
    body: Vec<u8>,
    head: String,
    ended: bool,
}

impl Sse {
    fn open(http: SocketAddr, hive: &str, extra: &str) -> Sse {
        Sse::open_on(TcpStream::connect(http).unwrap(), hive, extra)
    }

    fn open_on(mut s: TcpStream, hive: &str, extra: &str) -> Sse {
        let req = format!("GET /v1/hives/{hive}/live HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut sse = Sse {
            s,
            raw: Vec::new(),
            body: Vec::new(),
            head: String::new(),
            ended: false,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while common::find(&sse.raw, b"\r\n\r\n").is_none() {
            assert!(
                sse.fill(deadline),
                "no head: {:?}",
                String::from_utf8_lossy(&sse.raw)
            );
        }
        let end = common::find(&sse.raw, b"\r\n\r\n").unwrap() + 4;
        sse.head = String::from_utf8_lossy(&sse.raw[..end]).into_owned();
        sse.raw.drain(..end);
        sse
    }

    /// Reads once, until `deadline`; false on timeout or EOF.
    fn fill(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        self.s.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 16384];
        match self.s.read(&mut buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    /// Moves whole chunks from `raw` to `body`.
    fn dechunk(&mut self) {
        loop {
            let Some(eol) = common::find(&self.raw, b"\r\n") else {
                return;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&self.raw[..eol]).unwrap(), 16)
                .expect("a chunk size");
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            if size == 0 {
                self.ended = true;
            }
            self.body
                .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.raw.drain(..eol + 2 + size + 2);
        }
    }

    /// The next message of the stream (an event, a comment, a field block) within `within`.
    fn next_block(&mut self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            self.dechunk();
            if let Some(end) = common::find(&self.body, b"\n\n") {
                let block = String::from_utf8(self.body[..end].to_vec()).unwrap();
                self.body.drain(..end + 2);
                return Some(block);
            }
            if self.ended || !self.fill(deadline) {
                return None;
            }
        }
    }

    /// Reads until the last chunk came (true), or `within` is up or the connection ended
    /// without it (false).
    fn ends_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            self.dechunk();
            if self.ended {
                return true;
            }
            if !self.fill(deadline) {
                return false;
            }
        }
    }

    /// The next event, skipping comments and the retry field.
    fn next_event(&mut self, within: Duration) -> Option<Event> {
        let deadline = Instant::now() + within;
        loop {
            let block = self.next_block(deadline.saturating_duration_since(Instant::now()))?;
            if let Some(e) = parse_event(&block) {
                return Some(e);
            }
        }
    }

    /// Events until `want` says stop (true) or `within` is up: the last one seen.
    fn event_where(&mut self, within: Duration, want: impl Fn(&Event) -> bool) -> Option<Event> {
        let deadline = Instant::now() + within;
        loop {
            let e = self.next_event(deadline.saturating_duration_since(Instant::now()))?;
            if want(&e) {
                return Some(e);
            }
        }
    }
}

fn parse_event(block: &str) -> Option<Event> {
    let mut id = None;
    let mut data = None;
    let mut kind = None;
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data = Some(serde_json::from_str(v).expect("data is JSON"));
        } else if let Some(v) = line.strip_prefix("event: ") {
            kind = Some(v.to_string());
        }
    }
    assert!(
        data.is_none() || kind.as_deref() == Some("occupancy"),
        "{block}"
    );
    Some(Event {
        id: id?,
        data: data?,
    })
}

/// A legacy counter report with these totals and no valid clock.
fn legacy(total_in: u16, total_out: u16) -> Vec<u8> {
    let mut b = vec![0, 5, 0, 3];
    b.extend_from_slice(&total_in.to_be_bytes());
    b.extend_from_slice(&total_out.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    b
}

/// A sensor `device` logged in at `mqtt`.
fn sensor(mqtt: SocketAddr, device: &str) -> Client {
    connect(
        mqtt,
        &Connect::new(device).login(device, &secret_of(device)),
    )
    .0
}

/// Publishes a report with `total_in` (QoS 1) and waits for its PUBACK: it is committed.
fn report(c: &mut Client, device: &str, total_in: u16) {
    let pid = c.next_pid();
    c.send(
        &Publish::new(
            &format!("sensors/{device}/counter"),
            &legacy(total_in, 0),
            1,
        )
        .pid(pid)
        .encode(),
    );
    assert!(matches!(
        c.recv(Duration::from_secs(5)),
        Some(Packet::Puback(p)) if p == pid
    ));
}

/// The worker of `server` that holds the server side of the client socket `s` (from
/// /proc/net/tcp and the workers' descriptors).
fn worker_of(server: &Server, s: &TcpStream) -> Option<i32> {
    let ours = s.local_addr().unwrap().port();
    let theirs = s.peer_addr().unwrap().port();
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let inode = tcp.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
        (port(f[1]) == Some(theirs) && port(f[2]) == Some(ours)).then(|| f[9].to_string())
    })?;
    let want = format!("socket:[{inode}]");
    server.workers().into_iter().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.flatten().any(|e| {
                    std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == want)
                })
            })
            .unwrap_or(false)
    })
}

fn database() -> TestDb {
    let db = TestDb::new();
    migrate_with(&db.url, MIGRATIONS).expect("the schema applies");
    db
}

#[test]
fn a_report_reaches_streams_on_both_workers_and_on_another_node() {
    let db = database();
    let (a, http_a, mqtt_a) = node(&db.url);
    let (_b, http_b, _) = node(&db.url);
    let (hive, _) = db.hive_with_sensor("door-1");
    let mut door = sensor(mqtt_a, "door-1");
    report(&mut door, "door-1", 100);

    // Streams on node A, opened in bursts (connections that arrive while a worker is busy
    // wake the other) until both of its workers hold one, and one on node B.
    let mut on_a: Vec<(i32, Sse)> = Vec::new();
    for _ in 0..10 {
        let burst: Vec<TcpStream> = (0..8)
            .map(|_| TcpStream::connect(http_a).unwrap())
            .collect();
        for s in burst {
            let sse = Sse::open_on(s, &hive, "");
            let w = worker_of(&a, &sse.s).expect("a worker holds the stream");
            on_a.push((w, sse));
        }
        if on_a.iter().any(|(w, _)| *w != on_a[0].0) {
            break;
        }
    }
    assert!(
        on_a.iter().any(|(w, _)| *w != on_a[0].0),
        "80 streams all on one worker"
    );
    let mut on_b = Sse::open(http_b, &hive, "");
    for (_, sse) in &on_a {
        assert!(sse.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", sse.head);
        assert!(sse.head.contains("Content-Type: text/event-stream\r\n"));
        assert!(sse.head.contains("Cache-Control: no-cache\r\n"));
        assert!(sse.head.contains("Transfer-Encoding: chunked\r\n"));
    }
    let mut first = Vec::new();
    for sse in on_a.iter_mut().map(|(_, s)| s).chain([&mut on_b]) {
        assert_eq!(
            sse.next_block(Duration::from_secs(5)).as_deref(),
            Some("retry: 1000")
        );
        let e = sse
            .next_event(Duration::from_secs(5))
            .expect("the state now");
        assert_eq!(e.data["occupancy"], 0, "{e:?}");
        assert_eq!(e.data["hive_id"].to_string(), hive);
        first.push(e.id);
    }
    first.dedup();
    assert_eq!(
        first.len(),
        1,
        "one state, one id, on every worker and node"
    );

    for n in 1..=3u16 {
        let sent = Instant::now();
        report(&mut door, "door-1", 100 + 5 * n);
        for sse in on_a.iter_mut().map(|(_, s)| s).chain([&mut on_b]) {
            let e = sse
                .next_event(Duration::from_secs(5))
                .unwrap_or_else(|| panic!("change {n}: no event"));
            assert_eq!(e.data["occupancy"], 5 * n, "change {n}: {e:?}");
            assert_ne!(e.id, first[0]);
        }
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "change {n} took {:?}",
            sent.elapsed()
        );
    }
    // Nothing else: no duplicates from the mesh and NOTIFY both.
    for sse in on_a.iter_mut().map(|(_, s)| s).chain([&mut on_b]) {
        assert_eq!(sse.next_event(Duration::from_millis(300)), None);
    }
    // /metrics counts the streams open and the changes sent on them.
    let n = on_a.len() as f64;
    assert_eq!(metric(http_a, "bizzy_live_streams"), Some(n));
    assert_eq!(metric(http_a, "bizzy_live_events_total"), Some(3.0 * n));
    on_a.truncate(1);
    assert!(
        eventually(Duration::from_secs(5), || metric(
            http_a,
            "bizzy_live_streams"
        ) == Some(1.0)),
        "a stream whose client left is no longer counted"
    );
}

/// A sample without labels from `/metrics`.
fn metric(http: SocketAddr, name: &str) -> Option<f64> {
    let text = common::get(http, "/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
}

#[test]
fn a_slow_reader_gets_the_newest_state_not_a_backlog() {
    let db = database();
    let (_a, http, mqtt) = node(&db.url);
    let (hive, _) = db.hive_with_sensor("door-2");
    let mut door = sensor(mqtt, "door-2");
    report(&mut door, "door-2", 0);
    // A reader with a small receive window that reads nothing while the state changes.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    sock.connect(&http.into()).unwrap();
    let mut slow = Sse::open_on(sock.into(), &hive, "");
    let mut brisk = Sse::open(http, &hive, "");
    assert_eq!(
        slow.next_event(Duration::from_secs(5)).unwrap().data["occupancy"],
        0
    );
    const CHANGES: u16 = 400;
    for n in 1..=CHANGES {
        report(&mut door, "door-2", n);
    }
    // The brisk reader sees the last state; the slow one, reading now, sees it too, after far
    // fewer events than there were changes.
    let last = |e: &Event| e.data["occupancy"] == CHANGES;
    assert!(brisk.event_where(Duration::from_secs(10), last).is_some());
    let mut events = 0usize;
    let newest = loop {
        match slow.next_event(Duration::from_secs(10)) {
            Some(e) => {
                events += 1;
                if last(&e) {
                    break true;
                }
            }
            None => break false,
        }
    };
    assert!(newest, "the slow reader gets the newest state");
    assert!(
        events < usize::from(CHANGES) / 4,
        "{events} events for {CHANGES} changes: a backlog, not the newest state"
    );
    assert_eq!(
        slow.next_event(Duration::from_millis(300)),
        None,
        "nothing after the newest state"
    );
}

#[test]
fn a_reload_ends_streams_cleanly_and_last_event_id_resumes() {
    let db = database();
    let (server, http, mqtt) = node(&db.url);
    let (hive, _) = db.hive_with_sensor("door-3");
    let mut door = sensor(mqtt, "door-3");
    report(&mut door, "door-3", 7);
    let mut sse = Sse::open(http, &hive, "");
    let e = sse.next_event(Duration::from_secs(5)).unwrap();
    // A quiet stream gets heartbeats.
    assert_eq!(
        sse.next_block(Duration::from_secs(3)).as_deref(),
        Some(":"),
        "a heartbeat after [live] heartbeat of silence"
    );
    let old = server.workers();
    server.signal(libc::SIGHUP);
    // The old worker ends the body (the last chunk) and closes: a whole response.
    assert!(
        sse.ends_within(Duration::from_secs(10)),
        "the stream ended without its last chunk"
    );
    assert!(sse.raw.is_empty(), "nothing after the last chunk");
    let mut b = [0u8; 16];
    sse.s
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(
        matches!(sse.s.read(&mut b), Ok(0)),
        "closed (EOF, not a reset)"
    );
    server.wait_workers(2, &old);
    // The client reconnects with the id it has: only the retry field, then the next change.
    let mut again = Sse::open(http, &hive, &format!("Last-Event-ID: {}\r\n", e.id));
    assert_eq!(
        again.next_block(Duration::from_secs(5)).as_deref(),
        Some("retry: 1000")
    );
    assert_eq!(
        again.next_block(Duration::from_millis(300)),
        None,
        "the state it has is not sent again"
    );
    report(&mut door, "door-3", 9);
    let next = again.next_event(Duration::from_secs(5)).unwrap();
    assert_eq!(next.data["occupancy"], 2);
    // Another id (missed changes): the state now at once.
    let mut behind = Sse::open(http, &hive, "Last-Event-ID: 0123\r\n");
    assert_eq!(
        behind.next_event(Duration::from_secs(5)).unwrap(),
        next,
        "same state, same id"
    );
    // A graceful stop ends them the same way, and does not wait for them.
    let mut server = server;
    let stopping = Instant::now();
    server.signal(libc::SIGQUIT);
    for sse in [&mut again, &mut behind] {
        assert!(
            sse.ends_within(Duration::from_secs(5)),
            "QUIT: the stream ended without its last chunk"
        );
    }
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the streams held the stop: {:?}",
        stopping.elapsed()
    );
}

#[test]
fn errors_are_json_and_http10_streams_end_with_the_connection() {
    let db = database();
    let (_s, http, _) = node(&db.url);
    let (hive, _) = db.hive_with_sensor("door-4");
    let r = common::send(
        http,
        b"GET /v1/hives/999999/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let r = common::send(
        http,
        format!("POST /v1/hives/{hive}/live HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 405);
    let r = common::send(
        http,
        format!("HEAD /v1/hives/{hive}/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/event-stream"));
    // HTTP/1.0: no chunks, the body is delimited by the close.
    let mut s = TcpStream::connect(http).unwrap();
    s.write_all(format!("GET /v1/hives/{hive}/live HTTP/1.0\r\n\r\n").as_bytes())
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"occupancy\":") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(!text.contains("Transfer-Encoding"), "{text}");
    assert!(text.contains("\r\n\r\nretry: 1000\n\nid: "), "{text}");
}
