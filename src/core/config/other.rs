//! The smaller sections: `[mqtt]`, `[database]`, `[cache]`, `[auth]` and `[ingest]`.
//!
//! Read by the MQTT broker, the database and cache I/O threads, the auth module and the ingest
//! module respectively; this file only parses and checks them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{at_least, between, fail, non_empty, Invalid, KeyPath};
use super::http_conf::check_no_repeats;
use super::resolve;
use super::units::{listen_list, Dur, Rate, Size};

/// The `[mqtt]` section; without `listen` there is no MQTT listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConf {
    #[serde(with = "listen_list")]
    pub listen: Vec<SocketAddr>,
    pub backlog: i32,
    /// Accept CONNECT without a user name.
    pub allow_anonymous: bool,
    /// Largest packet accepted (and advertised), else the connection is closed.
    pub max_packet_size: Size,
    /// Caps non-zero client keep-alives; 0 (disabled) stays allowed.
    pub max_keepalive: Dur,
    /// QoS 1 messages in flight per client before sending waits for PUBACKs.
    pub max_inflight: u32,
    /// Messages kept per offline session or outbound queue.
    pub max_queued: u32,
    /// Bytes waiting for a client's socket past which QoS 0 messages to it are dropped.
    pub max_outbound: Size,
    /// A client that leaves a QoS 1/2 message unacknowledged, or its socket unwritable, this
    /// long is disconnected.
    pub stall_timeout: Dur,
    /// mosquitto_passwd format (resolved against the prefix).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// mosquitto acl_file syntax (resolved against the prefix).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl_file: Option<PathBuf>,
    /// Per-IP CONNECT rate limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_rate: Option<Rate>,
}

/// The `[database]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConf {
    /// `postgresql://user@host:port/dbname`.
    pub url: String,
    /// Connections per worker.
    pub pool_size: usize,
    /// Apply migrations when the master starts.
    pub migrate_on_start: bool,
    /// Where reports wait while the database is unreachable (resolved against the prefix).
    pub spool_dir: PathBuf,
}

/// The `[cache]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConf {
    /// memcached servers, `host:port`; empty for no cache.
    pub memcached: Vec<String>,
    /// How long a stale entry may still be served while it is refreshed.
    pub max_stale: Dur,
    /// In-worker cache lifetime of hot answers.
    pub micro_ttl: Dur,
}

/// The `[auth]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConf {
    /// The Firebase project whose ID tokens are accepted.
    pub firebase_project_id: String,
    /// `{"kid": "-----BEGIN CERTIFICATE-----..."}` as Google publishes (resolved).
    pub certificates: PathBuf,
    /// Firebase uids of platform administrators.
    pub admin_uids: Vec<String>,
}

/// The `[ingest]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConf {
    /// Largest accepted difference between a sensor's clock and ours.
    pub max_clock_skew: Dur,
    /// How near the modulus (and 0) counters must be to count as a wrap.
    pub wrap_window: u32,
    /// A larger delta in one report is recorded as an anomaly.
    pub max_delta: u32,
}

impl Default for MqttConf {
    fn default() -> MqttConf {
        MqttConf {
            listen: Vec::new(),
            backlog: 511,
            allow_anonymous: false,
            max_packet_size: Size(64 << 10),
            max_keepalive: Dur::secs(20 * 60),
            max_inflight: 20,
            max_queued: 1000,
            max_outbound: Size(1 << 20),
            stall_timeout: Dur::secs(60),
            password_file: None,
            acl_file: None,
            connect_rate: None,
        }
    }
}

impl Default for DatabaseConf {
    fn default() -> DatabaseConf {
        DatabaseConf {
            url: "postgresql://bizzy@127.0.0.1:5432/bizzy".to_string(),
            pool_size: 4,
            migrate_on_start: true,
            spool_dir: PathBuf::from("var/spool"),
        }
    }
}

impl Default for CacheConf {
    fn default() -> CacheConf {
        CacheConf {
            memcached: vec!["127.0.0.1:11211".to_string()],
            max_stale: Dur::secs(120),
            micro_ttl: Dur::secs(1),
        }
    }
}

impl Default for AuthConf {
    fn default() -> AuthConf {
        AuthConf {
            firebase_project_id: "bizzy-demo".to_string(),
            certificates: PathBuf::from("conf/firebase-certs.json"),
            admin_uids: Vec::new(),
        }
    }
}

impl Default for IngestConf {
    fn default() -> IngestConf {
        IngestConf {
            max_clock_skew: Dur::secs(600),
            wrap_window: 4096,
            max_delta: 5000,
        }
    }
}

