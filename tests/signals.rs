//! Signals to the master (DESIGN.md section 2) and what the processes do about them: reload,
//! graceful and fast stop, log reopening, worker death, titles, accept spreading, connection
//! limits and the worker user. Every wait is bounded.

mod common;
use common::*;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn rewrite(s: &Server, conf: &str) {
    std::fs::write(&s.conf_path, conf).unwrap();
}

/// A keep-alive connection that has been answered once and is now idle.
fn idle_keepalive(addr: SocketAddr) -> TcpStream {
    let mut c = connect(addr);
    c.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c, &mut Vec::new(), false).expect("an answer");
    assert_eq!(r.status, 200);
    assert!(r.header("Connection").is_none(), "{}", r.head);
    c
}

/// Sends one request on an idle keep-alive connection: the whole answer must come.
fn last_request(c: &mut TcpStream) -> Resp {
    c.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let r = read_response(c, &mut Vec::new(), false).expect("an answer, not a close");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok\n");
    r
}

/// After an answer with `Connection: close`: the server closes cleanly (EOF, not a reset).
fn assert_clean_close(c: &mut TcpStream) {
    let mut tmp = [0u8; 64];
    match c.read(&mut tmp) {
        Ok(0) => {}
        other => panic!("wanted a clean close, got {other:?}"),
    }
}

fn refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

#[test]
fn hup_starts_new_workers_and_never_refuses_a_connection() {
    let port = free_port();
    let s = Server::start(port, &basic_conf(port, "", "", ""));
    let old = s.wait_workers(2, &[]);
    let hammer = Hammer::start(s.addr());
    std::thread::sleep(Duration::from_millis(200));
    let v2 = r#"
  [[http.server.location]]
  exact = "/v2"
  return = { status = 200, body = "two\n" }
"#;
    rewrite(&s, &basic_conf(port, "", "", v2));
    s.signal(libc::SIGHUP);
    let new = s.wait_workers(2, &old);
    assert!(
        eventually(Duration::from_secs(10), || old.iter().all(|p| !alive(*p))),
        "old workers still running"
    );
    std::thread::sleep(Duration::from_millis(200));
    let st = hammer.finish();
    assert_eq!(st.refused, 0, "{st:?}");
    assert!(st.failed.is_empty(), "{st:?}");
    assert!(st.ok > 10, "{st:?}");
    assert_eq!(get(s.addr(), "/v2").text(), "two\n");
    assert!(new.iter().all(|p| alive(*p)));
    assert!(s.error_log().contains("reconfiguring"));
}

#[test]
fn hup_opens_new_addresses_and_closes_removed_ones() {
    let (a, b, c) = (free_port(), free_port(), free_port());
    let listen = |x: u16, y: u16| {
        basic_conf(a, "", "", "").replace(
            &format!("listen = [\"127.0.0.1:{a}\"]"),
            &format!("listen = [\"127.0.0.1:{x}\", \"127.0.0.1:{y}\"]"),
        )
    };
    let s = Server::start(a, &listen(a, b));
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    assert_eq!(get(addr(b), "/health").status, 200);
    assert!(refused(addr(c)));
    let old = s.wait_workers(2, &[]);
    rewrite(&s, &listen(a, c));
    s.signal(libc::SIGHUP);
    s.wait_workers(2, &old);
    assert_eq!(get(addr(c), "/health").status, 200, "the new address");
    assert_eq!(get(addr(a), "/health").status, 200, "the kept address");
    assert!(
        eventually(Duration::from_secs(10), || refused(addr(b))),
        "the removed address {b} still accepts connections"
    );
}

#[test]
fn hup_with_invalid_configuration_keeps_serving_the_old_one() {
    let port = free_port();
    let conf = basic_conf(port, "", "", "");
    let s = Server::start(port, &conf);
    let workers = s.wait_workers(2, &[]);
    rewrite(
        &s,
        &conf.replace("body = \"ok\\n\"", "body = \"new\\n\", bogus = 1"),
    );
    s.signal(libc::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || s
            .error_log()
            .contains("keeping the running configuration")),
        "{}",
        s.error_log()
    );
    let log = s.error_log();
    assert!(log.contains("bogus"), "the error names the key: {log}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(s.addr(), "/health").text(), "ok\n");
    let mut now = s.workers();
    now.sort_unstable();
    let mut was = workers;
    was.sort_unstable();
    assert_eq!(now, was);
}

/// trac #1022 in nginx: a request sent on an idle keep-alive connection just after a reload is
/// lost. Here every such request is answered in full.
#[test]
fn hup_loses_no_request_on_idle_keepalive_connections() {
    let port = free_port();
    let s = Server::start(port, &basic_conf(port, "", "", ""));
    let old = s.wait_workers(2, &[]);
    let mut conns: Vec<TcpStream> = (0..20).map(|_| idle_keepalive(s.addr())).collect();
    s.signal(libc::SIGHUP);
    let hup = Instant::now();
    for (i, c) in conns.iter_mut().enumerate() {
        let at = Duration::from_millis(40 * i as u64);
        if let Some(wait) = at.checked_sub(hup.elapsed()) {
            std::thread::sleep(wait);
        }
        let r = last_request(c);
        if r.header("Connection") == Some("close") {
            assert_clean_close(c);
        }
    }
    s.wait_workers(2, &old);
}

