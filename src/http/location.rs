//! Virtual servers and locations, matched as nginx matches them: the server by listen address
//! and Host (exact name, then the longest leading wildcard, then the longest trailing wildcard,
//! then the address's `_` server, then its first server); the location by exact match, else
//! the regexes in order, else the longest prefix.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use regex::Regex;

use crate::core::config::covers;
use crate::http::conf::{LocationConf, LocationMatch, ServerConf};

/// A location of a cycle: its configuration, and its place in the cycle's table of content
/// handlers (kept by the phase engine, so that a request names its location without this
/// file knowing handlers).
pub struct Location {
    pub conf: LocationConf,
    /// The index of its content handler in [`crate::http::phase::Engine`].
    pub id: usize,
    regex: Option<Regex>,
}

impl Location {
    pub fn new(conf: LocationConf, id: usize) -> Result<Location, regex::Error> {
        let regex = match &conf.matcher {
            LocationMatch::Regex(r) => Some(Regex::new(r)?),
            _ => None,
        };
        Ok(Location { conf, id, regex })
    }

    /// The matcher's text, for logs and tests.
    pub fn pattern(&self) -> &str {
        match &self.conf.matcher {
            LocationMatch::Exact(s) | LocationMatch::Prefix(s) | LocationMatch::Regex(s) => s,
        }
    }
}

/// One virtual server's locations, indexed for matching.
pub struct Server {
    pub names: Vec<String>,
    exact: HashMap<String, Rc<Location>>,
    /// Longest first.
    prefixes: Vec<Rc<Location>>,
    regexes: Vec<Rc<Location>>,
}

impl Server {
    pub fn new(conf: &ServerConf, locations: Vec<Location>) -> Server {
        let mut s = Server {
            names: conf
                .server_name
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
            exact: HashMap::new(),
            prefixes: Vec::new(),
            regexes: Vec::new(),
        };
        for loc in locations {
            let loc = Rc::new(loc);
            match &loc.conf.matcher {
                LocationMatch::Exact(p) => {
                    s.exact.entry(p.clone()).or_insert(loc.clone());
                }
                LocationMatch::Prefix(_) => s.prefixes.push(loc.clone()),
                LocationMatch::Regex(_) => s.regexes.push(loc.clone()),
            }
        }
        s.prefixes
            .sort_by_key(|l| std::cmp::Reverse(l.pattern().len()));
        s
    }

    pub fn find(&self, path: &str) -> Option<Rc<Location>> {
        if let Some(l) = self.exact.get(path) {
            return Some(l.clone());
        }
        if let Some(l) = self
            .regexes
            .iter()
            .find(|l| l.regex.as_ref().is_some_and(|r| r.is_match(path)))
        {
            return Some(l.clone());
        }
        self.prefixes
            .iter()
            .find(|l| path.starts_with(l.pattern()))
            .cloned()
    }
}

/// The servers of one listen address.
pub struct AddrServers {
    pub addr: SocketAddr,
    /// Server indices; the first is the default.
    servers: Vec<usize>,
}

/// Every virtual server, and how to choose one.
pub struct Servers {
    pub servers: Vec<Server>,
    addrs: Vec<AddrServers>,
}

impl Servers {
    pub fn new(confs: &[ServerConf], servers: Vec<Server>) -> Servers {
        let mut addrs: Vec<AddrServers> = Vec::new();
        for (i, c) in confs.iter().enumerate() {
            for a in &c.listen {
                match addrs.iter_mut().find(|x| x.addr == *a) {
                    Some(x) => x.servers.push(i),
                    None => addrs.push(AddrServers {
                        addr: *a,
                        servers: vec![i],
                    }),
                }
            }
        }
        Servers { servers, addrs }
    }

    /// The configured address a connection accepted on `listen` belongs to: `listen` itself,
    /// or, when `listen` is a wildcard that stands in for specific addresses of its port, the
    /// connection's own local address if a server listens there (`local` is only called then).
    pub fn address(
        &self,
        listen: SocketAddr,
        local: impl FnOnce() -> Option<SocketAddr>,
    ) -> SocketAddr {
        if !self.addrs.iter().any(|a| covers(listen, a.addr)) {
            return listen;
        }
        match local() {
            Some(l) if self.addrs.iter().any(|a| a.addr == l) => l,
            _ => listen,
        }
    }

    /// The server for a connection to `listen` with this Host value (port stripped here).
    pub fn select(&self, listen: SocketAddr, host: Option<&[u8]>) -> usize {
        let Some(cands) = self.addrs.iter().find(|a| a.addr == listen) else {
            return 0;
        };
        if let [only] = cands.servers[..] {
            return only;
        }
        let host = host
            .and_then(|h| std::str::from_utf8(h).ok())
            .map(strip_port);
        host.and_then(|h| self.named(cands, h.trim_end_matches('.')))
            .or_else(|| self.catch_all(cands))
            .unwrap_or(cands.servers[0])
    }

    /// The server whose exact or wildcard name matches `host` best.
    fn named(&self, cands: &AddrServers, host: &str) -> Option<usize> {
        let mut best: Option<(usize, usize, u8)> = None;
        for &i in &cands.servers {
            for name in &self.servers[i].names {
                if let Some((rank, len)) = name_score(name, host) {
                    if best.is_none_or(|(_, l, r)| (rank, len) > (r, l)) {
                        best = Some((i, len, rank));
                    }
                }
            }
        }
        best.map(|(i, _, _)| i)
    }

    /// The first server of the address named `_`, which takes hosts no other name matched.
    fn catch_all(&self, cands: &AddrServers) -> Option<usize> {
        cands
            .servers
            .iter()
            .copied()
            .find(|&i| self.servers[i].names.iter().any(|n| n == "_"))
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |e| &host[..=e]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// How well a server name matches: (rank, length); exact ranks highest.
/// Names are stored in lower case; the host is compared without case and without allocating.
fn name_score(name: &str, host: &str) -> Option<(u8, usize)> {
    let (n, h) = (name.as_bytes(), host.as_bytes());
    if n.eq_ignore_ascii_case(h) {
        return Some((3, n.len()));
    }
    if let Some(suffix) = n.strip_prefix(b"*.") {
        if h.len() > suffix.len() + 1
            && h[h.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            && h[h.len() - suffix.len() - 1] == b'.'
        {
            return Some((2, n.len()));
        }
    }
    if let Some(prefix) = n.strip_suffix(b".*") {
        if h.len() > prefix.len() + 1
            && h[..prefix.len()].eq_ignore_ascii_case(prefix)
            && h[prefix.len()] == b'.'
        {
            return Some((1, n.len()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_rank_like_nginx() {
        assert_eq!(name_score("example.com", "Example.COM"), Some((3, 11)));
        assert_eq!(
            name_score("*.example.com", "WWW.Example.com"),
            Some((2, 13))
        );
        assert_eq!(name_score("example.com", "example.com"), Some((3, 11)));
        assert_eq!(
            name_score("*.example.com", "www.example.com"),
            Some((2, 13))
        );
        assert_eq!(name_score("*.example.com", "example.com"), None);
        assert_eq!(name_score("www.*", "www.example.org"), Some((1, 5)));
        assert_eq!(strip_port("a.b:8080"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
