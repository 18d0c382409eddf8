//! The command line (DESIGN.md section 3): `-t`, `-T`, `-q`, `-V` and `-s`, run as a user would.

mod common;
use common::*;

use std::time::Duration;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A valid configuration with one broken key; returns the text and the line of that key.
fn broken_conf(port: u16) -> (String, usize) {
    let conf = basic_conf(port, "", "keepalive_timeout = \"10x\"", "");
    let line = conf
        .lines()
        .position(|l| l.starts_with("keepalive_timeout"))
        .expect("the broken key is there")
        + 1;
    (conf, line)
}

#[test]
fn test_option_reports_ok_and_exits_0() {
    let port = free_port();
    let s = Server::prepare(port, &basic_conf(port, "", "", ""));
    let o = s.run(&["-t"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let file = s.conf_path.display().to_string();
    assert!(
        err.contains(&format!("configuration file {file} syntax is ok")),
        "{err}"
    );
    assert!(
        err.contains(&format!("configuration file {file} test is successful")),
        "{err}"
    );
    assert!(stdout(&o).is_empty(), "-t prints no configuration");
}

#[test]
fn test_option_names_file_line_and_key_and_exits_1() {
    let port = free_port();
    let (conf, line) = broken_conf(port);
    let s = Server::prepare(port, &conf);
    let o = s.run(&["-t"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let want = format!("{}:{line}: http.keepalive_timeout", s.conf_path.display());
    assert!(err.contains(&want), "wanted {want:?} in {err}");
    assert!(err.contains("test failed"), "{err}");
    assert!(!err.contains("successful"), "{err}");
}

#[test]
fn dump_option_prints_effective_configuration() {
    let port = free_port();
    let s = Server::prepare(port, &basic_conf(port, "", "", ""));
    let o = s.run(&["-T"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("test is successful"), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("[main]"), "{out}");
    assert!(out.contains("worker_processes = 2"), "set value: {out}");
    assert!(
        out.contains("worker_connections = 10240"),
        "default filled in: {out}"
    );
    assert!(out.contains(&format!("127.0.0.1:{port}")), "{out}");
    assert!(
        out.contains(&s.path("var/log/error.log").display().to_string()),
        "paths resolved against the prefix: {out}"
    );
}

#[test]
fn quiet_option_is_silent_unless_error() {
    let port = free_port();
    let s = Server::prepare(port, &basic_conf(port, "", "", ""));
    let o = s.run(&["-t", "-q"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));

    let (conf, _) = broken_conf(port);
    std::fs::write(&s.conf_path, conf).unwrap();
    let o = s.run(&["-t", "-q"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("http.keepalive_timeout"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn version_option_prints_the_version() {
    let o = std::process::Command::new(BIN).arg("-V").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let all = stderr(&o) + &stdout(&o);
    assert!(
        all.contains(&format!("bizzy/{}", env!("CARGO_PKG_VERSION"))),
        "{all}"
    );
}

#[test]
fn invalid_option_and_signal_name_fail() {
    let port = free_port();
    let s = Server::prepare(port, &basic_conf(port, "", "", ""));
    let o = s.run(&["-x"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("invalid option"), "{}", stderr(&o));
    let o = s.run(&["-s", "restart"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("restart"), "{}", stderr(&o));
}

#[test]
fn signal_without_running_master_fails() {
    let port = free_port();
    let s = Server::prepare(port, &basic_conf(port, "", "", ""));
    let o = s.run(&["-s", "reload"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bizzy.pid"), "{}", stderr(&o));
}

#[test]
fn signal_reload_and_reopen_reach_the_master() {
    let port = free_port();
    let s = Server::start(port, &basic_conf(port, "", "", ""));
    let old = s.wait_workers(2, &[]);
    let o = s.run(&["-s", "reload"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    s.wait_workers(2, &old);
    assert!(s.error_log().contains("reconfiguring"), "{}", s.error_log());
    let o = s.run(&["-s", "reopen"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        eventually(Duration::from_secs(5), || s
            .error_log()
            .contains("reopening logs")),
        "{}",
        s.error_log()
    );
    assert_eq!(get(s.addr(), "/health").status, 200);
}

#[test]
fn signal_quit_stops_gracefully_and_removes_pid_file() {
    let port = free_port();
    let mut s = Server::start(port, &basic_conf(port, "", "", ""));
    let pid_file = s.path("var/run/bizzy.pid");
    assert_eq!(read_pid(&pid_file), Some(s.master_pid()));
    let o = s.run(&["-s", "quit"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!pid_file.exists());
    assert!(s.error_log().contains("graceful shutdown"));
}

#[test]
fn signal_stop_stops_fast() {
    let port = free_port();
    let mut s = Server::start(port, &basic_conf(port, "", "", ""));
    let _idle = connect(s.addr());
    let o = s.run(&["-s", "stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(s.wait_exit(Duration::from_secs(3)), Some(0));
    assert!(s.error_log().contains("fast shutdown"));
}

#[test]
fn signal_reload_with_broken_configuration_sends_nothing() {
    let port = free_port();
    let s = Server::start(port, &basic_conf(port, "", "", ""));
    let workers = s.wait_workers(2, &[]);
    let (conf, line) = broken_conf(port);
    std::fs::write(&s.conf_path, conf).unwrap();
    let o = s.run(&["-s", "reload"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(":{line}: http.keepalive_timeout")),
        "says why: {err}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let log = s.error_log();
    assert!(!log.contains("reconfiguring"), "a reload was sent: {log}");
    let mut now = s.workers();
    now.sort_unstable();
    let mut was = workers;
    was.sort_unstable();
    assert_eq!(now, was, "the workers are the same");
    assert_eq!(get(s.addr(), "/health").status, 200);
}

/// `main.daemon = true`: the command returns at once, a detached master (another pid, in its
/// own session) serves, and it stops on QUIT sent through the pid file.
#[test]
fn daemon_mode_detaches_and_serves() {
    let port = free_port();
    let s = Server::prepare(port, &basic_conf(port, "daemon = true", "", ""));
    let out = s.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pid_file = s.path("var/run/bizzy.pid");
    assert!(eventually(Duration::from_secs(10), || read_pid(&pid_file).is_some()));
    let master = read_pid(&pid_file).unwrap();
    let guard = scopeguard(master);
    assert!(eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(s.addr()).is_ok()
    }));
    assert_eq!(get(s.addr(), "/health").status, 200);
    let stat = std::fs::read_to_string(format!("/proc/{master}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    assert_eq!(
        fields[3],
        master.to_string(),
        "the daemon leads its own session"
    );
    assert!(s.run(&["-s", "quit"]).status.success());
    assert!(
        eventually(Duration::from_secs(10), || !alive(master)),
        "daemon did not stop"
    );
    drop(guard);
}

/// Kills a daemon this test started if the test fails before stopping it.
struct Guard(i32);
fn scopeguard(pid: i32) -> Guard {
    Guard(pid)
}
impl Drop for Guard {
    fn drop(&mut self) {
        if alive(self.0) {
            // SAFETY: the daemon master this test started.
            unsafe { libc::kill(self.0, libc::SIGTERM) };
        }
    }
}

/// Regression: a daemon that failed after it detached (its standard error is /dev/null by then)
/// said nothing anywhere; the error log says why.
#[test]
fn a_daemon_that_cannot_write_its_pid_file_says_so_in_the_error_log() {
    let port = free_port();
    let conf = basic_conf(port, "daemon = true", "", "").replace(
        "pid = \"var/run/bizzy.pid\"",
        "pid = \"/proc/nonexistent/bizzy.pid\"",
    );
    let s = Server::prepare(port, &conf);
    let o = s.run(&[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the parent detaches: {}",
        stderr(&o)
    );
    let logged = eventually(Duration::from_secs(5), || {
        s.error_log().contains("\"/proc/nonexistent\"")
    });
    assert!(logged, "error log: {}", s.error_log());
}
