//! Binary upgrade on the fly (USR2, WINCH, QUIT), as with nginx: the new master inherits the
//! listening sockets, so no client sees a refused connection or a failed request.

mod common;
use common::*;

use std::path::PathBuf;
use std::time::Duration;

fn oldbin(s: &Server) -> PathBuf {
    s.path("var/run/bizzy.pid.oldbin")
}

/// USR2, then waits for the new master's pid file and its workers; the old pid file is renamed.
fn start_new_binary(s: &Server) -> NewMaster {
    let old = s.master_pid();
    let new = common::start_new_binary(s);
    assert_eq!(
        read_pid(&oldbin(s)),
        Some(old),
        "the old pid file is renamed"
    );
    new
}

#[test]
fn usr2_winch_quit_upgrade_without_refusals() {
    let port = free_port();
    let mut s = Server::start(port, &basic_conf(port, "", "", ""));
    let old_workers = s.wait_workers(2, &[]);
    let hammer = Hammer::start(s.addr());
    std::thread::sleep(Duration::from_millis(200));

    let new = start_new_binary(&s);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", new.0)).unwrap();
    assert!(cmdline.starts_with(b"bizzy: master process"));
    std::thread::sleep(Duration::from_millis(300));

    winch_stops_old_workers(&s, &old_workers);
    assert!(s.workers().is_empty(), "and starts no others");
    std::thread::sleep(Duration::from_millis(300));

    s.signal(libc::SIGQUIT);
    assert_eq!(
        s.wait_exit(Duration::from_secs(10)),
        Some(0),
        "QUIT stops the old master: {}",
        s.error_log()
    );
    assert!(!oldbin(&s).exists(), "the old master removes its .oldbin");
    assert_eq!(read_pid(&s.path("var/run/bizzy.pid")), Some(new.0));
    std::thread::sleep(Duration::from_millis(300));

    let st = hammer.finish();
    assert_eq!(st.refused, 0, "{st:?}");
    assert!(st.failed.is_empty(), "{st:?}");
    assert!(st.ok > 10, "{st:?}");
    assert_eq!(get(s.addr(), "/health").status, 200);
}

#[test]
fn usr2_new_binary_dying_restores_the_pid_file() {
    let port = free_port();
    let s = Server::start(port, &basic_conf(port, "", "", ""));
    let old = s.master_pid();
    let old_workers = s.wait_workers(2, &[]);
    let new = start_new_binary(&s);
    let new_workers = children_titled(new.0, "bizzy: worker process");

    winch_stops_old_workers(&s, &old_workers);

    kill(new.0, libc::SIGKILL);
    for w in new_workers {
        kill(w, libc::SIGKILL);
    }
    let pid_file = s.path("var/run/bizzy.pid");
    assert!(
        eventually(Duration::from_secs(10), || read_pid(&pid_file) == Some(old)
            && !oldbin(&s).exists()),
        "pid file {:?}, oldbin {:?}: {}",
        read_pid(&pid_file),
        read_pid(&oldbin(&s)),
        s.error_log()
    );
    assert!(
        s.error_log().contains("new binary process"),
        "{}",
        s.error_log()
    );
    let restarted = s.wait_workers(2, &old_workers);
    assert_eq!(restarted.len(), 2, "workers stopped by WINCH come back");
    assert_eq!(get(s.addr(), "/health").status, 200);
}
