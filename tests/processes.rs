//! Process kinds (DESIGN.md section 2): the cache manager the master runs beside its workers
//! when the configuration has a `[cache]` section. Started after the workers, restarted with
//! back-off when it dies, replaced on reload, left alone by WINCH, stopped by QUIT. Every wait
//! is bounded.

mod common;
use common::*;

use std::time::{Duration, Instant};

const TITLE: &str = "bizzy: cache manager process";

/// The basic configuration with a `[cache]` whose memcached nobody listens on: the cache
/// manager must keep running without it.
fn cache_conf(port: u16) -> String {
    format!(
        "{}\n[cache]\nmemcached = [\"127.0.0.1:{}\"]\n",
        basic_conf(port, "", "", ""),
        free_port()
    )
}

fn managers(s: &Server) -> Vec<i32> {
    children_titled(s.master_pid(), TITLE)
}

/// Waits until the master has exactly one cache manager, not in `not`; returns its pid.
fn wait_manager(s: &Server, within: Duration, not: &[i32]) -> i32 {
    let mut found = Vec::new();
    let ok = eventually(within, || {
        found = managers(s);
        found.len() == 1 && !not.contains(&found[0])
    });
    assert!(
        ok,
        "cache managers {found:?}, wanted one new (not {not:?})\n{}",
        s.error_log()
    );
    found[0]
}

/// Waits until the error log holds `line`.
fn wait_log(s: &Server, line: &str) {
    assert!(
        eventually(Duration::from_secs(5), || s.error_log().contains(line)),
        "no {line:?} in the error log:\n{}",
        s.error_log()
    );
}

/// QUIT, and the master exits with 0 within 10 s.
fn quit(s: &mut Server) {
    s.signal(libc::SIGQUIT);
    assert_eq!(
        s.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        s.error_log()
    );
}

