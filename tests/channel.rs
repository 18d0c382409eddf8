//! The master's commands reach its workers over the queue engine's ipc channels (issue 3):
//! every worker gets each command, and a replacement worker gets a fresh channel.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::time::Duration;

/// Worker pids that logged `what` in the error log.
fn pids_that_logged(s: &Server, what: &str) -> BTreeSet<i32> {
    s.error_log()
        .lines()
        .filter(|l| l.contains(what))
        .filter_map(|l| l.split("] ").nth(1)?.split('#').next()?.parse().ok())
        .collect()
}

#[test]
fn reopen_reaches_every_worker() {
    let port = free_port();
    let conf = basic_conf(port, "", "", "").replace("worker_processes = 2", "worker_processes = 3");
    let s = Server::start(port, &conf);
    let workers: BTreeSet<i32> = s.wait_workers(3, &[]).into_iter().collect();
    s.signal(libc::SIGUSR1);
    assert!(
        eventually(Duration::from_secs(10), || pids_that_logged(
            &s,
            "reopened log files"
        ) == workers),
        "workers {workers:?}, reopened {:?}\n{}",
        pids_that_logged(&s, "reopened log files"),
        s.error_log()
    );
}

#[test]
fn a_replaced_worker_gets_commands_on_a_fresh_channel() {
    let port = free_port();
    let s = Server::start(port, &basic_conf(port, "", "", ""));
    let old = s.wait_workers(2, &[]);
    // SAFETY: a worker of the master this test started.
    unsafe { libc::kill(old[0], libc::SIGKILL) };
    let now = s.wait_workers(2, &[old[0]]);
    let fresh: BTreeSet<i32> = now.iter().copied().filter(|p| !old.contains(p)).collect();
    assert_eq!(fresh.len(), 1, "one replacement: {now:?}");
    s.signal(libc::SIGUSR1);
    assert!(
        eventually(Duration::from_secs(10), || pids_that_logged(
            &s,
            "reopened log files"
        )
        .is_superset(&fresh)),
        "the replacement did not get the command\n{}",
        s.error_log()
    );
    assert_eq!(get(s.addr(), "/health").status, 200);
}
