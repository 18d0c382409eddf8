//! The `[http]` section: timeouts, limits, gzip, MIME types, `[[http.server]]` and
//! `[http.limit_req_zone.NAME]`, registered with core's configuration by [`HttpSection`].
//!
//! The HTTP connection code and modules read these values; this file parses and checks them,
//! including what spans several servers (two servers may not claim the same name on the same
//! address, and servers sharing an address agree on its backlog, `reuseport` and `deferred`).
//! A location's `handler` must be one of the names the modules registered, which the wiring
//! gives [`HttpSection::new`].

mod location;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::de::Deserializer;
use serde::{Deserialize, Serialize, Serializer};
use toml::de::ValueDeserializer;

use crate::core::config::{
    at_least, between, check_no_repeats, fail, listen_list, non_empty, resolve, AnySection, Dur,
    Invalid, KeyPath, Listener, Protocol, Rate, Section, SectionKind, Size,
};

pub use location::{check_mime_type, LocationConf, LocationMatch, ReturnConf, STATIC_HANDLER};

/// The protocol of the sockets `[[http.server]]` listens on.
pub const PROTOCOL: Protocol = Protocol {
    name: "http",
    label: "HTTP",
};

/// The `[http]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConf {
    /// The access log (resolved against the prefix); `"off"` in the file is `None`.
    #[serde(with = "access_log_path")]
    pub access_log: Option<PathBuf>,
    pub access_log_format: AccessLogFormat,
    /// Idle keep-alive lifetime; `"0s"` disables keep-alive.
    pub keepalive_timeout: Dur,
    /// Requests served on one connection before it is closed.
    pub keepalive_requests: u64,
    /// During a graceful stop, how long idle keep-alive connections may send one last request.
    pub keepalive_drain: Dur,
    pub client_header_timeout: Dur,
    pub client_body_timeout: Dur,
    pub send_timeout: Dur,
    /// Largest request body (else 413); 0 = unlimited.
    pub client_max_body_size: Size,
    /// The initial read buffer of a connection.
    pub client_header_buffer_size: Size,
    /// The largest request line (else 414) and the largest whole head (else 431).
    pub large_client_header_buffers: Size,
    /// Most header fields in a request (else 431).
    pub max_headers: usize,
    /// `Server: bizzy/<version>` when true, `Server: bizzy` when false.
    pub server_tokens: bool,
    pub gzip: bool,
    pub gzip_types: Vec<String>,
    pub gzip_min_length: Size,
    pub gzip_comp_level: u32,
    /// Extension -> MIME type entries added to the built-in table.
    pub types: BTreeMap<String, String>,
    pub default_type: String,
    /// `[[http.server]]`.
    pub server: Vec<ServerConf>,
    /// `[http.limit_req_zone.NAME]`.
    pub limit_req_zone: BTreeMap<String, LimitReqZoneConf>,
}

/// The access log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// nginx's (and Apache's) combined format.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// One `[[http.server]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConf {
    /// At least one address: `"127.0.0.1:8080"`, `"[::1]:8080"`, `"*:8080"`, `"8080"`.
    #[serde(with = "listen_list")]
    pub listen: Vec<SocketAddr>,
    /// `listen(2)` backlog of this server's sockets.
    pub backlog: i32,
    /// A listening socket per worker (`SO_REUSEPORT`), as nginx's `listen ... reuseport`;
    /// servers sharing an address agree on it.
    pub reuseport: bool,
    /// Accept a connection only once its request has begun to arrive (`TCP_DEFER_ACCEPT`, as
    /// nginx's `listen ... deferred`): a worker is not woken for a connection it cannot serve
    /// yet. One that stays silent is accepted after `client_header_timeout` and then meets that
    /// timeout. Servers sharing an address agree on it.
    pub deferred: bool,
    /// Exact names, `*.example.com` / `example.*` wildcards, `_` catch-all; stored lowercase.
    pub server_name: Vec<String>,
    /// `[[http.server.location]]`.
    pub location: Vec<LocationConf>,
}

/// One `[http.limit_req_zone.NAME]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitReqZoneConf {
    #[serde(default)]
    pub key: LimitKey,
    /// Required: `"50r/s"` or `"600r/m"`.
    pub rate: Rate,
    /// Requests allowed above the rate before refusing.
    #[serde(default)]
    pub burst: u32,
    /// Always refuse at once rather than delay (the only behaviour implemented).
    #[serde(default = "yes")]
    pub nodelay: bool,
    /// Shared-memory zone size, >= 32k.
    #[serde(default = "default_zone_size")]
    pub size: Size,
    /// Status of a refused request, 400..=599.
    #[serde(default = "default_limit_status")]
    pub status: u16,
}

/// What a limit_req zone counts requests by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKey {
    /// The client's IP address.
    #[default]
    RemoteAddr,
}

fn yes() -> bool {
    true
}

fn default_zone_size() -> Size {
    Size(1 << 20)
}

fn default_limit_status() -> u16 {
    429
}

/// The default `gzip_types`.
const GZIP_TYPES: [&str; 8] = [
    "text/html",
    "text/plain",
    "text/css",
    "application/json",
    "application/javascript",
    "text/xml",
    "application/xml",
    "image/svg+xml",
];

