//! Configuration: the TOML sections, typed durations and sizes, validation with
//! `file:line: key: message` errors, and the effective configuration printed by `bizzy -T`.
//!
//! The master calls [`Conf::load`] at start and on every reload (HUP); a failed load leaves the
//! running configuration alone. Loading has three steps: serde (unknown keys and wrong types are
//! errors), one `validate()` per section (ranges and cross-references), then relative paths are
//! resolved against the prefix. This module reads the one file and nothing else (a static root
//! may appear later), never clamps a value silently and never panics on any input.

mod error;
mod http_conf;
mod location;
mod main_conf;
mod other;
mod units;

#[cfg(test)]
mod tests;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::ConfError;
pub use http_conf::{AccessLogFormat, HttpConf, LimitKey, LimitReqZoneConf, ServerConf};
pub use location::{HandlerKind, LocationConf, LocationMatch, ReturnConf};
pub use main_conf::{auto_worker_processes, LogLevel, MainConf};
pub use other::{AuthConf, CacheConf, DatabaseConf, IngestConf, MqttConf};
pub use units::{parse_listen, Dur, Rate, Size};

use error::{fail, Invalid, KeyPath, Source};

/// A loaded, validated configuration with every path absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct Conf {
    /// Absolute path of the file that was read.
    pub file: PathBuf,
    /// Absolute prefix; relative paths in the file were resolved against it.
    pub prefix: PathBuf,
    pub main: MainConf,
    pub http: HttpConf,
    pub mqtt: MqttConf,
    pub database: DatabaseConf,
    pub cache: CacheConf,
    pub auth: AuthConf,
    pub ingest: IngestConf,
}

/// A listening socket to open: its address, protocol and `listen(2)` backlog.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenSpec {
    pub addr: SocketAddr,
    pub kind: ListenKind,
    pub backlog: i32,
}

/// The protocol spoken on a listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenKind {
    Http,
    Mqtt,
}

/// The file as TOML sees it: every section optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Document {
    main: MainConf,
    http: HttpConf,
    mqtt: MqttConf,
    database: DatabaseConf,
    cache: CacheConf,
    auth: AuthConf,
    ingest: IngestConf,
}

impl Document {
    /// One validation pass per section, then what spans sections.
    fn validate(&self) -> Result<(), Invalid> {
        self.main.validate()?;
        self.http.validate()?;
        self.mqtt.validate()?;
        self.database.validate()?;
        self.cache.validate()?;
        self.auth.validate()?;
        self.ingest.validate()?;
        self.check_shared_addresses()
    }

    /// An address is HTTP or MQTT, not both; nor may one be the wildcard of the other's port
    /// (they would share one socket, see [`Conf::listeners`]).
    fn check_shared_addresses(&self) -> Result<(), Invalid> {
        for (j, addr) in self.mqtt.listen.iter().enumerate() {
            let clash = |a: &SocketAddr| a == addr || covers(*a, *addr) || covers(*addr, *a);
            let http = self
                .http
                .server
                .iter()
                .position(|s| s.listen.iter().any(clash));
            if let Some(i) = http {
                let msg = format!("{addr} is already an HTTP address (http.server[{i}])");
                return fail(&KeyPath::root("mqtt").key("listen").index(j), msg);
            }
        }
        Ok(())
    }

    fn resolve(&mut self, prefix: &Path) {
        self.main.resolve(prefix);
        self.http.resolve(prefix);
        self.mqtt.resolve(prefix);
        self.database.resolve(prefix);
        self.auth.resolve(prefix);
    }
}

/// `path` resolved against `prefix` (an absolute path stays as it is).
fn resolve(prefix: &Path, path: &Path) -> PathBuf {
    prefix.join(path)
}

/// `path` made absolute against the current directory, without touching the file system.
fn absolute(path: &Path, file: &Path) -> Result<PathBuf, ConfError> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    std::path::absolute(path).map_err(|e| ConfError::io(file, "cannot resolve paths", &e))
}

impl Conf {
    /// Reads, parses and validates `file` (relative to the current directory); paths inside are
    /// resolved against `prefix`.
    pub fn load(file: &Path, prefix: &Path) -> Result<Conf, ConfError> {
        let text = fs::read_to_string(file).map_err(|e| ConfError::io(file, "cannot read", &e))?;
        Conf::parse(&text, file, prefix)
    }

    /// Parses and validates `text`; `file` is only used in messages and for [`Conf::file`].
    pub fn parse(text: &str, file: &Path, prefix: &Path) -> Result<Conf, ConfError> {
        let source = Source::parse(text, file)?;
        let mut doc: Document = toml::from_str(text).map_err(|e| source.serde_error(file, &e))?;
        doc.validate().map_err(|e| source.invalid(file, e))?;
        let prefix = absolute(prefix, file)?;
        doc.resolve(&prefix);
        Ok(Conf {
            file: absolute(file, file)?,
            prefix,
            main: doc.main,
            http: doc.http,
            mqtt: doc.mqtt,
            database: doc.database,
            cache: doc.cache,
            auth: doc.auth,
            ingest: doc.ingest,
        })
    }

    /// The effective configuration as TOML: every key with its value, defaults filled in and
    /// paths absolute (keys without a default and without a value are left out).
    pub fn dump(&self) -> String {
        let doc = Document {
            main: self.main.clone(),
            http: self.http.clone(),
            mqtt: self.mqtt.clone(),
            database: self.database.clone(),
            cache: self.cache.clone(),
            auth: self.auth.clone(),
            ingest: self.ingest.clone(),
        };
        let head = format!(
            "# bizzy: effective configuration of {}\n# prefix: {}\n\n",
            self.file.display(),
            self.prefix.display()
        );
        match toml::to_string(&doc) {
            Ok(body) => head + &body,
            Err(e) => format!("{head}# cannot print the configuration: {e}\n"),
        }
    }

    /// Every socket to bind: the distinct listening addresses of the HTTP servers (in order of
    /// appearance) and then of MQTT, with kind and backlog; a specific address is folded into
    /// a wildcard of the same port and family.
    pub fn listeners(&self) -> Vec<ListenSpec> {
        let mut out: Vec<ListenSpec> = Vec::new();
        let http = self.http.server.iter().flat_map(|s| {
            s.listen
                .iter()
                .map(|addr| (*addr, ListenKind::Http, s.backlog))
        });
        let mqtt = self
            .mqtt
            .listen
            .iter()
            .map(|addr| (*addr, ListenKind::Mqtt, self.mqtt.backlog));
        for (addr, kind, backlog) in http.chain(mqtt) {
            if !out.iter().any(|l| l.addr == addr) {
                out.push(ListenSpec {
                    addr,
                    kind,
                    backlog,
                });
            }
        }
        // A specific address on a port that also has the wildcard address is served by the
        // wildcard socket (Linux refuses to listen on both), as nginx does; the HTTP layer finds
        // the address a connection came to with getsockname.
        let all = out.clone();
        out.retain(|l| !all.iter().any(|w| covers(w.addr, l.addr)));
        out
    }
}

/// Whether `wild` is the wildcard address of `addr`'s port and family (and not `addr` itself).
pub fn covers(wild: std::net::SocketAddr, addr: std::net::SocketAddr) -> bool {
    wild.ip().is_unspecified()
        && !addr.ip().is_unspecified()
        && wild.port() == addr.port()
        && wild.is_ipv4() == addr.is_ipv4()
}
