//! The workers' memcached client, on the worker's I/O thread (tokio, current thread): the
//! text protocol, one connection per server, requests pipelined.
//!
//! ```text
//!   task A: get(k1) --+                      +-- one task per server --------------------+
//!   task B: get(k2) --+--> [queue] --------> | take every queued request, one write()     |
//!   task C: add(k3) --+                      | read the replies in order, hand each back  |
//!                                            +--------------------------------------------+
//! ```
//!
//! Requests that arrive while a batch is out wait for the next one, so a burst of misses costs
//! a few system calls, not a round trip each. A server that cannot be reached is left alone
//! for [`DOWN_FOR`]: its requests fail at once and the caller reads PostgreSQL instead. Keys
//! go to servers by the ketama [`Ring`], as the cache manager's do.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::ring::Ring;

/// How long a server that failed is not asked again.
pub const DOWN_FOR: Duration = Duration::from_secs(1);
/// The longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// The longest a batch's replies may take.
const REPLY_TIMEOUT: Duration = Duration::from_millis(500);
/// Bytes asked of each read(2) at least.
const READ_SIZE: usize = 16 * 1024;
/// The largest value read back (memcached's default item size limit).
const MAX_VALUE: usize = 1 << 20;

/// Why memcached gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McError {
    /// No server configured for the key.
    NoServer,
    /// The server is unreachable, or was recently (it is left alone for a while).
    Down(String),
    /// The server answered something this client does not understand.
    Protocol(String),
}

impl std::fmt::Display for McError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            McError::NoServer => write!(f, "no memcached server is configured"),
            McError::Down(why) => write!(f, "memcached is unreachable ({why})"),
            McError::Protocol(why) => write!(f, "memcached answered out of protocol ({why})"),
        }
    }
}

/// The values a `get` found, (key, value) in the server's order.
type Values = Vec<(String, Vec<u8>)>;

enum Op {
    /// `get k1 k2 ...`: the values found, by key.
    Get(Vec<String>, oneshot::Sender<Result<Values, McError>>),
    /// `add k 0 exptime n noreply`: nothing comes back.
    Add(String, Vec<u8>, u32),
}

/// One server: its queue, and when it may be asked again after a failure.
struct Server {
    queue: mpsc::UnboundedSender<Op>,
    down_until: Rc<Cell<Option<Instant>>>,
    why: Rc<RefCell<String>>,
}

/// The memcached servers of `[cache]`, as a worker's I/O thread reads them.
pub struct Client {
    ring: Ring,
    servers: Vec<Server>,
}

impl Client {
    /// A client of `servers` (`host:port`); each server's task is spawned on the current
    /// `LocalSet` (call it on the I/O thread).
    pub fn new(addrs: &[String]) -> Client {
        let servers = addrs
            .iter()
            .map(|addr| {
                let (tx, rx) = mpsc::unbounded_channel();
                let down_until = Rc::new(Cell::new(None));
                let why = Rc::new(RefCell::new(String::new()));
                tokio::task::spawn_local(serve(
                    addr.clone(),
                    rx,
                    Rc::clone(&down_until),
                    Rc::clone(&why),
                ));
                Server {
                    queue: tx,
                    down_until,
                    why,
                }
            })
            .collect();
        Client {
            ring: Ring::new(addrs),
            servers,
        }
    }

    /// Whether any server is configured.
    pub fn configured(&self) -> bool {
        !self.servers.is_empty()
    }

    fn server(&self, key: &str) -> Result<&Server, McError> {
        let s = self
            .ring
            .server(key)
            .and_then(|i| self.servers.get(i))
            .ok_or(McError::NoServer)?;
        match s.down_until.get() {
            Some(t) if Instant::now() < t => Err(McError::Down(s.why.borrow().clone())),
            _ => Ok(s),
        }
    }

