//! The worker's copy of the sensor logins, and the rules that answer a sensor's CONNECT and
//! topic rights from it. Pure state on the event loop: what to ask the I/O thread is returned,
//! never sent from here, so every rule is tested without a database.
//!
//! The copy maps a device id to its live sensor's login (PHC hash, hive) or to "deleted". It is
//! filled by the whole table's read (after each LISTEN took effect) and by the lookups of
//! CONNECTs it could not answer; a notification marks its device id stale (looked up again at
//! its next CONNECT). A read or lookup that was under way when a notification came may predate
//! the change: what it brings for that device id is kept stale too.
//!
//! Passwords already verified are remembered per entry as their SHA-256 (the last good one and
//! the last bad one), so a sensor's reconnection costs a hash and a map lookup on the loop, and
//! PBKDF2 runs (on the I/O thread) only for a password not seen with this hash before. A new
//! hash for the device id forgets both.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use sha2::{Digest as _, Sha256};

use super::store::{Digest, Found};
use crate::mqtt::auth::{Op, Refusal};

/// What answers a sensor's CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Allow,
    Refuse(Refusal),
    /// Check the password against the hash on the I/O thread.
    Verify {
        phc: String,
        digest: Digest,
    },
    /// The copy does not know the device id (or its entry is stale): look it up.
    Lookup,
}

/// A CONNECT waiting for its device id's lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter {
    pub ticket: u64,
    pub client_id: String,
    pub password: Option<Vec<u8>>,
}

impl Waiter {
    /// The CONNECT of `ticket` with `login`, to wait.
    pub fn of(login: &crate::mqtt::auth::Login<'_>, ticket: u64) -> Waiter {
        Waiter {
            ticket,
            client_id: login.client_id.to_string(),
            password: login.password.map(<[u8]>::to_vec),
        }
    }
}

/// A live login's secret: its PHC string and what the worker remembers of the passwords
/// verified against it (the SHA-256 of the last good one and of the last bad one). Sensors' and
/// display tokens' alike.
#[derive(Debug, Clone)]
pub struct Secret {
    phc: String,
    good: Option<Digest>,
    bad: Option<Digest>,
}

impl Secret {
    /// The secret hashed as `phc`, keeping what `old` remembers if it has the same hash (a new
    /// hash forgets both).
    pub fn new(phc: String, old: Option<&Secret>) -> Secret {
        match old {
            Some(o) if o.phc == phc => Secret { phc, ..*o },
            _ => Secret {
                phc,
                good: None,
                bad: None,
            },
        }
    }

    /// Whether this is the hash `phc`.
    pub fn is(&self, phc: &str) -> bool {
        self.phc == phc
    }

    /// How `password` is answered: at once if it is the last good or the last bad one, else
    /// verified against the hash.
    pub fn check(&self, password: Option<&[u8]>) -> Step {
        let Some(password) = password else {
            return Step::Refuse(Refusal::BadCredentials);
        };
        let digest: Digest = Sha256::digest(password).into();
        if self.good == Some(digest) {
            Step::Allow
        } else if self.bad == Some(digest) {
            Step::Refuse(Refusal::BadCredentials)
        } else {
            Step::Verify {
                phc: self.phc.clone(),
                digest,
            }
        }
    }

    /// A password check came: remembered if it was checked against this hash.
    pub fn verified(&mut self, checked: &str, digest: Digest, ok: bool) {
        if self.phc == checked {
            *(if ok { &mut self.good } else { &mut self.bad }) = Some(digest);
        }
    }
}

/// The lookups under way (of device ids or tokens): the CONNECTs waiting for each, and
/// whether a notification overtook it.
#[derive(Debug)]
pub struct Lookups<K>(HashMap<K, Pending>);

impl<K> Default for Lookups<K> {
    fn default() -> Lookups<K> {
        Lookups(HashMap::new())
    }
}

impl<K: Hash + Eq> Lookups<K> {
    /// `w` waits for `key`'s lookup; true if the lookup is to be asked (no other waits).
    pub fn wait(&mut self, key: K, w: Waiter) -> bool {
        let p = self.0.entry(key).or_default();
        p.waiters.push(w);
        p.waiters.len() == 1
    }

