//! The `[database]` section: the PostgreSQL URL, the pool and the spool directory, for the
//! database I/O threads to come; this file only parses and checks it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::config::{between, fail, non_empty, resolve, Invalid, KeyPath, Section};

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