    /// The values of `keys` found, by key (a key missing from the map is a miss). One `get`
    /// per server holding some of them; any server failing fails the whole read.
    pub async fn get(&self, keys: &[String]) -> Result<HashMap<String, Vec<u8>>, McError> {
        let mut by_server: Vec<(usize, Vec<String>)> = Vec::new();
        for k in keys {
            let s = self.ring.server(k).ok_or(McError::NoServer)?;
            match by_server.iter_mut().find(|(i, _)| *i == s) {
                Some((_, ks)) => ks.push(k.clone()),
                None => by_server.push((s, vec![k.clone()])),
            }
        }
        let mut waits = Vec::with_capacity(by_server.len());
        for (_, ks) in by_server {
            let server = self.server(&ks[0])?;
            let (tx, rx) = oneshot::channel();
            server
                .queue
                .send(Op::Get(ks, tx))
                .map_err(|_| McError::Down("its task is gone".into()))?;
            waits.push(rx);
        }
        let mut found = HashMap::with_capacity(keys.len());
        for rx in waits {
            let values = rx
                .await
                .map_err(|_| McError::Down("the connection was lost".into()))??;
            found.extend(values);
        }
        Ok(found)
    }

    /// Stores `value` under `key` unless the key holds something (memcached's `add`): a value
    /// read from PostgreSQL after a miss never overwrites a newer one the cache manager wrote
    /// meanwhile. Nothing is waited for; a server down drops it.
    pub fn add(&self, key: String, value: Vec<u8>, exptime: u32) {
        if value.len() > MAX_VALUE {
            return;
        }
        if let Ok(s) = self.server(&key) {
            let _ = s.queue.send(Op::Add(key, value, exptime));
        }
    }
}

/// One server's task: connects when there is work, writes every queued request at once,
/// reads the replies in order. On a failure every request of the batch is answered with it and
/// the server is left alone for [`DOWN_FOR`].
async fn serve(
    addr: String,
    mut rx: mpsc::UnboundedReceiver<Op>,
    down_until: Rc<Cell<Option<Instant>>>,
    why: Rc<RefCell<String>>,
) {
    let mut conn: Option<Conn> = None;
    let mut batch = Vec::new();
    while let Some(op) = rx.recv().await {
        batch.push(op);
        while let Ok(op) = rx.try_recv() {
            batch.push(op);
        }
        if down_until.get().is_some_and(|t| Instant::now() < t) {
            fail(&mut batch, &why.borrow());
            continue;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(&addr).await {
                Ok(c) => {
                    down_until.set(None);
                    conn.insert(c)
                }
                Err(e) => {
                    *why.borrow_mut() = format!("{addr}: {e}");
                    down_until.set(Some(Instant::now() + DOWN_FOR));
                    fail(&mut batch, &why.borrow());
                    continue;
                }
            },
        };
        if let Err(e) = c.run(&mut batch).await {
            *why.borrow_mut() = format!("{addr}: {e}");
            down_until.set(Some(Instant::now() + DOWN_FOR));
            conn = None;
            fail(&mut batch, &why.borrow());
        }
    }
}

/// Answers every get of `batch` with `why`, and empties it.
fn fail(batch: &mut Vec<Op>, why: &str) {
    for op in batch.drain(..) {
        if let Op::Get(_, tx) = op {
            let _ = tx.send(Err(McError::Down(why.to_string())));
        }
    }
}

struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    at: usize,
}