    /// `key`'s lookup ended: the CONNECTs that waited for it, and whether a notification
    /// overtook it.
    pub fn ended<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> (Vec<Waiter>, bool)
    where
        K: Borrow<Q>,
    {
        self.0
            .remove(key)
            .map(|p| (p.waiters, p.superseded))
            .unwrap_or_default()
    }

    /// A notification: `key`'s lookup under way, if any, may predate the change.
    pub fn supersede<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        if let Some(p) = self.0.get_mut(key) {
            p.superseded = true;
        }
    }

    /// A notification for every key.
    pub fn supersede_all(&mut self) {
        self.0.values_mut().for_each(|p| p.superseded = true);
    }
}

#[derive(Debug, Clone)]
enum Login {
    Live { secret: Secret, hive_id: i64 },
    Deleted,
}

#[derive(Debug, Clone)]
struct Entry {
    login: Login,
    /// Changed since it was read: looked up again before it answers a CONNECT.
    stale: bool,
}

#[derive(Debug, Default)]
struct Pending {
    waiters: Vec<Waiter>,
    /// A notification came while the lookup was under way.
    superseded: bool,
}

/// The worker's copy of the sensor logins.
#[derive(Debug, Default)]
pub struct Table {
    entries: HashMap<String, Entry>,
    /// The whole table was read at least once.
    loaded: bool,
    /// Reads of the whole table under way.
    loads: usize,
    /// Device ids notified while a read was under way (`None` in the set: all of them).
    notified_in_load: HashSet<Option<String>>,
    pending: Lookups<String>,
}

impl Table {
    /// How the CONNECT of sensor `device` (as `client_id`, with `password`) is answered.
    /// `fresh`: a stale entry does not answer (a CONNECT as it comes); an answer that was just
    /// looked up for waiting CONNECTs answers them even if a notification made it stale.
    pub fn check(
        &self,
        device: &str,
        client_id: &str,
        password: Option<&[u8]>,
        fresh: bool,
    ) -> Step {
        let Some(entry) = self.entries.get(device).filter(|e| !(fresh && e.stale)) else {
            return Step::Lookup;
        };
        let Login::Live { secret, .. } = &entry.login else {
            return Step::Refuse(Refusal::NotAuthorised);
        };
        if client_id != device {
            return Step::Refuse(Refusal::IdentifierRejected);
        }
        secret.check(password)
    }

    /// `w` waits for `device`'s lookup; true if the lookup is to be asked (no other waits).
    pub fn wait(&mut self, device: &str, w: Waiter) -> bool {
        self.pending.wait(device.to_string(), w)
    }

    /// `device`'s lookup answered: the copy takes it; the CONNECTs that waited for it.
    pub fn looked_up(&mut self, device: &str, found: Found) -> Vec<Waiter> {
        let (waiters, superseded) = self.pending.ended(device);
        self.put(device.to_string(), found, superseded);
        waiters
    }

    /// `device`'s lookup failed: the CONNECTs that waited for it.
    pub fn lookup_failed(&mut self, device: &str) -> Vec<Waiter> {
        self.pending.ended(device).0
    }

    /// A read of the whole table was asked.
    pub fn load_asked(&mut self) {
        self.loads += 1;
    }

    /// A read of the whole table came: it replaces the copy (remembered passwords stay with
    /// an unchanged hash). Returns the device ids whose live login the read changed (deleted,
    /// gone, another hash or hive): their clients are to be cut off, the change having come
    /// unannounced (while no LISTEN held).
    pub fn loaded(&mut self, rows: Vec<(String, Found)>) -> Vec<String> {
        let all_stale = self.notified_in_load.contains(&None);
        let mut old = std::mem::take(&mut self.entries);
        let mut changed = Vec::new();
        for (device, found) in rows {
            let stale = all_stale || self.notified_in_load.contains(&Some(device.clone()));
            if let Some(e) = old.remove(&device) {
                if let Login::Live { secret, hive_id } = &e.login {
                    let same = matches!(&found, Found::Live { secret_hash, hive_id: h }
                        if secret.is(secret_hash) && h == hive_id);
                    if !same {
                        changed.push(device.clone());
                    }
                }
                self.entries.insert(device.clone(), e);
            }
            self.put(device, found, stale);
        }
        changed.extend(
            old.into_iter()
                .filter(|(_, e)| matches!(e.login, Login::Live { .. }))
                .map(|(d, _)| d),
        );
        self.load_ended();
        self.loaded = true;
        changed
    }

