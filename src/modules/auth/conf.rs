//! The `[auth]` section: the Firebase project, its certificates and the platform
//! administrators; this file only parses and checks it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::config::{check_no_repeats, non_empty, resolve, Invalid, KeyPath, Section};

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

impl Default for AuthConf {
    fn default() -> AuthConf {
        AuthConf {
            firebase_project_id: "bizzy-demo".to_string(),
            certificates: PathBuf::from("conf/firebase-certs.json"),
            admin_uids: Vec::new(),
        }
    }
}

impl Section for AuthConf {
    const NAME: &'static str = "auth";

    /// Checks the project id, the certificates path and the admin uids.
    fn validate(&self) -> Result<(), Invalid> {
        let at = KeyPath::root(Self::NAME);
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
    fn resolve(&mut self, prefix: &Path) {
        self.certificates = resolve(prefix, &self.certificates);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Conf;

    fn err(text: &str) -> String {
        match Conf::parse_only::<AuthConf>(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err("[auth]\nadmin_uids = [\"a\", \"a\"]\n");
        assert_eq!(e, "conf/x.toml:2: auth.admin_uids[1]: a is given twice");
        let e = err("[auth]\n\nfirebase_project_id = \"\"\n");
        assert_eq!(
            e,
            "conf/x.toml:3: auth.firebase_project_id: must not be empty"
        );
    }
}
