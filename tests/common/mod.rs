//! Test harness: starts the real `bizzy` binary in a temporary prefix on free ports, and talks
//! to it with raw sockets. Every server started here is stopped when its handle drops.

#![allow(dead_code)]

pub mod cluster;
pub mod memcached;
pub mod mqtt;
pub mod pg;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_bizzy");

/// Launches `prepared`, whose `[auth]` reads `conf/firebase-certs.json`, with the test
/// certificate written there (key id `test`), and waits until its MQTT port `mqtt` accepts.
pub fn launch_with_test_certs(prepared: Server, mqtt: u16) -> (Server, SocketAddr) {
    let cert = include_str!("../../src/modules/auth/testdata/cert.pem");
    let certs = serde_json::json!({ "test": cert }).to_string();
    write_file(&prepared.path("conf/firebase-certs.json"), certs.as_bytes());
    let server = prepared.launch();
    let addr: SocketAddr = ([127, 0, 0, 1], mqtt).into();
    assert!(
        eventually(Duration::from_secs(10), || TcpStream::connect(addr).is_ok()),
        "MQTT listens"
    );
    (server, addr)
}

/// Two different free TCP ports on 127.0.0.1 (an HTTP and an MQTT listener, say).
pub fn two_free_ports() -> (u16, u16) {
    let first = free_port();
    loop {
        let p = free_port();
        if p != first {
            return (first, p);
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The user workers run as when the tests run as root: the current user, so that the temporary
/// prefix stays readable.
pub fn test_user() -> String {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".into())
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub child: Option<Child>,
    pub conf_path: PathBuf,
}

/// The `[main]` section every test configuration starts with, plus `extra` keys.
fn main_section(extra: &str) -> String {
    format!(
        r#"
[main]
worker_processes = 2
worker_shutdown_timeout = "5s"
user = "{user}"
pid = "var/run/bizzy.pid"
error_log = "var/log/error.log"
log_level = "info"
{extra}
"#,
        user = test_user()
    )
}

/// A configuration with one server on `port`, and `/health`, `/status` and `/metrics`.
pub fn basic_conf(port: u16, main_extra: &str, http_extra: &str, locations: &str) -> String {
    format!(
        r#"{main}
[http]
access_log = "var/log/access.log"
{http_extra}

[[http.server]]
listen = ["127.0.0.1:{port}"]

  [[http.server.location]]
  exact = "/health"
  return = {{ status = 200, body = "ok\n", content_type = "text/plain" }}

  [[http.server.location]]
  exact = "/status"
  handler = "status"

  [[http.server.location]]
  exact = "/metrics"
  handler = "metrics"

{locations}
"#,
        main = main_section(main_extra)
    )
}

impl Server {
    /// Writes `conf` into a new prefix and starts bizzy; waits until `port` accepts.
    pub fn start(port: u16, conf: &str) -> Server {
        let s = Server::prepare(port, conf);
        s.launch()
    }

    /// A prefix with the configuration written, not started.
    pub fn prepare(port: u16, conf: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["conf", "html", "var/log", "var/run"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let conf_path = dir.path().join("conf/bizzy.toml");
        std::fs::write(&conf_path, conf).unwrap();
        Server {
            dir,
            port,
            child: None,
            conf_path,
        }
    }

    pub fn launch(mut self) -> Server {
        let child = Command::new(BIN)
            .arg("-p")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
        self
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = c.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    panic!(
                        "bizzy exited at start: {status}: {err}\n{}",
                        self.error_log()
                    );
                }
            }
            if TcpStream::connect(self.addr()).is_ok() && !self.workers().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("bizzy did not start listening: {}", self.error_log());
    }

    pub fn master_pid(&self) -> i32 {
        self.child.as_ref().expect("started").id() as i32
    }

    /// Pids of the master's children that are workers (by process title).
    pub fn workers(&self) -> Vec<i32> {
        children_titled(self.master_pid(), "bizzy: worker process")
    }

    /// Waits until the master has `n` workers none of which is in `not`.
    pub fn wait_workers(&self, n: usize, not: &[i32]) -> Vec<i32> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let w: Vec<i32> = self
                .workers()
                .into_iter()
                .filter(|p| !not.contains(p))
                .collect();
            if w.len() == n && self.workers().len() == n {
                return w;
            }
            assert!(
                Instant::now() < deadline,
                "workers: {:?}, wanted {n} new\n{}",
                self.workers(),
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling the master process this test started.
        unsafe { libc::kill(self.master_pid(), sig) };
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.path("var/log/error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.path("var/log/access.log")).unwrap_or_default()
    }

    /// Waits for the master to exit; returns its status code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        let c = self.child.as_mut()?;
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                self.child = None;
                return s.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the binary with extra arguments against this prefix.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .arg("-p")
            .arg(self.dir.path())
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id() as i32;
            let workers = children_titled(pid, "bizzy:");
            // SAFETY: signalling the master this test started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
            for w in workers {
                // SAFETY: children of the master this test started.
                unsafe { libc::kill(w, libc::SIGKILL) };
            }
        }
    }
}

/// Children of `ppid` whose command line starts with `title`.
pub fn children_titled(ppid: i32, title: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        if fields.first() == Some(&"Z")
            || fields.get(1).and_then(|p| p.parse::<i32>().ok()) != Some(ppid)
        {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmd.starts_with(title.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads one response from `s` (`head_only` for HEAD requests); None on a clean close.
pub fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>, head_only: bool) -> Option<Resp> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let mut tmp = [0u8; 65536];
        match s.read(&mut tmp) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) => panic!("read failed: {e}; have {:?}", String::from_utf8_lossy(buf)),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    buf.drain(..head_end);
    let mut r = Resp {
        status,
        head,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 304 || status == 204 || status / 100 == 1 {
        return Some(r);
    }
    if r.header("Transfer-Encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        r.body = read_chunked(s, buf);
    } else if let Some(n) = r
        .header("Content-Length")
        .map(|v| v.parse::<usize>().unwrap())
    {
        fill(s, buf, n);
        r.body = buf.drain(..n).collect();
    } else {
        let _ = s.read_to_end(buf);
        r.body = std::mem::take(buf);
    }
    Some(r)
}

fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) {
    while buf.len() < n {
        let mut tmp = [0u8; 65536];
        match s.read(&mut tmp) {
            Ok(0) => panic!("closed with {} of {n} bytes", buf.len()),
            Ok(k) => buf.extend_from_slice(&tmp[..k]),
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

fn read_chunked(s: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(buf, b"\r\n") {
                break i;
            }
            let need = buf.len() + 1;
            fill(s, buf, need);
        };
        let size = usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap().trim(), 16)
            .unwrap();
        buf.drain(..line_end + 2);
        if size == 0 {
            fill(s, buf, 2);
            buf.drain(..2);
            return body;
        }
        fill(s, buf, size + 2);
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

pub fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Sends `raw` on a new connection and reads one response.
pub fn send(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    let mut buf = Vec::new();
    read_response(&mut s, &mut buf, raw.starts_with(b"HEAD ")).expect("a response")
}

/// A GET with keep-alive off.
pub fn get(addr: SocketAddr, path: &str) -> Resp {
    send(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// True when the peer closed the connection (reads EOF or a reset) within the read timeout.
pub fn closed(s: &mut TcpStream) -> bool {
    let mut tmp = [0u8; 4096];
    loop {
        match s.read(&mut tmp) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Polls `f` until it is true or `within` passes.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

pub fn write_file(path: &Path, data: &[u8]) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(path, data).unwrap();
}

/// A whole configuration: the `[main]` of [`basic_conf`] followed by `http`, which starts with
/// `[http]` and holds the servers (for tests that need several servers or other http keys).
pub fn raw_conf(http: &str) -> String {
    format!("{}\n{http}\n", main_section(""))
}

/// Connects and writes `raw` at once.
pub fn open_with(addr: SocketAddr, raw: &[u8]) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    s
}

/// Reads one response on `s`, panicking if the peer closed instead.
pub fn next_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Resp {
    read_response(s, buf, false).expect("a response before the close")
}

/// True when the peer still holds the connection open (no EOF, no reset, no data) for `wait`.
pub fn still_open(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut tmp = [0u8; 1];
    let open = match s.read(&mut tmp) {
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    open
}

/// Sends `raw` on a new connection; the answer must carry `status` and `Connection: close`, and
/// the server must then close the connection.
pub fn expect_refused(addr: SocketAddr, raw: &[u8], status: u16) {
    let mut s = open_with(addr, raw);
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false)
        .unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(raw)));
    assert_eq!(
        r.status,
        status,
        "for {:?}: {}",
        String::from_utf8_lossy(raw),
        r.head
    );
    assert_eq!(
        r.header("Connection"),
        Some("close"),
        "for {:?}",
        String::from_utf8_lossy(raw)
    );
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(
        closed(&mut s),
        "connection left open after {status} for {:?}",
        String::from_utf8_lossy(raw)
    );
}

/// Polls the access log until it has at least `n` lines; returns them.
pub fn access_lines(s: &Server, n: usize) -> Vec<String> {
    eventually(Duration::from_secs(3), || {
        s.access_log().lines().count() >= n
    });
    s.access_log().lines().map(str::to_string).collect()
}

/// The pid written in a pid file, if any.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Sends `sig` to `pid`, a process the calling test started (directly or through its master).
pub fn kill(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory preconditions; callers pass pids of their own servers.
    unsafe { libc::kill(pid, sig) };
}

/// What a [`Hammer`] saw.
#[derive(Debug, Default)]
pub struct HammerStats {
    pub ok: u64,
    pub refused: u64,
    pub failed: Vec<String>,
}

/// A client on its own thread that connects and requests `/health` in a loop (one request per
/// connection), counting refused connections and failed requests until stopped.
pub struct Hammer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<HammerStats>>,
}

impl Hammer {
    pub fn start(addr: SocketAddr) -> Hammer {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut st = HammerStats::default();
            while !flag.load(Ordering::Relaxed) {
                match hammer_once(addr) {
                    Ok(()) => st.ok += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => st.refused += 1,
                    Err(e) => st.failed.push(e.to_string()),
                }
            }
            st
        });
        Hammer {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the client and returns what it saw.
    pub fn finish(mut self) -> HammerStats {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle
            .take()
            .expect("finished once")
            .join()
            .expect("the client thread does not panic")
    }
}

impl Drop for Hammer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One connection, one `GET /health`, the whole answer read: any deviation is an error.
fn hammer_once(addr: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")?;
    let mut got = Vec::new();
    s.read_to_end(&mut got)?;
    let text = String::from_utf8_lossy(&got);
    if text.starts_with("HTTP/1.1 200 ") && text.ends_with("\r\n\r\nok\n") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("bad answer: {text:?}")))
    }
}