impl Default for HttpConf {
    fn default() -> HttpConf {
        HttpConf {
            access_log: Some(PathBuf::from("var/log/access.log")),
            access_log_format: AccessLogFormat::Combined,
            keepalive_timeout: Dur::secs(75),
            keepalive_requests: 1000,
            keepalive_drain: Dur::secs(1),
            client_header_timeout: Dur::secs(10),
            client_body_timeout: Dur::secs(10),
            send_timeout: Dur::secs(10),
            client_max_body_size: Size(1 << 20),
            client_header_buffer_size: Size(1 << 10),
            large_client_header_buffers: Size(8 << 10),
            max_headers: 100,
            server_tokens: true,
            gzip: true,
            gzip_types: GZIP_TYPES.iter().map(|t| t.to_string()).collect(),
            gzip_min_length: Size(256),
            gzip_comp_level: 1,
            types: BTreeMap::new(),
            default_type: "application/octet-stream".to_string(),
            server: Vec::new(),
            limit_req_zone: BTreeMap::new(),
        }
    }
}

impl Default for ServerConf {
    fn default() -> ServerConf {
        ServerConf {
            listen: Vec::new(),
            backlog: 511,
            reuseport: false,
            deferred: false,
            server_name: vec!["_".to_string()],
            location: Vec::new(),
        }
    }
}

/// `access_log`: a path, or `"off"` for none.
mod access_log_path {
    use super::*;

    pub fn serialize<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match path {
            Some(p) => p.serialize(s),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        let text = String::deserialize(d)?;
        Ok((text != "off").then(|| PathBuf::from(text)))
    }
}

/// How `[http]` is read: serde, with the content handler names the modules registered.
pub struct HttpSection {
    handlers: Vec<&'static str>,
}

impl HttpSection {
    /// The section whose locations may name `handlers`.
    pub fn new(handlers: Vec<&'static str>) -> HttpSection {
        HttpSection { handlers }
    }
}

impl SectionKind for HttpSection {
    fn name(&self) -> &'static str {
        HttpConf::NAME
    }

    fn default_value(&self) -> Box<dyn AnySection> {
        Box::new(HttpConf::default())
    }

    fn read(&self, value: ValueDeserializer<'_>) -> Result<Box<dyn AnySection>, toml::de::Error> {
        location::with_handlers(&self.handlers, || HttpConf::deserialize(value))
            .map(|h| Box::new(h) as Box<dyn AnySection>)
    }
}

impl Section for HttpConf {
    const NAME: &'static str = "http";

    /// Checks every key, each zone, each server and its locations, and the servers together.
    fn validate(&self) -> Result<(), Invalid> {
        let at = KeyPath::root(Self::NAME);
        self.check_limits(&at)?;
        self.check_gzip_and_types(&at)?;
        for (name, zone) in &self.limit_req_zone {
            zone.validate(name, &at.key("limit_req_zone").key(name))?;
        }
        for (i, server) in self.server.iter().enumerate() {
            server.validate(&at.key("server").index(i), &self.limit_req_zone)?;
        }
        check_servers_together(&self.server, &at)
    }

    /// Resolves the access log and the static roots against the prefix; lowercases server names.
    fn resolve(&mut self, prefix: &Path) {
        if let Some(log) = &self.access_log {
            self.access_log = Some(resolve(prefix, log));
        }
        for server in &mut self.server {
            for name in &mut server.server_name {
                *name = name.to_ascii_lowercase();
            }
            for loc in &mut server.location {
                loc.resolve(prefix);
            }
        }
    }

    /// Each server's addresses, in order.
    fn listeners(&self) -> Vec<Listener> {
        let servers = KeyPath::root(Self::NAME).key("server");
        let header_secs = self.client_header_timeout.0.as_secs_f64().ceil().max(1.0) as u32;
        let mut out = Vec::new();
        for (i, s) in self.server.iter().enumerate() {
            let owner = servers.index(i);
            for (k, addr) in s.listen.iter().enumerate() {
                out.push(Listener {
                    addr: *addr,
                    protocol: PROTOCOL,
                    backlog: s.backlog,
                    reuseport: s.reuseport,
                    deferred: if s.deferred { header_secs } else { 0 },
                    at: owner.key("listen").index(k),
                    owner: owner.clone(),
                });
            }
        }
        out
    }
}

impl HttpConf {
    fn check_limits(&self, at: &KeyPath) -> Result<(), Invalid> {
        if let Some(log) = &self.access_log {
            non_empty(&log.to_string_lossy(), &at.key("access_log"))?;
        }
        at_least(self.keepalive_requests, 1, &at.key("keepalive_requests"))?;
        for (key, value) in [
            ("client_header_timeout", self.client_header_timeout),
            ("client_body_timeout", self.client_body_timeout),
            ("send_timeout", self.send_timeout),
        ] {
            at_least(value, Dur::millis(1), &at.key(key))?;
        }
        let large = self.large_client_header_buffers;
        at_least(large, Size(128), &at.key("large_client_header_buffers"))?;
        between(
            self.client_header_buffer_size,
            Size(128),
            large,
            &at.key("client_header_buffer_size"),
        )?;
        between(self.max_headers, 1, 10_000, &at.key("max_headers"))
    }