#[test]
fn quit_finishes_slow_responses_and_answers_idle_keepalive_once() {
    let port = free_port();
    let files = r#"
  [[http.server.location]]
  prefix = "/files/"
  handler = "static"
  root = "html"
"#;
    let s = Server::prepare(port, &basic_conf(port, "", "", files));
    let big: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
    write_file(&s.path("html/files/big.bin"), &big);
    let mut s = s.launch();
    let pid_file = s.path("var/run/bizzy.pid");

    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(64 * 1024).unwrap();
    sock.connect(&s.addr().into()).unwrap();
    let mut slow: TcpStream = sock.into();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /files/big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut idle = idle_keepalive(s.addr());

    let mut got = Vec::with_capacity(big.len() + 1024);
    let mut tmp = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut quit_sent = false;
    loop {
        let n = slow.read(&mut tmp).expect("the slow response goes on");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&tmp[..n]);
        if !quit_sent && got.len() > 1 << 20 {
            s.signal(libc::SIGQUIT);
            quit_sent = true;
            std::thread::sleep(Duration::from_millis(200));
            let r = last_request(&mut idle);
            assert_eq!(r.header("Connection"), Some("close"), "{}", r.head);
            assert_clean_close(&mut idle);
        }
        let head_end = find(&got, b"\r\n\r\n").map(|i| i + 4);
        if head_end.is_some_and(|h| got.len() >= h + big.len()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        assert!(started.elapsed() < Duration::from_secs(20), "too slow");
    }
    assert!(quit_sent);
    let head_end = find(&got, b"\r\n\r\n").expect("a head") + 4;
    assert!(got.starts_with(b"HTTP/1.1 200 "));
    assert_eq!(got.len() - head_end, big.len(), "the whole file");
    assert!(got[head_end..] == big[..], "the right bytes");
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!pid_file.exists(), "pid file removed");
}

#[test]
fn term_and_int_stop_fast() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let port = free_port();
        let mut s = Server::start(port, &basic_conf(port, "", "", ""));
        let _idle = idle_keepalive(s.addr());
        let mut partial = connect(s.addr());
        partial.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let workers = s.workers();
        let t = Instant::now();
        s.signal(sig);
        assert_eq!(s.wait_exit(Duration::from_secs(3)), Some(0), "signal {sig}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(workers.iter().all(|p| !alive(*p)));
        assert!(s.error_log().contains("fast shutdown"));
    }
}

/// Workers that are not root cannot open files in the root-owned log directory themselves: the
/// master reopens and passes the descriptors.
#[test]
fn usr1_reopens_logs_at_their_original_paths() {
    let port = free_port();
    let mut conf = basic_conf(port, "", "", "");
    if nix::unistd::geteuid().is_root() {
        conf = conf.replace(&format!("user = \"{}\"", test_user()), "user = \"nobody\"");
    }
    let s = Server::start(port, &conf);
    s.wait_workers(2, &[]);
    assert_eq!(get(s.addr(), "/health?before").status, 200);
    assert!(eventually(Duration::from_secs(5), || s
        .access_log()
        .contains("/health?before")));
    let log = |n: &str| s.path(&format!("var/log/{n}"));
    std::fs::rename(log("access.log"), log("access.log.1")).unwrap();
    std::fs::rename(log("error.log"), log("error.log.1")).unwrap();
    s.signal(libc::SIGUSR1);
    assert!(
        eventually(Duration::from_secs(5), || s
            .error_log()
            .matches("reopened log files")
            .count()
            == 2),
        "both workers write to the new error log: {:?} / {:?}",
        s.error_log(),
        std::fs::read_to_string(log("error.log.1"))
    );
    for _ in 0..10 {
        assert_eq!(get(s.addr(), "/health?after").status, 200);
    }
    assert!(
        eventually(Duration::from_secs(5), || s
            .access_log()
            .matches("/health?after")
            .count()
            == 10),
        "{}",
        s.access_log()
    );
    let rotated = std::fs::read_to_string(log("access.log.1")).unwrap();
    assert!(rotated.contains("/health?before"));
    assert!(!rotated.contains("/health?after"), "{rotated}");
}

#[test]
fn chld_restarts_a_killed_worker() {
    let port = free_port();
    let s = Server::start(port, &basic_conf(port, "", "", ""));
    let first = s.wait_workers(2, &[]);
    let mut gone = Vec::new();
    for victim in first {
        kill(victim, libc::SIGKILL);
        gone.push(victim);
        let now = s.wait_workers(2, &gone);
        assert!(
            s.error_log()
                .contains(&format!("worker process {victim} exited on signal 9")),
            "{}",
            s.error_log()
        );
        assert_eq!(s.workers().len(), 2, "{now:?}");
    }
    for _ in 0..20 {
        assert_eq!(
            get(s.addr(), "/health").status,
            200,
            "the replacements serve"
        );
    }
}

