//! The operator's files in `conf/` (issue 8), used as an operator's machine uses them: the
//! systemd unit checked by `systemd-analyze verify` and its commands run in the order systemd
//! runs them for a `Type=forking` service; the logrotate snippet run by `logrotate` against a
//! server under load. Both files are rendered with this test's binary, prefix, pid file and log
//! directory in place of the installed paths they name; nothing else in them changes.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const UNIT: &str = include_str!("../conf/bizzy.service");
const LOGROTATE: &str = include_str!("../conf/bizzy.logrotate");

/// The value of `key` in `[section]` of the unit, which must be set exactly once.
fn unit_value(section: &str, key: &str) -> String {
    let mut current = "";
    let mut found = Vec::new();
    for line in UNIT.lines().map(str::trim) {
        if line.starts_with('[') {
            current = line;
        } else if current.trim_matches(['[', ']']) == section {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == key {
                    found.push(v.trim().to_string());
                }
            }
        }
    }
    assert_eq!(found.len(), 1, "[{section}] {key}= in conf/bizzy.service");
    found.remove(0)
}

/// The word after `flag` in a command line.
fn arg_after(cmd: &str, flag: &str) -> String {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| *w == flag)
        .unwrap_or_else(|| panic!("{flag} in {cmd:?}"));
    words[i + 1].to_string()
}

/// The installed paths the files name, each with what stands in for it in a test prefix.
fn substitutions(s: &Server) -> Vec<(String, PathBuf)> {
    let start = unit_value("Service", "ExecStart");
    let bin = start
        .split_whitespace()
        .next()
        .expect("a command")
        .to_string();
    let log_dir = LOGROTATE
        .lines()
        .find_map(|l| l.strip_suffix("/*.log {"))
        .expect("the snippet rotates DIR/*.log")
        .to_string();
    vec![
        (bin, PathBuf::from(BIN)),
        (arg_after(&start, "-c"), s.conf_path.clone()),
        (arg_after(&start, "-p"), s.dir.path().to_path_buf()),
        (
            unit_value("Service", "PIDFile"),
            s.path("var/run/bizzy.pid"),
        ),
        (log_dir, s.path("var/log")),
    ]
}

fn render(text: &str, s: &Server) -> String {
    substitutions(s)
        .iter()
        .fold(text.to_string(), |t, (from, to)| {
            t.replace(from.as_str(), &to.to_string_lossy())
        })
}

/// The test configuration, which says what the unit's header asks of one: daemon mode, the pid
/// file and the logs where the unit and the snippet look for them (`var/` in the prefix here).
fn daemon_conf(port: u16) -> String {
    basic_conf(port, "daemon = true", "", "")
}