/// The largest packet MQTT 3.1.1 can express (the remaining length is at most 268,435,455).
const MQTT_MAX_PACKET: u64 = 268_435_455 + 5;

impl MqttConf {
    /// Checks addresses, sizes and limits.
    pub fn validate(&self) -> Result<(), Invalid> {
        let at = KeyPath::root("mqtt");
        check_no_repeats(&self.listen, &at.key("listen"))?;
        between(self.backlog, 1, 65535, &at.key("backlog"))?;
        let packet = &at.key("max_packet_size");
        between(
            self.max_packet_size,
            Size(16),
            Size(MQTT_MAX_PACKET),
            packet,
        )?;
        between(
            self.max_keepalive,
            Dur::secs(1),
            Dur::secs(65535),
            &at.key("max_keepalive"),
        )?;
        if self.max_keepalive.0.subsec_nanos() != 0 {
            return fail(
                &at.key("max_keepalive"),
                "must be whole seconds (MQTT keep-alives are)",
            );
        }
        between(self.max_inflight, 1, 65535, &at.key("max_inflight"))?;
        between(self.max_queued, 1, 10_000_000, &at.key("max_queued"))?;
        at_least(self.max_outbound, Size(1024), &at.key("max_outbound"))?;
        at_least(self.stall_timeout, Dur::secs(1), &at.key("stall_timeout"))?;
        for (key, file) in [
            ("password_file", &self.password_file),
            ("acl_file", &self.acl_file),
        ] {
            if let Some(file) = file {
                non_empty(&file.to_string_lossy(), &at.key(key))?;
            }
        }
        Ok(())
    }

    /// Resolves the password and ACL files against the prefix.
    pub fn resolve(&mut self, prefix: &Path) {
        for file in [&mut self.password_file, &mut self.acl_file]
            .into_iter()
            .flatten()
        {
            *file = resolve(prefix, file);
        }
    }
}

impl DatabaseConf {
    /// Checks the URL scheme, the pool size and the spool directory.
    pub fn validate(&self) -> Result<(), Invalid> {
        let at = KeyPath::root("database");
        let scheme_ok = ["postgresql://", "postgres://"]
            .iter()
            .any(|s| self.url.starts_with(s) && self.url.len() > s.len());
        if !scheme_ok {
            return fail(
                &at.key("url"),
                format!("{:?} is not a postgresql:// URL", self.url),
            );
        }
        between(self.pool_size, 1, 1024, &at.key("pool_size"))?;
        non_empty(&self.spool_dir.to_string_lossy(), &at.key("spool_dir"))
    }

    /// Resolves the spool directory against the prefix.
    pub fn resolve(&mut self, prefix: &Path) {
        self.spool_dir = resolve(prefix, &self.spool_dir);
    }
}

impl CacheConf {
    /// Checks that each server is `host:port`.
    pub fn validate(&self) -> Result<(), Invalid> {
        let at = KeyPath::root("cache").key("memcached");
        for (i, server) in self.memcached.iter().enumerate() {
            let ok = server.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok || server.contains(char::is_whitespace) {
                return fail(&at.index(i), format!("{server:?} is not host:port"));
            }
        }
        check_no_repeats(&self.memcached, &at)
    }
}

impl AuthConf {
    /// Checks the project id, the certificates path and the admin uids.
    pub fn validate(&self) -> Result<(), Invalid> {
        let at = KeyPath::root("auth");
        non_empty(&self.firebase_project_id, &at.key("firebase_project_id"))?;
        non_empty(
            &self.certificates.to_string_lossy(),
            &at.key("certificates"),
        )?;
        for (i, uid) in self.admin_uids.iter().enumerate() {
            non_empty(uid, &at.key("admin_uids").index(i))?;
        }
        check_no_repeats(&self.admin_uids, &at.key("admin_uids"))
    }

    /// Resolves the certificates file against the prefix.
    pub fn resolve(&mut self, prefix: &Path) {
        self.certificates = resolve(prefix, &self.certificates);
    }
}

impl IngestConf {
    /// Checks the skew and the counter limits.
    pub fn validate(&self) -> Result<(), Invalid> {
        let at = KeyPath::root("ingest");
        at_least(self.max_clock_skew, Dur::secs(1), &at.key("max_clock_skew"))?;
        // A wrap must be told apart from a decrease: the window stays under half the modulus.
        between(self.wrap_window, 1, 32767, &at.key("wrap_window"))?;
        at_least(self.max_delta, 1, &at.key("max_delta"))
    }
}
