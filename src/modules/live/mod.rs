//! Live updates: a hive's occupancy streamed to clients as it changes (`GET
//! /v1/hives/{id}/live`, server-sent events; DESIGN.md section 8). The worker's [`bus::Bus`]
//! carries the changes, fed by the MQTT side's retained occupancy (this node's changes over
//! the mesh, other nodes' through NOTIFY); [`sse::Live`] is the body of one stream.

pub mod bus;
pub mod sse;

use serde::{Deserialize, Serialize};

use crate::core::config::{fail, Dur, Invalid, KeyPath, Section};

pub use bus::Bus;

/// The `[live]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConf {
    /// A comment is sent after this long without an event, so that proxies and clients see the
    /// stream alive (and a dead client is found by the write).
    pub heartbeat: Dur,
    /// How long a client waits before reconnecting after a stream ends (the `retry:` field).
    pub retry: Dur,
}

impl Default for LiveConf {
    fn default() -> LiveConf {
        LiveConf {
            heartbeat: Dur::secs(15),
            retry: Dur::secs(3),
        }
    }
}

impl Section for LiveConf {
    const NAME: &'static str = "live";

    fn validate(&self) -> Result<(), Invalid> {
        let at = KeyPath::root(Self::NAME);
        if self.heartbeat.0.as_millis() < 100 {
            return fail(&at.key("heartbeat"), "must be at least 100ms");
        }
        if self.retry.0.as_millis() > u128::from(u32::MAX) {
            return fail(&at.key("retry"), "is too long");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Conf;

    #[test]
    fn defaults_and_refusals() {
        let c = Conf::parse_only::<LiveConf>("").unwrap();
        assert_eq!(c.section::<LiveConf>(), &LiveConf::default());
        let e = Conf::parse_only::<LiveConf>("[live]\nheartbeat = \"10ms\"\n").unwrap_err();
        assert!(e.to_string().contains("live.heartbeat"), "{e}");
        let e = Conf::parse_only::<LiveConf>("[live]\nbeat = \"1s\"\n").unwrap_err();
        assert!(e.to_string().contains("beat"), "{e}");
    }
}