/// A master started by USR2 from an old one, stopped (TERM) when the test ends however it ends.
pub struct NewMaster(pub i32);

impl Drop for NewMaster {
    fn drop(&mut self) {
        let workers = children_titled(self.0, "bizzy:");
        kill(self.0, libc::SIGTERM);
        if !eventually(Duration::from_secs(10), || !alive(self.0)) {
            kill(self.0, libc::SIGKILL);
        }
        for w in workers {
            kill(w, libc::SIGKILL);
        }
    }
}

/// USR2 to `s`'s master, then waits for the new master's pid file and its two workers.
pub fn start_new_binary(s: &Server) -> NewMaster {
    let old = s.master_pid();
    let pid_file = s.path("var/run/bizzy.pid");
    s.signal(libc::SIGUSR2);
    assert!(
        eventually(Duration::from_secs(10), || read_pid(&pid_file)
            .is_some_and(|p| p != old)),
        "no new pid file: {}",
        s.error_log()
    );
    let new = NewMaster(read_pid(&pid_file).expect("checked above"));
    assert!(
        eventually(Duration::from_secs(10), || children_titled(
            new.0,
            "bizzy: worker process"
        )
        .len()
            == 2),
        "the new master has no workers: {}",
        s.error_log()
    );
    new
}

/// WINCH to `s`'s master after an upgrade: its workers `old_workers` must stop within 10 s.
pub fn winch_stops_old_workers(s: &Server, old_workers: &[i32]) {
    s.signal(libc::SIGWINCH);
    assert!(
        eventually(Duration::from_secs(10), || old_workers
            .iter()
            .all(|p| !alive(*p))),
        "WINCH stops the old workers: {}",
        s.error_log()
    );
}
