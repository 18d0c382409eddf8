//! The cache manager's side of memcached: one blocking `memcache::Client` per server, each key
//! written to the server the [`Ring`] picks, and what each server needs.
//!
//! A server needs a refill (all its keys written again) when this process has not filled it
//! yet, when its sentinel key ([`SENTINEL`], written to each server directly after a refill and
//! read at every pass) is missing (it restarted, or evicted it), or when a write to it failed
//! (it may hold an old value). A server that fails is dropped until the next pass, which
//! connects again; its outage is logged once, and so is its return. Blocking is fine here: this
//! runs in the cache manager process only, with short timeouts ([`TIMEOUT`]).

use std::time::Duration;

use crate::log;
use crate::modules::cache::keys::SHAPE;
use crate::modules::cache::ring::Ring;

/// How long connecting, a read or a write may take.
const TIMEOUT: Duration = Duration::from_millis(200);

/// Present on a server that holds what the last refill wrote.
fn sentinel() -> String {
    format!("bizzy:v{SHAPE}:alive")
}

/// The memcached servers of the replica.
pub struct Store {
    servers: Vec<Server>,
    ring: Ring,
}

struct Server {
    addr: String,
    client: Option<memcache::Client>,
    /// Every key of this server must be written again.
    refill: bool,
    /// Unreachable at the last attempt (and logged).
    down: bool,
}

impl Store {
    /// `servers` (`host:port`), none connected yet, every one to be filled.
    pub fn new(servers: &[String]) -> Store {
        Store {
            servers: servers
                .iter()
                .map(|addr| Server {
                    addr: addr.clone(),
                    client: None,
                    refill: true,
                    down: false,
                })
                .collect(),
            ring: Ring::new(servers),
        }
    }

    /// At the start of a pass: connects the servers that have no connection, and reads each
    /// one's sentinel. Whether a server that is up needs a refill.
    pub fn check(&mut self) -> bool {
        for i in 0..self.servers.len() {
            if self.servers[i].client.is_none() && !self.connect(i) {
                continue;
            }
            let got = self.servers[i]
                .client
                .as_ref()
                .map(|c| c.get::<Vec<u8>>(&sentinel()));
            match got {
                Some(Ok(Some(_))) => {}
                Some(Ok(None)) => {
                    if !self.servers[i].refill {
                        log!(
                            Notice,
                            "cache manager: memcached {} lost the replica: refilling it",
                            self.servers[i].addr
                        );
                    }
                    self.servers[i].refill = true;
                }
                Some(Err(e)) => self.failed(i, &e),
                None => {}
            }
        }
        self.refilling()
    }

    /// Whether a server that is up needs a refill.
    pub fn refilling(&self) -> bool {
        self.servers.iter().any(|s| s.refill && s.client.is_some())
    }

    /// Whether `key` lives on a server that is up and needs a refill.
    pub fn refills(&self, key: &str) -> bool {
        self.at(key)
            .is_some_and(|i| self.servers[i].refill && self.servers[i].client.is_some())
    }

    /// A refill of every server that needed one and is up ended: each that did not fail
    /// meanwhile gets its sentinel, and holds the replica again.
    pub fn refilled(&mut self) {
        for i in 0..self.servers.len() {
            let s = &self.servers[i];
            let Some(c) = s.client.as_ref().filter(|_| s.refill) else {
                continue;
            };
            match c.set(&sentinel(), "1", 0) {
                Ok(()) => self.servers[i].refill = false,
                Err(e) => self.failed(i, &e),
            }
        }
    }

    /// Writes `key` (`exptime` in seconds, 0: none) to its server, if it is up. An entry the
    /// server refuses (too large, say) is removed rather than left old.
    pub fn set(&mut self, key: &str, value: &[u8], exptime: u32) {
        let Some((i, c)) = self.client(key) else {
            return;
        };
        match c.set(key, value, exptime) {
            Ok(()) => {}
            Err(e) if !broken(&e) => {
                log!(
                    Warn,
                    "cache manager: memcached {} refused {key} ({} bytes): {}",
                    self.servers[i].addr,
                    value.len(),
                    e.to_string().trim_end()
                );
                self.delete(key);
            }
            Err(e) => self.failed(i, &e),
        }
    }

    /// Removes `key` from its server, if it is up.
    pub fn delete(&mut self, key: &str) {
        if let Some((i, c)) = self.client(key) {
            match c.delete(key) {
                Err(e) if broken(&e) => self.failed(i, &e),
                _ => {}
            }
        }
    }

    /// `key` as its server holds it; None when absent or the server is down.
    pub fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        let (i, c) = self.client(key)?;
        match c.get::<Vec<u8>>(key) {
            Ok(v) => v,
            Err(e) => {
                self.failed(i, &e);
                None
            }
        }
    }

    fn at(&self, key: &str) -> Option<usize> {
        self.ring.server(key)
    }

    /// The server of `key` and its client, when it is up (cloned: the client is a handle).
    fn client(&self, key: &str) -> Option<(usize, memcache::Client)> {
        let i = self.at(key)?;
        self.servers[i].client.clone().map(|c| (i, c))
    }

    /// Connects server `i`; whether it is up.
    fn connect(&mut self, i: usize) -> bool {
        let s = &mut self.servers[i];
        let url = format!("memcache://{}?protocol=ascii", s.addr);
        let built = memcache::Client::builder()
            .add_server(url.as_str())
            .and_then(|b| {
                b.with_connection_timeout(TIMEOUT)
                    .with_read_timeout(TIMEOUT)
                    .with_write_timeout(TIMEOUT)
                    .build()
            });
        match built {
            Ok(c) => {
                if s.down {
                    log!(
                        Notice,
                        "cache manager: memcached {} is back: refilling it",
                        s.addr
                    );
                }
                s.client = Some(c);
                s.down = false;
                true
            }
            Err(e) => {
                self.failed(i, &e);
                false
            }
        }
    }

    /// Server `i` failed: dropped until the next pass, and refilled once it is back.
    fn failed(&mut self, i: usize, e: &memcache::MemcacheError) {
        let s = &mut self.servers[i];
        if !s.down {
            log!(
                Error,
                "cache manager: memcached {}: {}; its keys are written again once it is back",
                s.addr,
                e.to_string().trim_end()
            );
        }
        s.client = None;
        s.refill = true;
        s.down = true;
    }
}

/// Whether `e` leaves the connection or the server in doubt (rather than being the server's
/// answer about one entry).
fn broken(e: &memcache::MemcacheError) -> bool {
    use memcache::{MemcacheError as E, ServerError};
    !matches!(
        e,
        E::CommandError(_) | E::ClientError(_) | E::ServerError(ServerError::Error(_))
    )
}
