//! The `[cache]` section: the memcached servers of the replica, how old it may get, and how long
//! a worker keeps a hot answer.

use serde::{Deserialize, Serialize};

use crate::core::config::{check_no_repeats, fail, Dur, Invalid, KeyPath, Section};

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

impl Default for CacheConf {
    fn default() -> CacheConf {
        CacheConf {
            memcached: vec!["127.0.0.1:11211".to_string()],
            max_stale: Dur::secs(120),
            micro_ttl: Dur::secs(1),
        }
    }
}

impl Section for CacheConf {
    const NAME: &'static str = "cache";

    /// Checks that each server is `host:port`.
    fn validate(&self) -> Result<(), Invalid> {
        let at = KeyPath::root(Self::NAME).key("memcached");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Conf;

    fn err(text: &str) -> String {
        match Conf::parse_only::<CacheConf>(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err("[cache]\nmemcached = [\"127.0.0.1\"]\n");
        assert_eq!(
            e,
            "conf/x.toml:2: cache.memcached[0]: \"127.0.0.1\" is not host:port"
        );
        let e = err("[cache]\nsomething_else = 1\n");
        assert_eq!(e, "conf/x.toml:2: cache.something_else: unknown key");
    }
}
