//! `reuseport` listeners (a `SO_REUSEPORT` socket per worker, as nginx's `listen ... reuseport`):
//! every worker accepts on its own socket; a reload to fewer workers resets no queued
//! connection; an upgrade passes the group whole; and a second server on the same port fails
//! as a plain bind would. Also `deferred` (TCP_DEFER_ACCEPT), the other listening option.

mod common;
use common::*;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The basic configuration on `port` with `reuseport` and `workers` workers.
fn conf(port: u16, workers: usize) -> String {
    basic_conf(port, "", "", "")
        .replace(
            "worker_processes = 2",
            &format!("worker_processes = {workers}"),
        )
        .replace(
            &format!("listen = [\"127.0.0.1:{port}\"]"),
            &format!("listen = [\"127.0.0.1:{port}\"]\nreuseport = true"),
        )
}

/// Sockets listening on `port` (IPv4), from /proc/net/tcp.
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&local) && f[3] == "0A"
        })
        .count()
}

/// Connections accepted by each worker slot so far, from `/metrics`.
fn accepted_by_slot(addr: SocketAddr) -> Vec<u64> {
    get(addr, "/metrics")
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("bizzy_worker_connections_accepted_total{worker=\""))
        .filter_map(|l| l.split_once("\"} ")?.1.trim().parse().ok())
        .collect()
}

/// `n` connections that sent a whole request and wait for its answer.
fn requests(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut c = connect(addr);
            c.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .unwrap();
            c
        })
        .collect()
}

fn answered(conns: Vec<TcpStream>) {
    for mut c in conns {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let r = read_response(&mut c, &mut Vec::new(), false).expect("an answer, not a reset");
        assert_eq!(r.status, 200);
    }
}

#[test]
fn each_worker_accepts_on_its_own_socket() {
    let port = free_port();
    let s = Server::start(port, &conf(port, 2));
    s.wait_workers(2, &[]);
    assert_eq!(listening_sockets(port), 2, "one socket per worker");
    answered(requests(s.addr(), 200));
    let accepted = accepted_by_slot(s.addr());
    assert!(
        accepted.iter().filter(|n| **n > 0).count() == 2,
        "both workers accepted: {accepted:?}"
    );
}

/// Both workers are stopped while connections queue on both sockets; a reload to one worker
/// must serve the queue of the socket whose worker went away, not close it.
#[test]
fn hup_to_fewer_workers_loses_no_queued_connection() {
    let port = free_port();
    let s = Server::start(port, &conf(port, 2));
    let old = s.wait_workers(2, &[]);
    for w in &old {
        kill(*w, libc::SIGSTOP);
    }
    let queued = requests(s.addr(), 40);
    std::fs::write(&s.conf_path, conf(port, 1)).unwrap();
    s.signal(libc::SIGHUP);
    let fresh = || -> Vec<i32> {
        let all = s.workers();
        all.into_iter().filter(|p| !old.contains(p)).collect()
    };
    assert!(
        eventually(Duration::from_secs(10), || fresh().len() == 1),
        "a new worker: {}",
        s.error_log()
    );
    let new = fresh();
    answered(queued);
    for w in &old {
        kill(*w, libc::SIGCONT);
    }
    assert!(
        eventually(Duration::from_secs(10), || s.workers().len() == 1),
        "the old workers exit: {}",
        s.error_log()
    );
    assert_eq!(listening_sockets(port), 2, "the surplus socket stays open");
    answered(requests(s.addr(), 50));

    std::fs::write(&s.conf_path, conf(port, 3)).unwrap();
    s.signal(libc::SIGHUP);
    s.wait_workers(3, &new);
    assert_eq!(
        listening_sockets(port),
        3,
        "a reload to more workers binds more"
    );
}

#[test]
fn usr2_passes_the_group_whole() {
    let port = free_port();
    let mut s = Server::start(port, &conf(port, 2));
    let old_workers = s.wait_workers(2, &[]);
    let hammer = Hammer::start(s.addr());
    std::thread::sleep(Duration::from_millis(200));
    let new = start_new_binary(&s);
    assert_eq!(listening_sockets(port), 2, "the new binary binds nothing");
    winch_stops_old_workers(&s, &old_workers);
    s.signal(libc::SIGQUIT);
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
    std::thread::sleep(Duration::from_millis(300));
    let st = hammer.finish();
    assert_eq!(st.refused, 0, "{st:?}");
    assert!(st.failed.is_empty(), "{st:?}");
    assert_eq!(listening_sockets(port), 2);
    let accepted = accepted_by_slot(s.addr());
    answered(requests(s.addr(), 100));
    let after = accepted_by_slot(s.addr());
    let grew = after.iter().zip(&accepted).filter(|(a, b)| a > b).count();
    assert_eq!(
        grew, 2,
        "both new workers accept: {accepted:?} -> {after:?}"
    );
    drop(new);
}

#[test]
fn a_second_server_on_the_same_port_fails_to_bind() {
    let port = free_port();
    let s = Server::start(port, &conf(port, 2));
    s.wait_workers(2, &[]);
    let other = Server::prepare(port, &conf(port, 2));
    let out = other.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("bind() to 127.0.0.1:{port} failed")) && err.contains("in use"),
        "{err}"
    );
    assert_eq!(listening_sockets(port), 2);
}

/// Connections accepted by the workers in all, after `n` that connect and send nothing, less
/// the `/metrics` request that counts them; with the silent connections.
fn accepted_with_silent(addr: SocketAddr, n: usize) -> (u64, Vec<TcpStream>) {
    let before: u64 = accepted_by_slot(addr).iter().sum();
    let silent: Vec<TcpStream> = (0..n).map(|_| connect(addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let after: u64 = accepted_by_slot(addr).iter().sum();
    (after - before - 1, silent)
}

fn send_requests(mut conns: Vec<TcpStream>) -> Vec<TcpStream> {
    for c in &mut conns {
        c.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap();
    }
    conns
}

/// `deferred` (TCP_DEFER_ACCEPT): a connection that has sent nothing is not handed to a worker;
/// once its request is in, it is accepted and answered. A reload that turns it off applies to
/// the kept socket.
#[test]
fn deferred_accept_hands_over_only_connections_with_a_request() {
    let port = free_port();
    let plain = basic_conf(port, "", "", "");
    let listen = format!("listen = [\"127.0.0.1:{port}\"]");
    let deferred = plain.replace(&listen, &format!("{listen}\ndeferred = true"));
    let s = Server::start(port, &deferred);
    let old = s.wait_workers(2, &[]);
    let (accepted, silent) = accepted_with_silent(s.addr(), 5);
    assert_eq!(accepted, 0, "no silent connection was accepted");
    answered(send_requests(silent));

    std::fs::write(&s.conf_path, &plain).unwrap();
    s.signal(libc::SIGHUP);
    s.wait_workers(2, &old);
    assert!(
        eventually(Duration::from_secs(10), || s.workers().len() == 2),
        "the old workers exit: {}",
        s.error_log()
    );
    let (accepted, silent) = accepted_with_silent(s.addr(), 5);
    assert_eq!(
        accepted, 5,
        "without deferred, every connection is accepted"
    );
    answered(send_requests(silent));
}
