//! The `[database]` section: the PostgreSQL URL, the pool, the spool directory and how long a
//! request waits for an answer; this file only parses and checks it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::config::{between, fail, non_empty, resolve, Dur, Invalid, KeyPath, Section};

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
    /// How long an HTTP request waits for the database before it is answered 503 (the query is
    /// cancelled).
    pub query_timeout: Dur,
}

impl Default for DatabaseConf {
    fn default() -> DatabaseConf {
        DatabaseConf {
            url: "postgresql://bizzy@127.0.0.1:5432/bizzy".to_string(),
            pool_size: 4,
            migrate_on_start: true,
            spool_dir: PathBuf::from("var/spool"),
            query_timeout: Dur::secs(5),
        }
    }
}

impl Section for DatabaseConf {
    const NAME: &'static str = "database";

    /// Checks the URL scheme, the pool size and the spool directory.
    fn validate(&self) -> Result<(), Invalid> {
        let at = KeyPath::root(Self::NAME);
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
        if self.query_timeout.0.is_zero() {
            return fail(&at.key("query_timeout"), "must be more than 0".to_string());
        }
        non_empty(&self.spool_dir.to_string_lossy(), &at.key("spool_dir"))
    }

    /// Resolves the spool directory against the prefix.
    fn resolve(&mut self, prefix: &Path) {
        self.spool_dir = resolve(prefix, &self.spool_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Conf;

    fn err(text: &str) -> String {
        match Conf::parse_only::<DatabaseConf>(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err("[database]\nurl = \"mysql://x\"\n");
        assert_eq!(
            e,
            "conf/x.toml:2: database.url: \"mysql://x\" is not a postgresql:// URL"
        );
        let e = err("[database]\npool_size = 0\n");
        assert_eq!(
            e,
            "conf/x.toml:2: database.pool_size: must be between 1 and 1024, not 0"
        );
    }

    #[test]
    fn spool_dir_is_resolved() {
        let conf = Conf::parse_only::<DatabaseConf>("").unwrap_or_else(|e| panic!("{e}"));
        let db = conf.section::<DatabaseConf>();
        assert_eq!(db.spool_dir, Path::new("/srv/bizzy/var/spool"));
    }
}
