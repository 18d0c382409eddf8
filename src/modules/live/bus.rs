//! The worker's bus of occupancy changes: what the HTTP side streams to live clients.
//!
//! ```text
//!   committing worker: outbox -> broker: retained hives/{id}/occupancy --mesh--> every sibling
//!   other nodes: NOTIFY bizzy_occupancy -> slot 0 worker: outbox -> broker ----> every sibling
//!        each worker's broker, on keeping a newer retained occupancy: Bus::changed
//!        Bus::changed: the newest state of the hive kept, its subscribers woken (posted)
//!        a woken stream pulls Bus::latest: whatever came meanwhile is one state (conflated)
//! ```
//!
//! The bus neither imports HTTP nor MQTT: the ingest hook feeds it, a live stream reads it. It
//! keeps one state per hive (the retained payload, shared, not copied) and the tokens of the
//! connections that follow each hive.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use bytes::Bytes;
use mio::Token;

use crate::core::event::Posted;
use crate::modules::api::stats::Stats;

/// One hive's newest state and who follows it.
#[derive(Default)]
struct Hive {
    /// Bumped by every change heard on this worker: a follower compares it with the one it sent.
    version: u64,
    /// The occupancy JSON (`Occupancy::to_json`), once heard.
    latest: Option<Bytes>,
    /// `latest` as its followers send it, made by the first of them to ask ([`Bus::framed`]).
    framed: Option<Bytes>,
    followers: Vec<Token>,
}

/// One worker's bus.
#[derive(Default)]
pub struct Bus {
    hives: RefCell<HashMap<i64, Hive>>,
    /// The loop's wake-up queue, from the first subscription on.
    posted: RefCell<Option<Posted>>,
    followers: Cell<usize>,
    /// Where the figures go, once the worker knows its row.
    stats: std::cell::OnceCell<Stats>,
}

impl Bus {
    pub fn new() -> Bus {
        Bus::default()
    }

    /// Hive `hive` has a new state (`json`: its occupancy as clients see it): kept as the
    /// newest, and every follower woken.
    pub fn changed(&self, hive: i64, json: Bytes) {
        let mut hives = self.hives.borrow_mut();
        let h = hives.entry(hive).or_default();
        if h.latest.as_ref() == Some(&json) {
            return;
        }
        h.version += 1;
        h.latest = Some(json);
        h.framed = None;
        if h.followers.is_empty() {
            return;
        }
        if let Some(posted) = self.posted.borrow().as_ref() {
            for t in &h.followers {
                posted.post(*t);
            }
        }
    }

    /// The newest state heard of `hive` and its version, if any was.
    pub fn latest(&self, hive: i64) -> Option<(u64, Bytes)> {
        let hives = self.hives.borrow();
        let h = hives.get(&hive)?;
        Some((h.version, h.latest.clone()?))
    }

    /// The newest state of `hive` as `frame` makes it into what a follower sends, and its
    /// version: made once per change, however many follow the hive, and shared.
    pub fn framed(&self, hive: i64, frame: impl FnOnce(&[u8]) -> Bytes) -> Option<(u64, Bytes)> {
        let mut hives = self.hives.borrow_mut();
        let h = hives.get_mut(&hive)?;
        let latest = h.latest.as_ref()?;
        let framed = h.framed.get_or_insert_with(|| frame(latest));
        Some((h.version, framed.clone()))
    }

    /// The version of `hive`'s state now (0: none heard).
    pub fn version(&self, hive: i64) -> u64 {
        self.hives.borrow().get(&hive).map_or(0, |h| h.version)
    }

    /// Wakes `token` through `posted` at every change of `hive` until the subscription drops.
    pub fn subscribe(self: &Rc<Self>, hive: i64, token: Token, posted: &Posted) -> Subscription {
        self.posted
            .borrow_mut()
            .get_or_insert_with(|| posted.clone());
        self.hives
            .borrow_mut()
            .entry(hive)
            .or_default()
            .followers
            .push(token);
        self.set_followers(self.followers.get() + 1);
        Subscription {
            bus: Rc::downgrade(self),
            hive,
            token,
        }
    }