    fn check_gzip_and_types(&self, at: &KeyPath) -> Result<(), Invalid> {
        for (i, t) in self.gzip_types.iter().enumerate() {
            check_mime_type(t, &at.key("gzip_types").index(i))?;
        }
        between(self.gzip_comp_level, 1, 9, &at.key("gzip_comp_level"))?;
        for (ext, t) in &self.types {
            let key = at.key("types").key(ext);
            if ext.is_empty() || ext.contains(['.', '/']) || ext.contains(char::is_whitespace) {
                return fail(
                    &key,
                    format!("{ext:?} is not a file extension (write it without the dot)"),
                );
            }
            check_mime_type(t, &key)?;
        }
        check_mime_type(&self.default_type, &at.key("default_type"))
    }
}

impl ServerConf {
    /// Checks the addresses, backlog, names and each location (`zones` for `limit_req`).
    pub fn validate<Z>(&self, at: &KeyPath, zones: &BTreeMap<String, Z>) -> Result<(), Invalid> {
        if self.listen.is_empty() {
            return fail(&at.key("listen"), "needs at least one address");
        }
        check_no_repeats(&self.listen, &at.key("listen"))?;
        between(self.backlog, 1, 65535, &at.key("backlog"))?;
        if self.server_name.is_empty() {
            return fail(
                &at.key("server_name"),
                "needs at least one name (\"_\" matches any)",
            );
        }
        for (i, name) in self.server_name.iter().enumerate() {
            check_server_name(name, &at.key("server_name").index(i))?;
        }
        let lower: Vec<String> = self
            .server_name
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        check_no_repeats(&lower, &at.key("server_name"))?;
        for (i, loc) in self.location.iter().enumerate() {
            let here = at.key("location").index(i);
            loc.validate(&here, zones)?;
            if let Some(j) = self.location[..i]
                .iter()
                .position(|l| l.matcher == loc.matcher)
            {
                let msg = format!("duplicates {}", at.key("location").index(j));
                return fail(&here.key(loc.matcher.key()), msg);
            }
        }
        Ok(())
    }
}

/// `_`, an exact name, `*.example.com` or `example.*`.
fn check_server_name(name: &str, at: &KeyPath) -> Result<(), Invalid> {
    if name == "_" {
        return Ok(());
    }
    let core = name
        .strip_prefix("*.")
        .or_else(|| name.strip_suffix(".*"))
        .unwrap_or(name);
    let ok = !core.is_empty()
        && !core.starts_with('.')
        && !core.ends_with('.')
        && core
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !ok {
        let msg = format!("{name:?} is not a host name, \"*.example.com\", \"example.*\" or \"_\"");
        return fail(at, msg);
    }
    Ok(())
}

/// Two servers may not claim the same name on the same address, and servers sharing an
/// address must agree on its backlog, `reuseport` and `deferred` (one socket, or one group, per address).
fn check_servers_together(servers: &[ServerConf], at: &KeyPath) -> Result<(), Invalid> {
    let mut backlog_of: HashMap<SocketAddr, usize> = HashMap::new();
    let mut owner_of: HashMap<(SocketAddr, String), usize> = HashMap::new();
    for (i, server) in servers.iter().enumerate() {
        let here = at.key("server").index(i);
        for addr in &server.listen {
            let first = *backlog_of.entry(*addr).or_insert(i);
            let by = format!("set for {addr} by {}", at.key("server").index(first));
            let other = &servers[first];
            same(server.backlog, other.backlog, &by, &here.key("backlog"))?;
            same(
                server.reuseport,
                other.reuseport,
                &by,
                &here.key("reuseport"),
            )?;
            same(server.deferred, other.deferred, &by, &here.key("deferred"))?;
            for (k, name) in server.server_name.iter().enumerate() {
                let owner = *owner_of
                    .entry((*addr, name.to_ascii_lowercase()))
                    .or_insert(i);
                if owner != i {
                    let msg = format!(
                        "{name:?} on {addr} is already served by {}",
                        at.key("server").index(owner)
                    );
                    return fail(&here.key("server_name").index(k), msg);
                }
            }
        }
    }
    Ok(())
}

/// A per-address setting equal to the one the address's first server set.
fn same<T: PartialEq + std::fmt::Display>(
    mine: T,
    first: T,
    by: &str,
    at: &KeyPath,
) -> Result<(), Invalid> {
    if mine != first {
        return fail(at, format!("{mine} differs from {first} {by}"));
    }
    Ok(())
}

impl LimitReqZoneConf {
    /// Checks the zone name, its size and status.
    pub fn validate(&self, name: &str, at: &KeyPath) -> Result<(), Invalid> {
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return fail(
                at,
                format!("{name:?} is not a zone name (letters, digits, '_', '-')"),
            );
        }
        at_least(self.size, Size(32 << 10), &at.key("size"))?;
        between(self.status, 400, 599, &at.key("status"))
    }
}