#[test]
fn chld_backs_off_when_a_worker_keeps_dying() {
    let port = free_port();
    let conf = basic_conf(port, "", "", "").replace("worker_processes = 2", "worker_processes = 1");
    let s = Server::start(port, &conf);
    let mut dead = s.wait_workers(1, &[]);
    for _ in 0..4 {
        kill(*dead.last().unwrap(), libc::SIGKILL);
        let next = s.wait_workers(1, &dead);
        dead.extend(next);
    }
    let log = s.error_log();
    let delays: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("respawning the worker in ").nth(1))
        .filter_map(|d| d.trim_end_matches(" ms").parse().ok())
        .collect();
    assert_eq!(delays, [100, 200, 400], "{log}");
    assert_eq!(get(s.addr(), "/health").status, 200);
}

#[test]
fn process_titles_name_master_and_workers() {
    let port = free_port();
    let s = Server::start(port, &basic_conf(port, "", "", ""));
    let cmdline = |pid: i32| {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        String::from_utf8_lossy(&raw)
            .trim_end_matches('\0')
            .to_string()
    };
    let master = cmdline(s.master_pid());
    assert!(master.starts_with("bizzy: master process "), "{master:?}");
    assert!(
        master.contains(&format!("-p {}", s.dir.path().display())),
        "{master:?}"
    );
    let workers = s.wait_workers(2, &[]);
    for w in workers {
        assert_eq!(cmdline(w), "bizzy: worker process");
    }
}

fn accepted_by_slot(addr: SocketAddr) -> Vec<(String, u64)> {
    get(addr, "/metrics")
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("bizzy_worker_connections_accepted_total{worker=\""))
        .filter_map(|l| {
            let (slot, v) = l.split_once("\"} ")?;
            Some((slot.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Accepts spread across workers under concurrent load: eight clients connect and request at
/// once. (A burst that arrives while one worker sits idle in its poll can still land on that
/// worker alone: EPOLLEXCLUSIVE wakes the first idle waiter; see `ACCEPT_BATCH` in event.rs.)
#[test]
fn accept_spreads_across_workers() {
    let port = free_port();
    let s = Server::start(port, &basic_conf(port, "", "", ""));
    s.wait_workers(2, &[]);
    let before = accepted_by_slot(s.addr());
    let addr = s.addr();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                for _ in 0..25 {
                    let mut c = connect(addr);
                    c.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
                        .unwrap();
                    let r = read_response(&mut c, &mut Vec::new(), false).expect("an answer");
                    assert_eq!(r.status, 200);
                    kept.push(c);
                }
                kept
            })
        })
        .collect();
    let kept: Vec<Vec<TcpStream>> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    let after = accepted_by_slot(s.addr());
    let delta = |slot: &str| {
        let get = |v: &[(String, u64)]| v.iter().find(|(s, _)| s == slot).map_or(0, |x| x.1);
        get(&after) - get(&before)
    };
    let (d0, d1) = (delta("0"), delta("1"));
    assert!(d0 > 0 && d1 > 0, "slot 0: {d0}, slot 1: {d1} of 200");
    drop(kept);
}

#[test]
fn worker_connections_limit_holds_connections_back() {
    let port = free_port();
    let conf = basic_conf(port, "", "", "").replace(
        "worker_processes = 2",
        "worker_processes = 1\nworker_connections = 16",
    );
    let s = Server::start(port, &conf);
    let worker = s.wait_workers(1, &[]);
    let mut conns: Vec<TcpStream> = (0..16).map(|_| idle_keepalive(s.addr())).collect();
    let mut extra = connect(s.addr());
    extra
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    extra
        .write_all(b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut tmp = [0u8; 256];
    match extra.read(&mut tmp) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("connection 17 was served or closed: {other:?}"),
    }
    assert!(
        eventually(Duration::from_secs(5), || s
            .error_log()
            .contains("16 worker_connections are not enough")),
        "{}",
        s.error_log()
    );
    conns.truncate(12);
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let r = read_response(&mut extra, &mut Vec::new(), false).expect("served once others closed");
    assert_eq!(r.status, 200);
    assert_eq!(s.workers(), worker, "no crash");
    drop(conns);
}

#[test]
fn root_master_starts_workers_as_the_configured_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a nobody user");
    let port = free_port();
    let conf = basic_conf(port, "", "", "")
        .replace(&format!("user = \"{}\"", test_user()), "user = \"nobody\"");
    let s = Server::start(port, &conf);
    let workers = s.wait_workers(2, &[]);
    let ids = |pid: i32, key: &str| -> Vec<u32> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap()
            .to_string();
        line[key.len()..]
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect()
    };
    for w in workers {
        assert_eq!(ids(w, "Uid:"), vec![nobody.uid.as_raw(); 4], "worker {w}");
        assert_eq!(ids(w, "Gid:"), vec![nobody.gid.as_raw(); 4], "worker {w}");
    }
    assert_eq!(
        ids(s.master_pid(), "Uid:"),
        vec![0; 4],
        "the master stays root"
    );
    assert_eq!(get(s.addr(), "/health").status, 200);
}
