//! The `[main]` section: processes, user, pid file and error log (nginx's main context).
//!
//! Read by the master (how many workers, which user, where the pid file and error log go) and
//! by each worker (connection limits). Only the master acts on these values.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::error::{between, fail, non_empty, Invalid, KeyPath};
use super::resolve;
use super::section::Section;
use super::units::Dur;

/// The `[main]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MainConf {
    /// Worker processes; the key accepts an integer >= 1 or `"auto"` (one per CPU).
    #[serde(deserialize_with = "worker_processes")]
    pub worker_processes: usize,
    /// Connections per worker (listeners included), >= 16.
    pub worker_connections: usize,
    /// How long a graceful stop waits for a worker before killing it.
    pub worker_shutdown_timeout: Dur,
    /// `RLIMIT_NOFILE` set for the workers; unchanged when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_rlimit_nofile: Option<u64>,
    /// `"user"` or `"user:group"` the workers switch to when the master runs as root.
    pub user: String,
    /// The pid file (resolved against the prefix).
    pub pid: PathBuf,
    /// The error log (resolved against the prefix), or `"stderr"`.
    pub error_log: PathBuf,
    /// The least severe level written to the error log.
    pub log_level: LogLevel,
    /// Detach from the terminal like nginx does.
    pub daemon: bool,
}

/// Error log levels, least severe first (`Debug < Crit`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Notice,
    Warn,
    Error,
    Crit,
}

impl LogLevel {
    /// The name used in the configuration and in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Crit => "crit",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for MainConf {
    fn default() -> MainConf {
        MainConf {
            worker_processes: 1,
            worker_connections: 10240,
            worker_shutdown_timeout: Dur::secs(10),
            worker_rlimit_nofile: None,
            user: "nobody".to_string(),
            pid: PathBuf::from("var/run/bizzy.pid"),
            error_log: PathBuf::from("var/log/error.log"),
            log_level: LogLevel::Info,
            daemon: false,
        }
    }
}

/// The most workers accepted: more is surely a typo.
const MAX_WORKERS: usize = 1024;

/// The number of CPUs this process may run on, what `worker_processes = "auto"` means.
pub fn auto_worker_processes() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Reads `worker_processes`: an integer or `"auto"`.
fn worker_processes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    struct Workers;
    impl Visitor<'_> for Workers {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer or \"auto\"")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
            usize::try_from(v).map_err(|_| E::custom(format!("{v} is not a number of processes")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
            usize::try_from(v).map_err(|_| E::custom(format!("{v} is not a number of processes")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
            if v == "auto" {
                return Ok(auto_worker_processes());
            }
            Err(E::custom(format!(
                "{v:?} is neither a number of processes nor \"auto\""
            )))
        }
    }
    d.deserialize_any(Workers)
}

impl Section for MainConf {
    const NAME: &'static str = "main";

    /// Checks ranges: workers, connections, the user and the paths.
    fn validate(&self) -> Result<(), Invalid> {
        let at = KeyPath::root(Self::NAME);
        between(
            self.worker_processes,
            1,
            MAX_WORKERS,
            &at.key("worker_processes"),
        )?;
        between(
            self.worker_connections,
            16,
            1 << 20,
            &at.key("worker_connections"),
        )?;
        if let Some(n) = self.worker_rlimit_nofile {
            let wanted = self.worker_connections as u64;
            if n < wanted {
                let msg = format!("must be at least worker_connections ({wanted}), not {n}");
                return fail(&at.key("worker_rlimit_nofile"), msg);
            }
        }
        check_user(&self.user, &at.key("user"))?;
        non_empty(&self.pid.to_string_lossy(), &at.key("pid"))?;
        non_empty(&self.error_log.to_string_lossy(), &at.key("error_log"))
    }

    /// Resolves the pid file and error log against the prefix (`"stderr"` stays as is).
    fn resolve(&mut self, prefix: &Path) {
        self.pid = resolve(prefix, &self.pid);
        if self.error_log != Path::new("stderr") {
            self.error_log = resolve(prefix, &self.error_log);
        }
    }
}

/// `"user"` or `"user:group"`, both parts non-empty, no blanks.
fn check_user(user: &str, at: &KeyPath) -> Result<(), Invalid> {
    let parts: Vec<&str> = user.split(':').collect();
    let ok = parts.len() <= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && !p.contains(char::is_whitespace));
    if !ok {
        return fail(at, format!("{user:?} is not \"user\" or \"user:group\""));
    }
    Ok(())
}