/// A program in PATH, or in the sbin directories a non-root PATH may lack.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs a unit command line (no quoting in ours, and no `-`, `@` or `+` prefixes).
fn run_unit_command(cmd: &str) -> std::process::Output {
    let mut words = cmd.split_whitespace();
    let program = words.next().expect("a command");
    assert!(
        program.starts_with('/'),
        "{cmd:?}: systemd wants an absolute path"
    );
    Command::new(program)
        .args(words)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Runs ExecStart= of a forking service: it must exit 0 within systemd's start timeout (here
/// 10 s), which it does only if the master detached. A master that stays in the foreground is
/// stopped, and the test fails.
fn start_forking(cmd: &str, s: &Server) {
    let mut words = cmd.split_whitespace();
    let stderr = s.path("var/log/start.stderr");
    let mut child = Command::new(words.next().expect("a command"))
        .args(words)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut status = None;
    eventually(Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let Some(status) = status else {
        drop(DaemonGuard(child.id() as i32));
        let _ = child.wait();
        panic!("ExecStart= did not return: the master did not detach (main.daemon?)");
    };
    assert!(
        status.success(),
        "ExecStart= {status}: {}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
}

/// Stops a daemon this test started if the test fails before stopping it.
struct DaemonGuard(i32);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let pid = self.0;
        let workers = children_titled(pid, "bizzy:");
        if alive(pid) {
            kill(pid, libc::SIGTERM);
            eventually(Duration::from_secs(10), || !alive(pid));
        }
        for w in workers.into_iter().filter(|w| alive(*w)) {
            kill(w, libc::SIGKILL);
        }
    }
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = which("systemd-analyze") else {
        eprintln!("systemd-analyze is not installed: conf/bizzy.service is not verified");
        return;
    };
    let port = free_port();
    let s = Server::prepare(port, &daemon_conf(port));
    let verify = |unit: &str| {
        let path = s.path("bizzy.service");
        std::fs::write(&path, unit).unwrap();
        let out = Command::new(&analyze)
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        // Warnings (an unknown key, a value that does not parse) leave the exit status 0: any
        // line about this unit counts. Lines about other units on the machine do not.
        let about_unit: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .chain(String::from_utf8_lossy(&out.stdout).lines())
            .filter(|l| l.contains("bizzy.service"))
            .map(str::to_string)
            .collect();
        (out.status.success(), about_unit)
    };
    let unit = render(UNIT, &s);
    let (ok, complaints) = verify(&unit);
    assert!(
        ok && complaints.is_empty(),
        "systemd-analyze verify: {complaints:#?}\n{unit}"
    );
    // The check is real: the same unit with a misspelt key fails it.
    let (_, complaints) = verify(&unit.replace("KillMode=", "KilMode="));
    assert!(
        !complaints.is_empty(),
        "systemd-analyze verify does not see a misspelt key"
    );
}

#[test]
fn the_unit_starts_reloads_and_stops_a_daemon_as_systemd_does() {
    assert_eq!(unit_value("Service", "Type"), "forking");
    assert_eq!(unit_value("Service", "KillSignal"), "SIGQUIT");
    assert_eq!(unit_value("Service", "KillMode"), "mixed");
    let stop_timeout: u64 = unit_value("Service", "TimeoutStopSec")
        .trim_end_matches('s')
        .parse()
        .expect("TimeoutStopSec in seconds");
    let port = free_port();
    let s = Server::prepare(port, &daemon_conf(port));
    let command = |key: &str| render(&unit_value("Service", key), &s);
    let pid_file = PathBuf::from(render(&unit_value("Service", "PIDFile"), &s));

    // ExecStartPre= keeps a broken configuration from starting, and is quiet on a good one.
    let good = std::fs::read_to_string(&s.conf_path).unwrap();
    std::fs::write(
        &s.conf_path,
        good.replace("log_level = \"info\"", "log_level = 7"),
    )
    .unwrap();
    let out = run_unit_command(&command("ExecStartPre"));
    assert!(
        !out.status.success() && output_text(&out).contains("main.log_level"),
        "{}",
        output_text(&out)
    );
    std::fs::write(&s.conf_path, &good).unwrap();
    let out = run_unit_command(&command("ExecStartPre"));
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        output_text(&out)
    );

    // ExecStart= returns once the master has detached; the master it leaves is in PIDFile=.
    start_forking(&command("ExecStart"), &s);
    assert!(
        eventually(Duration::from_secs(10), || read_pid(&pid_file).is_some()),
        "no pid file {} after ExecStart=",
        pid_file.display()
    );
    let master = read_pid(&pid_file).unwrap();
    let _guard = DaemonGuard(master);
    assert!(alive(master), "the pid file names a dead process");
    let workers = wait_children(master, 2, &[]);
    assert_eq!(get(s.addr(), "/health").status, 200);

    // ExecReload= replaces the workers under the same master.
    let out = run_unit_command(&command("ExecReload"));
    assert!(out.status.success(), "{}", output_text(&out));
    wait_children(master, 2, &workers);
    assert_eq!(read_pid(&pid_file), Some(master));
    assert_eq!(get(s.addr(), "/health").status, 200);

    // Stop: KillSignal= to the master alone; it must be gone well within TimeoutStopSec=.
    kill(master, libc::SIGQUIT);
    assert!(
        eventually(Duration::from_secs(stop_timeout), || !alive(master)),
        "the master outlived TimeoutStopSec={stop_timeout}s\n{}",
        s.error_log()
    );
    assert!(
        !pid_file.exists(),
        "the master left its pid file behind on QUIT"
    );
    assert!(s.error_log().contains("graceful shutdown"));
}

/// Waits until `master` has `n` worker children, none of them in `not`.
fn wait_children(master: i32, n: usize, not: &[i32]) -> Vec<i32> {
    let mut now = Vec::new();
    let ok = eventually(Duration::from_secs(15), || {
        now = children_titled(master, "bizzy: worker process");
        now.len() == n && now.iter().all(|p| !not.contains(p))
    });
    assert!(
        ok,
        "workers of {master}: {now:?}, wanted {n} not in {not:?}"
    );
    now
}

/// A client on its own thread requesting `/n/0`, `/n/1`, ... one connection each; `answered`
/// counts the requests that got their 200, in order.
struct Numbered {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<()>,
}

