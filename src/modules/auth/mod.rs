//! The auth module: who a request comes from. `conf` parses the `[auth]` section; `firebase`
//! verifies Firebase ID tokens offline against the certificates Google publishes; `mint` makes
//! such tokens with a local key, for demos and tests (`bizzy token`).
//!
//! [`Auth`] is what a cycle knows about callers: built in the master by [`Auth::load`] (so a bad
//! certificates file fails `bizzy -t` and refuses a reload, naming the file and the reason), then
//! inherited by the workers through fork. It reads no file once built and never blocks.

pub mod conf;
pub mod firebase;
pub mod mint;

use std::fmt;
use std::rc::Rc;
use std::time::SystemTime;

use crate::core::config::Conf;

pub use conf::AuthConf;
use firebase::{CertError, Certificates, TokenError, Verifier};

/// A cycle's token verifier and platform administrators.
pub struct Auth {
    verifier: Verifier,
    admin_uids: Vec<String>,
}

/// Why a cycle's `[auth]` could not be built: the certificates file, named with its reason.
#[derive(Debug)]
pub struct AuthError(pub CertError);

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "auth.certificates: {}", self.0)
    }
}

impl std::error::Error for AuthError {}

impl Auth {
    /// The `[auth]` of `conf` with its certificates loaded (the path is already resolved against
    /// the prefix), or `None` when the configuration has no `[auth]` section.
    pub fn load(conf: &Conf) -> Result<Option<Rc<Auth>>, AuthError> {
        if !conf.written::<AuthConf>() {
            return Ok(None);
        }
        let c = conf.section::<AuthConf>();
        Auth::from_conf(c).map(|a| Some(Rc::new(a)))
    }

    /// Loads the certificates `c` names.
    pub fn from_conf(c: &AuthConf) -> Result<Auth, AuthError> {
        let certs = Certificates::load(&c.certificates).map_err(AuthError)?;
        Ok(Auth {
            verifier: Verifier::new(&c.firebase_project_id, certs),
            admin_uids: c.admin_uids.clone(),
        })
    }

    /// The caller a bearer token names at time `now`: its uid, and whether `auth.admin_uids`
    /// makes it a platform admin; or why the token is refused (answer 401).
    pub fn caller(
        &self,
        bearer_token: &str,
        now: SystemTime,
    ) -> Result<(String, bool), TokenError> {
        let uid = self.verifier.verify(bearer_token, now)?;
        let admin = self.admin_uids.iter().any(|a| a == uid.as_str());
        Ok((uid.into(), admin))
    }

    /// The verifier, for its counters (how many RSA checks the cache did not save).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

#[cfg(test)]
mod tests;