    /// A read of the whole table failed.
    pub fn load_failed(&mut self) {
        self.load_ended();
    }

    fn load_ended(&mut self) {
        self.loads = self.loads.saturating_sub(1);
        if self.loads == 0 {
            self.notified_in_load.clear();
        }
    }

    /// A notification: `device`'s login changed (`None`: every login may have).
    pub fn notified(&mut self, device: Option<&str>) {
        match device {
            Some(d) => {
                if let Some(e) = self.entries.get_mut(d) {
                    e.stale = true;
                }
                self.pending.supersede(d);
            }
            None => {
                self.entries.values_mut().for_each(|e| e.stale = true);
                self.pending.supersede_all();
            }
        }
        if self.loads > 0 {
            self.notified_in_load.insert(device.map(str::to_string));
        }
    }

    /// A password check came: remembered if the hash it was checked against is still the
    /// device id's.
    pub fn verified(&mut self, device: &str, checked: &str, digest: Digest, ok: bool) {
        if let Some(Entry {
            login: Login::Live { secret, .. },
            ..
        }) = self.entries.get_mut(device)
        {
            secret.verified(checked, digest, ok);
        }
    }

    /// Whether a password verified against `checked` for `device` may still let it in: its
    /// entry is live, not stale, and has that hash (else a notification came meanwhile).
    pub fn holds(&self, device: &str, checked: &str) -> bool {
        matches!(
            self.entries.get(device),
            Some(Entry { login: Login::Live { secret, .. }, stale: false }) if secret.is(checked)
        )
    }

    /// Every device id the copy has (live or deleted).
    pub fn devices(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Whether `device` is to be held to a sensor's rights: a sensor (live or deleted) has
    /// it, or the table was never read, so no one can tell (the narrower rights, then).
    pub fn is_sensor(&self, device: &str) -> bool {
        self.entries.contains_key(device) || !self.loaded
    }

    /// The hive of the live sensor `device`, as the copy has it.
    pub fn hive(&self, device: &str) -> Option<i64> {
        match self.entries.get(device)?.login {
            Login::Live { hive_id, .. } => Some(hive_id),
            Login::Deleted => None,
        }
    }

    /// Device ids the copy has (live or deleted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Puts what the table says of `device` in the copy, keeping the remembered passwords if
    /// its hash did not change.
    fn put(&mut self, device: String, found: Found, stale: bool) {
        let login = match found {
            Found::Unknown => {
                self.entries.remove(&device);
                return;
            }
            Found::Deleted => Login::Deleted,
            Found::Live {
                secret_hash,
                hive_id,
            } => {
                let old = match self.entries.get(&device).map(|e| &e.login) {
                    Some(Login::Live { secret, .. }) => Some(secret),
                    _ => None,
                };
                Login::Live {
                    secret: Secret::new(secret_hash, old),
                    hive_id,
                }
            }
        };
        self.entries.insert(device, Entry { login, stale });
    }
}

/// A sensor's rights (DESIGN.md section 6): publish under `sensors/{own id}/`, subscribe to
/// `commands/sensor/{own id}` only; what it subscribed to is delivered.
pub fn sensor_allows(device: &str, op: Op, topic: &str) -> bool {
    match op {
        Op::Publish => topic
            .strip_prefix("sensors/")
            .and_then(|t| t.strip_prefix(device))
            .is_some_and(|t| t.starts_with('/')),
        Op::Subscribe => topic
            .strip_prefix("commands/sensor/")
            .is_some_and(|t| t == device),
        Op::Receive => true,
    }
}

#[cfg(test)]
mod tests;