    /// Connections following a hive on this worker.
    pub fn followers(&self) -> usize {
        self.followers.get()
    }

    /// Counts the streams and their events in `stats` from now on.
    pub fn count_in(&self, stats: Stats) {
        stats.streams(self.followers.get());
        let _ = self.stats.set(stats);
    }

    /// An event went out to a follower.
    pub fn sent(&self) {
        if let Some(s) = self.stats.get() {
            s.event();
        }
    }

    fn set_followers(&self, n: usize) {
        self.followers.set(n);
        if let Some(s) = self.stats.get() {
            s.streams(n);
        }
    }

    fn unsubscribe(&self, hive: i64, token: Token) {
        let mut hives = self.hives.borrow_mut();
        let Some(h) = hives.get_mut(&hive) else {
            return;
        };
        if let Some(i) = h.followers.iter().position(|t| *t == token) {
            h.followers.swap_remove(i);
            self.set_followers(self.followers.get() - 1);
        }
        if h.followers.is_empty() {
            h.followers = Vec::new();
            if h.latest.is_none() {
                hives.remove(&hive);
            }
        }
    }
}

/// A connection following a hive; dropped with it.
pub struct Subscription {
    bus: Weak<Bus>,
    hive: i64,
    token: Token,
}

impl Subscription {
    pub fn hive(&self) -> i64 {
        self.hive
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(bus) = self.bus.upgrade() {
            bus.unsubscribe(self.hive, self.token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_are_woken_once_per_change_and_read_the_newest() {
        let bus = Rc::new(Bus::new());
        let posted = Posted::new();
        let a = bus.subscribe(7, Token(1), &posted);
        let _b = bus.subscribe(7, Token(2), &posted);
        let _other = bus.subscribe(8, Token(3), &posted);
        assert_eq!(bus.followers(), 3);
        assert_eq!(bus.version(7), 0);
        assert!(bus.latest(7).is_none());
        bus.changed(7, Bytes::from_static(b"{\"occupancy\":1}"));
        bus.changed(7, Bytes::from_static(b"{\"occupancy\":2}"));
        bus.changed(7, Bytes::from_static(b"{\"occupancy\":2}"));
        assert_eq!(posted.taken(), vec![Token(1), Token(2), Token(1), Token(2)]);
        assert_eq!(
            bus.latest(7),
            Some((2, Bytes::from_static(b"{\"occupancy\":2}"))),
            "the same state twice is one change"
        );
        drop(a);
        assert_eq!(bus.followers(), 2);
        bus.changed(7, Bytes::from_static(b"{\"occupancy\":3}"));
        assert_eq!(posted.taken(), vec![Token(2)]);
    }

    #[test]
    fn a_state_is_framed_once_for_all_its_followers() {
        let bus = Rc::new(Bus::new());
        let made = Cell::new(0);
        let frame = |json: &[u8]| {
            made.set(made.get() + 1);
            Bytes::from([b"e:", json].concat())
        };
        assert!(bus.framed(1, frame).is_none(), "nothing heard");
        bus.changed(1, Bytes::from_static(b"a"));
        assert_eq!(bus.framed(1, frame), Some((1, Bytes::from_static(b"e:a"))));
        assert_eq!(bus.framed(1, frame), Some((1, Bytes::from_static(b"e:a"))));
        assert_eq!(made.get(), 1);
        bus.changed(1, Bytes::from_static(b"b"));
        assert_eq!(bus.framed(1, frame), Some((2, Bytes::from_static(b"e:b"))));
        assert_eq!(made.get(), 2);
    }

    #[test]
    fn a_hive_nobody_follows_keeps_only_its_state() {
        let bus = Rc::new(Bus::new());
        let posted = Posted::new();
        drop(bus.subscribe(9, Token(1), &posted));
        assert!(bus.hives.borrow().get(&9).is_none(), "nothing left of it");
        bus.changed(9, Bytes::from_static(b"x"));
        assert_eq!(bus.version(9), 1);
        assert!(posted.taken().is_empty());
    }
}
