//! Display API tokens' logins (DESIGN.md section 6, migrations 0009 and 0010): the worker's
//! copy of the tokens it was asked about, and the rights of a display logged in with one. Pure
//! state on the event loop, as [`super::table`]: what to ask the I/O thread is returned, never
//! sent from here.
//!
//! A display logs in with user name `token:{id}` and the token's secret as its password, under
//! any client identifier. The copy holds only tokens a CONNECT named: each is looked up at its
//! first CONNECT (a token no row has is not remembered: it may be created next), its verified
//! passwords remembered as a sensor's are. A notification on [`CHANNEL`] (a token revoked,
//! deleted, or its secret or hives changed) makes the worker forget it and cut off the clients
//! logged in with it; a lookup under way meanwhile is asked again rather than believed.
//!
//! Rights: SUBSCRIBE to `hives/{id}/occupancy` exactly, for the token's hives (no wildcard);
//! never PUBLISH; what it subscribed to is delivered.

use std::collections::HashMap;

use super::store::{Digest, TokenFound};
use super::table::{Lookups, Secret, Step, Waiter};
use crate::mqtt::auth::{Op, Refusal};

/// The channel on which the database announces a changed token (its payload the token id).
pub const CHANNEL: &str = "bizzy_token";

/// The user name prefix of a display's login: `token:{id}`.
pub const PREFIX: &str = "token:";

/// The token a user name names: `None` if it is not a token's login at all, `Some(None)` if it
/// is one with no valid id (refused).
pub fn token_id(username: &str) -> Option<Option<i64>> {
    let rest = username.strip_prefix(PREFIX)?;
    let valid = !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
    Some(
        valid
            .then(|| rest.parse().ok())
            .flatten()
            .filter(|&id| id > 0),
    )
}

/// The user name of token `id`'s clients.
pub fn username(id: i64) -> String {
    format!("{PREFIX}{id}")
}

#[derive(Debug, Clone)]
enum Entry {
    Live { secret: Secret, hives: Vec<i64> },
    Revoked,
}

/// The tokens this worker was asked about.
#[derive(Debug, Default)]
pub struct Tokens {
    entries: HashMap<i64, Entry>,
    pending: Lookups<i64>,
}

impl Tokens {
    /// How a CONNECT with token `id` and `password` is answered.
    pub fn check(&self, id: i64, password: Option<&[u8]>) -> Step {
        match self.entries.get(&id) {
            None => Step::Lookup,
            Some(Entry::Revoked) => Step::Refuse(Refusal::NotAuthorised),
            Some(Entry::Live { secret, .. }) => secret.check(password),
        }
    }

    /// `w` waits for token `id`'s lookup; true if the lookup is to be asked (no other waits).
    pub fn wait(&mut self, id: i64, w: Waiter) -> bool {
        self.pending.wait(id, w)
    }

    /// Token `id`'s lookup answered: the CONNECTs that waited for it. A lookup a notification
    /// overtook is not kept: its waiters are to be answered again (looked up anew).
    pub fn looked_up(&mut self, id: i64, found: TokenFound) -> Vec<Waiter> {
        let (waiters, superseded) = self.pending.ended(&id);
        if !superseded {
            match found {
                TokenFound::Live {
                    secret_hash,
                    hive_ids,
                } => self.put_live(id, secret_hash, hive_ids),
                TokenFound::Revoked => {
                    self.entries.insert(id, Entry::Revoked);
                }
                TokenFound::Unknown => {
                    self.entries.remove(&id);
                }
            }
        }
        waiters
    }

    /// Token `id`'s lookup failed: the CONNECTs that waited for it.
    pub fn lookup_failed(&mut self, id: i64) -> Vec<Waiter> {
        self.pending.ended(&id).0
    }

    /// A notification: token `id` changed, forgotten here.
    pub fn forget(&mut self, id: i64) {
        self.entries.remove(&id);
        self.pending.supersede(&id);
    }

    /// LISTEN took effect again: notifications may have been missed. Every token is forgotten;
    /// the ones that were known are returned (to be looked up again).
    pub fn forget_all(&mut self) -> Vec<i64> {
        self.pending.supersede_all();
        self.entries.drain().map(|(id, _)| id).collect()
    }

    /// A password check came: remembered if the hash it was checked against is still the
    /// token's.
    pub fn verified(&mut self, id: i64, checked: &str, digest: Digest, ok: bool) {
        if let Some(Entry::Live { secret, .. }) = self.entries.get_mut(&id) {
            secret.verified(checked, digest, ok);
        }
    }

    /// Whether a password verified against `checked` may still let token `id` in (no
    /// notification came meanwhile).
    pub fn holds(&self, id: i64, checked: &str) -> bool {
        matches!(self.entries.get(&id), Some(Entry::Live { secret, .. }) if secret.is(checked))
    }

    /// The hives of live token `id`, as the copy has them.
    pub fn hives(&self, id: i64) -> Option<&[i64]> {
        match self.entries.get(&id)? {
            Entry::Live { hives, .. } => Some(hives),
            Entry::Revoked => None,
        }
    }

    fn put_live(&mut self, id: i64, phc: String, hives: Vec<i64>) {
        let old = match self.entries.get(&id) {
            Some(Entry::Live { secret, .. }) => Some(secret),
            _ => None,
        };
        let secret = Secret::new(phc, old);
        self.entries.insert(id, Entry::Live { secret, hives });
    }
}

/// A display's rights: SUBSCRIBE to `hives/{id}/occupancy` for `hives` only, exactly; no
/// PUBLISH; deliveries of what it subscribed to.
pub fn token_allows(hives: &[i64], op: Op, topic: &str) -> bool {
    match op {
        Op::Publish => false,
        Op::Subscribe => topic
            .strip_prefix("hives/")
            .and_then(|t| t.strip_suffix("/occupancy"))
            .is_some_and(|id| hives.iter().any(|h| h.to_string() == id)),
        Op::Receive => true,
    }
}

#[cfg(test)]
mod tests;