#[test]
fn the_cache_manager_starts_after_the_workers_and_is_no_worker() {
    let port = free_port();
    let s = Server::start(port, &cache_conf(port));
    let workers = s.wait_workers(2, &[]);
    let cm = wait_manager(&s, Duration::from_secs(5), &[]);
    assert!(!workers.contains(&cm));
    wait_log(&s, &format!("start cache manager process {cm}"));
    let log = s.error_log();
    let last_worker = workers
        .iter()
        .map(|w| {
            log.find(&format!("start worker process {w}"))
                .expect("logged")
        })
        .max()
        .expect("two workers");
    assert!(
        log.find(&format!("start cache manager process {cm}")) > Some(last_worker),
        "started after the workers:\n{log}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(managers(&s), vec![cm], "still exactly one");
    assert_eq!(s.workers().len(), 2);
    assert_eq!(get(s.addr(), "/health").status, 200);

    // USR1 reaches it too: it reopens the error log the master sends it.
    let rotated = s.path("var/log/error.log.1");
    std::fs::rename(s.path("var/log/error.log"), &rotated).unwrap();
    s.signal(libc::SIGUSR1);
    wait_log(&s, &format!("{cm}#0: reopened log files"));
}

#[test]
fn a_killed_cache_manager_comes_back_with_back_off() {
    let port = free_port();
    let s = Server::start(port, &cache_conf(port));
    s.wait_workers(2, &[]);
    let first = wait_manager(&s, Duration::from_secs(5), &[]);

    let t = Instant::now();
    kill(first, libc::SIGKILL);
    let second = wait_manager(&s, Duration::from_secs(1), &[first]);
    assert!(t.elapsed() < Duration::from_secs(1));
    wait_log(
        &s,
        &format!("cache manager process {first} exited on signal 9"),
    );

    // Killed again young, twice: 100 ms, then 200 ms.
    kill(second, libc::SIGKILL);
    let third = wait_manager(&s, Duration::from_secs(2), &[first, second]);
    kill(third, libc::SIGKILL);
    let fourth = wait_manager(&s, Duration::from_secs(2), &[first, second, third]);
    wait_log(&s, "respawning the cache manager in 100 ms");
    wait_log(&s, "respawning the cache manager in 200 ms");
    let log = s.error_log();
    for pid in [second, third] {
        assert!(
            log.contains(&format!(
                "[crit] {}#0: cache manager process {pid} exited on signal 9",
                s.master_pid()
            )),
            "death of {pid} logged with Crit:\n{log}"
        );
    }
    assert!(alive(fourth));
    assert_eq!(s.workers().len(), 2, "workers untouched");
    assert!(!log.contains("respawning the worker"), "{log}");
}

#[test]
fn hup_replaces_the_cache_manager() {
    let port = free_port();
    let s = Server::start(port, &cache_conf(port));
    let old_workers = s.wait_workers(2, &[]);
    let old = wait_manager(&s, Duration::from_secs(5), &[]);
    s.signal(libc::SIGHUP);
    s.wait_workers(2, &old_workers);
    let t = Instant::now();
    let new = wait_manager(&s, Duration::from_secs(5), &[old]);
    assert!(
        eventually(Duration::from_secs(2), || !alive(old)),
        "the old cache manager still runs {:?} after the reload",
        t.elapsed()
    );
    wait_log(
        &s,
        &format!("cache manager process {old} exited with code 0"),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(managers(&s), vec![new], "exactly one");
    let log = s.error_log();
    assert!(
        !log.contains("respawning the cache manager") && !log.contains("[crit]"),
        "{log}"
    );
}

#[test]
fn winch_leaves_the_cache_manager_and_hup_brings_back_only_the_workers() {
    let port = free_port();
    let mut s = Server::start(port, &cache_conf(port));
    let workers = s.wait_workers(2, &[]);
    let cm = wait_manager(&s, Duration::from_secs(5), &[]);
    winch_stops_old_workers(&s, &workers);
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.workers().is_empty(), "no worker restarted");
    assert_eq!(managers(&s), vec![cm], "the same cache manager");

    s.signal(libc::SIGHUP);
    s.wait_workers(2, &workers);
    wait_log(&s, "starting the workers again");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(managers(&s), vec![cm], "no second cache manager");
    assert_eq!(get(s.addr(), "/health").status, 200);

    let children = children_titled(s.master_pid(), "bizzy:");
    quit(&mut s);
    assert!(children.iter().all(|p| !alive(*p)), "{children:?} left");
}

#[test]
fn quit_after_winch_with_only_the_cache_manager_left() {
    let port = free_port();
    let mut s = Server::start(port, &cache_conf(port));
    let workers = s.wait_workers(2, &[]);
    let cm = wait_manager(&s, Duration::from_secs(5), &[]);
    winch_stops_old_workers(&s, &workers);
    assert_eq!(managers(&s), vec![cm]);
    quit(&mut s);
    assert!(!alive(cm), "the cache manager is left");
}

#[test]
fn no_cache_section_no_cache_manager() {
    let port = free_port();
    let s = Server::start(port, &basic_conf(port, "", "", ""));
    s.wait_workers(2, &[]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(managers(&s).is_empty());
    assert_eq!(children_titled(s.master_pid(), "bizzy:").len(), 2);
    assert!(!s.error_log().contains("cache manager"));
}

#[test]
fn quit_stops_the_cache_manager_and_the_master_cleanly() {
    let port = free_port();
    let mut s = Server::start(port, &cache_conf(port));
    s.wait_workers(2, &[]);
    let cm = wait_manager(&s, Duration::from_secs(5), &[]);
    let children = children_titled(s.master_pid(), "bizzy:");
    assert_eq!(children.len(), 3, "two workers and the cache manager");
    quit(&mut s);
    assert!(children.iter().all(|p| !alive(*p)), "{children:?} left");
    let log = s.error_log();
    assert!(
        log.contains(&format!("cache manager process {cm} exited with code 0")),
        "{log}"
    );
    assert!(!log.contains("[crit]"), "{log}");
}

#[test]
fn term_stops_the_cache_manager_too() {
    let port = free_port();
    let mut s = Server::start(port, &cache_conf(port));
    s.wait_workers(2, &[]);
    let cm = wait_manager(&s, Duration::from_secs(5), &[]);
    s.signal(libc::SIGTERM);
    assert_eq!(
        s.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        s.error_log()
    );
    assert!(!alive(cm));
}

#[test]
fn workers_that_cannot_start_take_the_cache_manager_down_with_the_master() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root switches users");
        return;
    }
    let port = free_port();
    let conf = cache_conf(port).replace(
        &format!("user = \"{}\"", test_user()),
        "user = \"bizzy-no-such-user\"",
    );
    let mut s = Server::prepare(port, &conf);
    s.child = Some(
        std::process::Command::new(BIN)
            .arg("-p")
            .arg(s.dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let master = s.master_pid();
    let code = s.wait_exit(Duration::from_secs(10));
    assert!(
        code.is_some_and(|c| c != 0),
        "the master exits with an error, not {code:?}: {}",
        s.error_log()
    );
    let log = s.error_log();
    let started: Vec<i32> = log
        .lines()
        .filter_map(|l| {
            l.split_once(" process ")
                .filter(|(h, _)| h.contains("start "))
        })
        .filter_map(|(_, pid)| pid.trim().parse().ok())
        .collect();
    assert!(started.len() >= 3, "{log}");
    assert!(
        eventually(Duration::from_secs(2), || !started
            .iter()
            .any(|p| alive(*p))),
        "children of master {master} left: {started:?}"
    );
    assert!(log.contains("no worker process is left: exiting"), "{log}");
}
