//! The worker's micro-cache of API reads (`cache.micro_ttl`): a `GET` answered 200 is kept for
//! that long under the caller's uid and the target, so a hot read costs PostgreSQL one query per
//! `micro_ttl` per worker instead of one per request. The uid is part of the key, so nobody is
//! answered what only another caller may see. Any write this worker answers with success empties
//! it (its own writes are read back at once); other workers' and nodes' writes show within
//! `micro_ttl`. `micro_ttl = "0s"` turns it off.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;

/// Entries kept at most; past that, the expired go, and if none had, all.
const MAX_ENTRIES: usize = 10_000;

/// Who asked, and what (path and query).
pub type Key = (Option<String>, String);

struct Entry {
    body: Bytes,
    etag: Rc<str>,
    expires_ms: u64,
}

/// One worker's cached reads.
pub struct Micro {
    ttl_ms: u64,
    cache_control: &'static str,
    entries: RefCell<HashMap<Key, Entry>>,
}

impl Micro {
    pub fn new(ttl: std::time::Duration) -> Micro {
        Micro {
            ttl_ms: ttl.as_millis() as u64,
            cache_control: super::anon::cache_control(ttl),
            entries: RefCell::new(HashMap::new()),
        }
    }

    /// Whether reads are cached at all.
    pub fn on(&self) -> bool {
        self.ttl_ms > 0
    }

    /// `Cache-Control` of the anonymous answers kept here.
    pub fn cache_control(&self) -> &'static str {
        self.cache_control
    }

    /// The body and ETag of a 200 answer to `key` still fresh at `now_ms`.
    pub fn get(&self, key: &Key, now_ms: u64) -> Option<(Bytes, Rc<str>)> {
        let entries = self.entries.borrow();
        let e = entries.get(key)?;
        (e.expires_ms > now_ms).then(|| (e.body.clone(), Rc::clone(&e.etag)))
    }

    /// Keeps the 200 answer `body` to `key`, with its ETag, from `now_ms`.
    pub fn put(&self, key: Key, body: Bytes, etag: Rc<str>, now_ms: u64) {
        if !self.on() {
            return;
        }
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.retain(|_, e| e.expires_ms > now_ms);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        let expires_ms = now_ms + self.ttl_ms;
        entries.insert(
            key,
            Entry {
                body,
                etag,
                expires_ms,
            },
        );
    }

    /// A write succeeded on this worker: what was read before may have changed.
    pub fn clear(&self) {
        self.entries.borrow_mut().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(uid: &str, target: &str) -> Key {
        (Some(uid.to_string()), target.to_string())
    }

    #[test]
    fn an_answer_is_kept_for_its_caller_until_it_expires() {
        let m = Micro::new(Duration::from_secs(1));
        m.put(
            key("alice", "/v1/sensors/d"),
            Bytes::from_static(b"{}"),
            Rc::from("\"e\""),
            1_000,
        );
        assert!(m.get(&key("alice", "/v1/sensors/d"), 1_999).is_some());
        assert!(m.get(&key("alice", "/v1/sensors/d"), 2_000).is_none());
        assert!(
            m.get(&key("mallory", "/v1/sensors/d"), 1_500).is_none(),
            "another caller never gets it"
        );
        assert!(m.get(&(None, "/v1/sensors/d".into()), 1_500).is_none());
    }

    #[test]
    fn a_write_empties_it_and_zero_turns_it_off() {
        let m = Micro::new(Duration::from_secs(1));
        m.put(key("alice", "/a"), Bytes::new(), Rc::from(""), 0);
        m.clear();
        assert!(m.get(&key("alice", "/a"), 1).is_none());
        let off = Micro::new(Duration::ZERO);
        off.put(key("alice", "/a"), Bytes::new(), Rc::from(""), 0);
        assert!(!off.on());
        assert!(off.get(&key("alice", "/a"), 0).is_none());
    }

    #[test]
    fn it_stays_bounded() {
        let m = Micro::new(Duration::from_secs(1));
        for i in 0..MAX_ENTRIES + 10 {
            m.put(key("u", &format!("/{i}")), Bytes::new(), Rc::from(""), 0);
        }
        assert!(m.entries.borrow().len() <= MAX_ENTRIES);
    }
}