impl Conn {
    async fn open(addr: &str) -> std::io::Result<Conn> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            out: Vec::with_capacity(4096),
            buf: Vec::with_capacity(16 * 1024),
            at: 0,
        })
    }

    /// Writes the batch, then reads the gets' replies in order and hands each back; the batch
    /// is empty after success. An error leaves the unanswered gets in `batch`.
    async fn run(&mut self, batch: &mut Vec<Op>) -> std::io::Result<()> {
        self.out.clear();
        for op in batch.iter() {
            match op {
                Op::Get(keys, _) => {
                    self.out.extend_from_slice(b"get");
                    for k in keys {
                        self.out.push(b' ');
                        self.out.extend_from_slice(k.as_bytes());
                    }
                    self.out.extend_from_slice(b"\r\n");
                }
                Op::Add(key, value, exptime) => {
                    let head = format!("add {key} 0 {exptime} {} noreply\r\n", value.len());
                    self.out.extend_from_slice(head.as_bytes());
                    self.out.extend_from_slice(value);
                    self.out.extend_from_slice(b"\r\n");
                }
            }
        }
        self.stream.write_all(&self.out).await?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut ops = std::mem::take(batch).into_iter();
        while let Some(op) = ops.next() {
            let Op::Get(_, tx) = op else { continue };
            match tokio::time::timeout_at(deadline, self.values()).await {
                Ok(Ok(values)) => {
                    let _ = tx.send(Ok(values));
                }
                Ok(Err(e)) => {
                    batch.push(Op::Get(Vec::new(), tx));
                    batch.extend(ops);
                    return Err(e);
                }
                Err(_) => {
                    batch.push(Op::Get(Vec::new(), tx));
                    batch.extend(ops);
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no reply in time",
                    ));
                }
            }
        }
        Ok(())
    }

    /// One `get`'s reply: `VALUE <key> <flags> <bytes>\r\n<data>\r\n`... `END\r\n`.
    async fn values(&mut self) -> std::io::Result<Values> {
        let mut out = Vec::new();
        loop {
            let line = self.line().await?;
            if line == b"END" {
                return Ok(out);
            }
            let (key, len) = value_line(&line).ok_or_else(|| {
                protocol(format!(
                    "unexpected reply line {:?}",
                    String::from_utf8_lossy(&line[..line.len().min(80)])
                ))
            })?;
            while self.buf.len() - self.at < len + 2 {
                self.fill().await?;
            }
            let data = &self.buf[self.at..self.at + len + 2];
            if !data.ends_with(b"\r\n") {
                return Err(protocol("a value not followed by CRLF".into()));
            }
            out.push((key, data[..len].to_vec()));
            self.at += len + 2;
        }
    }

    /// The next line, without its CRLF.
    async fn line(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf[self.at..].windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[self.at..self.at + i].to_vec();
                self.at += i + 2;
                return Ok(line);
            }
            if self.buf.len() - self.at > 1024 {
                return Err(protocol("a reply line longer than 1 KiB".into()));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        self.compact();
        self.buf.reserve(READ_SIZE);
        // Into the spare capacity: nothing is zeroed first.
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(())
    }

    /// Drops the consumed bytes before a read: all of them when everything was consumed (the
    /// usual case, free), else by moving the rest once per read, never once per reply.
    fn compact(&mut self) {
        if self.at == self.buf.len() {
            self.buf.clear();
        } else if self.at > 0 {
            self.buf.drain(..self.at);
        }
        self.at = 0;
    }
}

fn protocol(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why)
}

/// The key and the data length of `VALUE <key> <flags> <bytes> [<cas>]`.
fn value_line(line: &[u8]) -> Option<(String, usize)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    if parts.next()? != "VALUE" {
        return None;
    }
    let key = parts.next()?.to_string();
    parts.next()?.parse::<u32>().ok()?;
    let len = parts.next()?.parse::<usize>().ok()?;
    (len <= MAX_VALUE).then_some((key, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_lines() {
        assert_eq!(
            value_line(b"VALUE bizzy:v1:occ:7 0 12"),
            Some(("bizzy:v1:occ:7".into(), 12))
        );
        assert_eq!(value_line(b"VALUE k 0 3 99"), Some(("k".into(), 3)));
        assert_eq!(value_line(b"VALUE k x 3"), None);
        assert_eq!(value_line(b"SERVER_ERROR out of memory"), None);
        assert_eq!(value_line(b"VALUE k 0 99999999999"), None);
        assert_eq!(value_line(b"\xff"), None);
    }
}
