//! The `[mqtt]` section: listeners, packet and queue limits, timeouts, the password and ACL
//! files; registered with core's configuration by the wiring.
//!
//! Read by the MQTT service and broker; this file only parses and checks it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::config::{
    at_least, between, check_no_repeats, fail, listen_list, non_empty, resolve, Dur, Invalid,
    KeyPath, Listener, Protocol, Rate, Section, Size,
};

/// The protocol of the sockets `[mqtt]` listens on.
pub const PROTOCOL: Protocol = Protocol {
    name: "mqtt",
    label: "MQTT",
};

/// The `[mqtt]` section; without `listen` there is no MQTT listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConf {
    #[serde(with = "listen_list")]
    pub listen: Vec<SocketAddr>,
    pub backlog: i32,
    /// A listening socket per worker (`SO_REUSEPORT`), as nginx's `listen ... reuseport`.
    pub reuseport: bool,
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

impl Default for MqttConf {
    fn default() -> MqttConf {
        MqttConf {
            listen: Vec::new(),
            backlog: 511,
            reuseport: false,
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

/// The largest packet MQTT 3.1.1 can express (the remaining length is at most 268,435,455).
const MQTT_MAX_PACKET: u64 = 268_435_455 + 5;

impl Section for MqttConf {
    const NAME: &'static str = "mqtt";

    /// Checks addresses, sizes and limits.
    fn validate(&self) -> Result<(), Invalid> {
        let at = KeyPath::root(Self::NAME);
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
    fn resolve(&mut self, prefix: &Path) {
        for file in [&mut self.password_file, &mut self.acl_file]
            .into_iter()
            .flatten()
        {
            *file = resolve(prefix, file);
        }
    }

    /// The addresses of `listen`, in order.
    fn listeners(&self) -> Vec<Listener> {
        let owner = KeyPath::root(Self::NAME);
        self.listen
            .iter()
            .enumerate()
            .map(|(j, addr)| Listener {
                addr: *addr,
                protocol: PROTOCOL,
                backlog: self.backlog,
                reuseport: self.reuseport,
                deferred: 0,
                at: owner.key("listen").index(j),
                owner: owner.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Conf;

    fn err(text: &str) -> String {
        match Conf::parse_only::<MqttConf>(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err("[mqtt]\nmax_keepalive = \"1d\"\n");
        assert_eq!(
            e,
            "conf/x.toml:2: mqtt.max_keepalive: must be between 1s and 65535s, not 1d"
        );
        let e = err("[mqtt]\nmax_keepalive = \"1500ms\"\n");
        assert_eq!(
            e,
            "conf/x.toml:2: mqtt.max_keepalive: must be whole seconds (MQTT keep-alives are)"
        );
        let e = err("[mqtt]\nmax_packet_size = \"1g\"\n");
        assert_eq!(
            e,
            "conf/x.toml:2: mqtt.max_packet_size: must be between 16 and 268435460, not 1g"
        );
        let e = err("[mqtt]\nconnect_rate = \"fast\"\n");
        let want = "conf/x.toml:2: mqtt.connect_rate: \"fast\" is not a rate (write e.g. \"50r/s\" or \"600r/m\")";
        assert_eq!(e, want);
        let e = err("[mqtt]\nmax_infligt = 5\n");
        assert_eq!(
            e,
            "conf/x.toml:2: mqtt.max_infligt: unknown key (did you mean `max_inflight`?)"
        );
    }

    #[test]
    fn listens_and_resolves_its_files() {
        let text =
            "[mqtt]\nlisten = [\"1883\", \"[::1]:1884\"]\nbacklog = 9\nacl_file = \"conf/acl\"\n";
        let conf = Conf::parse_only::<MqttConf>(text).unwrap_or_else(|e| panic!("{e}"));
        let m = conf.section::<MqttConf>();
        assert_eq!(
            m.acl_file.as_deref(),
            Some(Path::new("/srv/bizzy/conf/acl"))
        );
        let got: Vec<(String, Protocol, i32)> = conf
            .listeners()
            .into_iter()
            .map(|l| (l.addr.to_string(), l.kind, l.backlog))
            .collect();
        let want = [
            ("0.0.0.0:1883".to_string(), PROTOCOL, 9),
            ("[::1]:1884".to_string(), PROTOCOL, 9),
        ];
        assert_eq!(got, want);
    }
}
