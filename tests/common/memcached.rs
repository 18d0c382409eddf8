//! A memcached of a test's own: `/usr/bin/memcached` (or `memcached` on the PATH) on a free
//! port of 127.0.0.1, UDP off, as root only with `-u root` (it refuses root otherwise); killed by
//! its pid when the handle drops. [`Memcached::get`] reads a key with a raw text-protocol `get`,
//! so that a test sees what the server holds, not what a client library makes of it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Memcached {
    pub port: u16,
    child: Option<Child>,
    /// Options beyond the address and the user.
    args: Vec<String>,
}

impl Memcached {
    /// A new, empty memcached, accepting connections.
    pub fn start() -> Memcached {
        Memcached::start_with(&[])
    }

    /// [`Memcached::start`] with more command-line options (`-I 1k`, say).
    pub fn start_with(args: &[&str]) -> Memcached {
        let mut m = Memcached {
            port: super::free_port(),
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        m.start_again();
        m
    }

    /// `127.0.0.1:PORT`, as `cache.memcached` takes it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: whatever it held is gone).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty (stopping it first if it runs).
    pub fn start_again(&mut self) {
        self.stop();
        let bin = if std::path::Path::new("/usr/bin/memcached").exists() {
            "/usr/bin/memcached"
        } else {
            "memcached"
        };
        let mut cmd = Command::new(bin);
        cmd.args(["-l", "127.0.0.1", "-U", "0", "-m", "64", "-p"])
            .arg(self.port.to_string())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if nix::unistd::geteuid().is_root() {
            cmd.args(["-u", "root"]);
        }
        let mut child = cmd
            .spawn()
            .expect("memcached runs (scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr()).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("memcached {:?} exited: {status}", self.args);
            }
            assert!(Instant::now() < deadline, "memcached does not accept");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    /// The value of `key`, None when absent (or when the server is stopped).
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut s = TcpStream::connect(self.addr()).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("get {key}\r\n").as_bytes()).ok()?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        if line == "END\r\n" {
            return None;
        }
        // VALUE <key> <flags> <bytes>
        let len: usize = line
            .split_whitespace()
            .nth(3)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("memcached answered {line:?}"));
        let mut value = vec![0; len + 2];
        r.read_exact(&mut value).expect("the value");
        value.truncate(len);
        Some(value)
    }

    /// [`Memcached::get`] as text.
    pub fn text(&self, key: &str) -> Option<String> {
        self.get(key)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.stop();
    }
}