impl Numbered {
    fn start(addr: std::net::SocketAddr) -> Numbered {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let (flag, count) = (stop.clone(), answered.clone());
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let n = count.load(Ordering::Relaxed);
                let r = get(addr, &format!("/n/{n}"));
                assert_eq!(r.status, 200, "/n/{n}: {}", r.head);
                count.store(n + 1, Ordering::Relaxed);
            }
        });
        Numbered {
            stop,
            answered,
            handle,
        }
    }

    fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Stops the client; returns how many requests were answered.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let answered = self.answered;
        self.handle.join().expect("every request was answered");
        answered.load(Ordering::Relaxed)
    }
}

/// How often each `/n/N` appears in an access log.
fn numbers_logged(text: &str, counts: &mut BTreeMap<u64, u32>) {
    for line in text.lines() {
        let n = line
            .split_once("\"GET /n/")
            .and_then(|(_, rest)| rest.split_once(' '))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("an access log line of this test: {line:?}"));
        *counts.entry(n).or_default() += 1;
    }
}

/// Worker pids that logged "reopened log files" in the (new) error log.
fn workers_reopened(s: &Server) -> BTreeSet<i32> {
    s.error_log()
        .lines()
        .filter(|l| l.contains("reopened log files"))
        .filter_map(|l| l.split("] ").nth(1)?.split('#').next()?.parse().ok())
        .collect()
}

#[test]
fn logrotate_rotates_the_logs_under_load_and_loses_no_line() {
    let logrotate = which("logrotate").unwrap_or_else(|| {
        panic!("logrotate is not installed (scripts/test installs it: apt-get install logrotate)")
    });
    let port = free_port();
    let locations = r#"
  [[http.server.location]]
  prefix = "/n/"
  return = { status = 200, body = "n\n", content_type = "text/plain" }
"#;
    let mut s = Server::start(port, &basic_conf(port, "", "", locations));
    let workers: BTreeSet<i32> = s.wait_workers(2, &[]).into_iter().collect();
    let snippet = s.path("conf/bizzy.logrotate");
    std::fs::write(&snippet, render(LOGROTATE, &s)).unwrap();
    let access = s.path("var/log/access.log");

    let client = Numbered::start(s.addr());
    assert!(eventually(Duration::from_secs(10), || client.answered() >= 200));
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&access).unwrap());
    let out = Command::new(&logrotate)
        .arg("-f")
        .arg("-s")
        .arg(s.path("var/logrotate.state"))
        .arg(&snippet)
        .output()
        .unwrap();
    assert!(out.status.success(), "logrotate: {}", output_text(&out));
    let rotated = s.path("var/log/access.log.1");
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&rotated).unwrap()),
        inode,
        "access.log was renamed to access.log.1 (delaycompress: not compressed yet)"
    );
    assert!(s.path("var/log/error.log.1").exists());

    // Every worker switched to the new files (it says so in the new error log); requests
    // answered from then on must all be in the new access.log.
    assert!(
        eventually(Duration::from_secs(10), || workers_reopened(&s) == workers),
        "workers {workers:?}, reopened {:?}",
        workers_reopened(&s)
    );
    let after_reopen = client.answered();
    assert!(eventually(Duration::from_secs(10), || client.answered()
        >= after_reopen + 200));
    let sent = client.finish();

    // A graceful stop flushes what the workers still hold.
    s.signal(libc::SIGQUIT);
    assert_eq!(s.wait_exit(Duration::from_secs(15)), Some(0));
    let mut old = BTreeMap::new();
    numbers_logged(&std::fs::read_to_string(&rotated).unwrap(), &mut old);
    let mut new = BTreeMap::new();
    numbers_logged(&s.access_log(), &mut new);
    assert!(!old.is_empty() && !new.is_empty(), "both logs were written");
    for n in after_reopen..sent {
        assert!(
            new.contains_key(&n),
            "/n/{n}, sent after the reopen, is not in the new log"
        );
    }
    let mut all = old.clone();
    for (n, c) in &new {
        *all.entry(*n).or_default() += c;
    }
    let wrong: Vec<(u64, u32)> = (0..sent)
        .map(|n| (n, all.get(&n).copied().unwrap_or(0)))
        .filter(|(_, c)| *c != 1)
        .collect();
    assert!(
        wrong.is_empty() && all.len() as u64 == sent,
        "{sent} requests sent; logged a number of times other than once: {wrong:?}; {} distinct",
        all.len()
    );
}
