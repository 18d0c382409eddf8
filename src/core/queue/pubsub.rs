//! Publish/subscribe with topic prefixes, subscription forwarding and conflation.
//!
//! Owns the publisher's per-subscriber state (its link, the prefixes it asked for, what waits
//! for it) and the subscriber's own prefix list. A subscriber forwards each subscription
//! upstream (`[1] prefix` to subscribe, `[0] prefix` to unsubscribe, ZeroMQ's XPUB wire form),
//! so the publisher sends a subscriber only what matches: a worker receives only the topics its
//! clients want. A published message is `[topic length][topic][body]` ([`message`]).
//!
//! A subscriber that falls behind (its link at the high-water mark) never makes the publisher
//! wait or buffer without bound: in conflating mode only the newest message per topic is kept
//! for it (the newest occupancy per hive) and delivered when it catches up; otherwise the
//! message is dropped for that subscriber and counted in the [`Published`] report, never
//! silently. Never blocks.

use std::collections::{HashMap, VecDeque};
use std::io;

use super::error::{RecvError, SendError};
use super::link::Link;
use super::Msg;

/// Topics longer than this cannot be framed.
pub const MAX_TOPIC: usize = u8::MAX as usize;

/// Frames a pub/sub message: the topic (at most [`MAX_TOPIC`] bytes) and the body.
pub fn message(topic: &[u8], body: &[u8]) -> Option<Msg> {
    let len = u8::try_from(topic.len()).ok()?;
    Some(Msg::from_parts(&[&[len], topic, body]))
}

/// The topic of a framed message (empty if the message is not framed).
pub fn topic(msg: &Msg) -> &[u8] {
    let bytes = msg.as_bytes();
    match bytes.split_first() {
        Some((&len, rest)) if rest.len() >= usize::from(len) => &rest[..usize::from(len)],
        _ => &[],
    }
}

/// The body of a framed message.
pub fn body(msg: &Msg) -> &[u8] {
    let bytes = msg.as_bytes();
    let skip = 1 + topic(msg).len();
    bytes.get(skip..).unwrap_or(&[])
}

/// What one publish did, per subscriber outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Subscribers the message was written to.
    pub delivered: usize,
    /// Subscribers that are behind: the message waits for them as the newest of its topic.
    pub conflated: usize,
    /// Subscribers that are behind and not conflating: the message was dropped for them.
    pub dropped: usize,
}

struct Subscriber<L> {
    link: L,
    prefixes: Vec<Vec<u8>>,
    /// Conflating: the newest message per topic, in the order the topics fell behind.
    pending: Option<Conflated>,
    closed: bool,
}

#[derive(Default)]
struct Conflated {
    order: VecDeque<Box<[u8]>>,
    newest: HashMap<Box<[u8]>, Msg>,
}

impl<L: Link> Subscriber<L> {
    fn wants(&self, topic: &[u8]) -> bool {
        self.prefixes.iter().any(|p| topic.starts_with(p))
    }

    /// Writes what waits, oldest topic first; false if the link is still full.
    fn drain_pending(&mut self) -> bool {
        let Some(pending) = self.pending.as_mut() else {
            return true;
        };
        while let Some(key) = pending.order.pop_front() {
            let msg = pending
                .newest
                .remove(&key)
                .expect("every queued topic has its message");
            match self.link.write(msg) {
                Ok(()) => {}
                Err(SendError::WouldBlock(msg)) => {
                    pending.newest.insert(key.clone(), msg);
                    pending.order.push_front(key);
                    return false;
                }
                Err(_) => {
                    self.closed = true;
                    return true;
                }
            }
        }
        true
    }

    fn conflate(pending: &mut Conflated, msg: Msg) {
        let key = topic(&msg);
        if let Some(old) = pending.newest.get_mut(key) {
            *old = msg;
        } else {
            let key: Box<[u8]> = key.into();
            pending.order.push_back(key.clone());
            pending.newest.insert(key, msg);
        }
    }

    fn publish(&mut self, msg: &Msg, out: &mut Published) {
        if let Some(pending) = self.pending.as_mut() {
            if !pending.order.is_empty() {
                Self::conflate(pending, msg.clone());
                out.conflated += 1;
                return;
            }
        }
        match self.link.write(msg.clone()) {
            Ok(()) => out.delivered += 1,
            Err(SendError::WouldBlock(msg)) => match self.pending.as_mut() {
                Some(pending) => {
                    Self::conflate(pending, msg);
                    out.conflated += 1;
                }
                None => out.dropped += 1,
            },
            Err(_) => {
                self.closed = true;
                out.dropped += 1;
            }
        }
    }

    /// Applies the subscriptions the subscriber forwarded.
    fn read_subscriptions(&mut self) -> Result<(), RecvError> {
        loop {
            let msg = match self.link.try_recv() {
                Ok(msg) => msg,
                Err(RecvError::WouldBlock) => return Ok(()),
                Err(RecvError::Closed | RecvError::Discarded(_)) => {
                    self.closed = true;
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            match msg.as_bytes().split_first() {
                Some((1, prefix)) => self.prefixes.push(prefix.to_vec()),
                Some((0, prefix)) => {
                    if let Some(i) = self.prefixes.iter().position(|p| p == prefix) {
                        self.prefixes.swap_remove(i);
                    }
                }
                _ => {
                    return Err(RecvError::Io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "subscription message is neither [0] nor [1] + prefix",
                    )))
                }
            }
        }
    }
}

/// The publishing side.
pub struct Pub<L: Link> {
    subs: Vec<Subscriber<L>>,
}

impl<L: Link> Default for Pub<L> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: Link> Pub<L> {
    /// A publisher with no subscribers yet.
    pub fn new() -> Self {
        Pub { subs: Vec::new() }
    }

    /// Adds a subscriber link. `conflate`: keep only the newest message per topic while it is
    /// behind, instead of dropping.
    pub fn attach(&mut self, link: L, conflate: bool) -> usize {
        let pending = conflate.then(Conflated::default);
        self.subs.push(Subscriber {
            link,
            prefixes: Vec::new(),
            pending,
            closed: false,
        });
        self.subs.len() - 1
    }

    /// The link of subscriber `i`, to register its fds in an event loop.
    pub fn link_mut(&mut self, i: usize) -> Option<&mut L> {
        self.subs.get_mut(i).map(|s| &mut s.link)
    }

    /// Subscribers still connected.
    pub fn subscribers(&self) -> usize {
        self.subs.iter().filter(|s| !s.closed).count()
    }

    /// Reads forwarded subscriptions and writes what waits for subscribers that caught up.
    /// Call it when a subscriber link turns readable or writable.
    pub fn pump(&mut self) -> io::Result<()> {
        for sub in self.subs.iter_mut().filter(|s| !s.closed) {
            sub.read_subscriptions().map_err(|e| match e {
                RecvError::Io(e) => e,
                other => io::Error::other(other.to_string()),
            })?;
            sub.drain_pending();
            sub.link.flush()?;
        }
        Ok(())
    }

    /// Sends a framed message ([`message`]) to every subscriber whose prefixes match its
    /// topic, and flushes. Reads forwarded subscriptions first.
    pub fn publish(&mut self, msg: &Msg) -> io::Result<Published> {
        let mut out = Published::default();
        let topic = topic(msg);
        for sub in self.subs.iter_mut().filter(|s| !s.closed) {
            // Subscriptions that arrived are honoured before this message is routed.
            let _ = sub.read_subscriptions();
            if sub.closed || !sub.wants(topic) {
                continue;
            }
            sub.drain_pending();
            sub.publish(msg, &mut out);
            sub.link.flush()?;
        }
        Ok(out)
    }

    /// Prefixes subscriber `i` has forwarded so far.
    pub fn subscriptions(&self, i: usize) -> usize {
        self.subs.get(i).map_or(0, |s| s.prefixes.len())
    }

    /// Messages waiting in conflation for subscriber `i`.
    pub fn pending(&self, i: usize) -> usize {
        self.subs
            .get(i)
            .and_then(|s| s.pending.as_ref())
            .map_or(0, |p| p.order.len())
    }
}

/// The subscribing side.
pub struct Sub<L: Link> {
    links: Vec<L>,
    prefixes: Vec<Vec<u8>>,
    next: usize,
}

impl<L: Link> Default for Sub<L> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: Link> Sub<L> {
    /// A subscriber with no links and no subscriptions.
    pub fn new() -> Self {
        Sub {
            links: Vec::new(),
            prefixes: Vec::new(),
            next: 0,
        }
    }

    /// Adds a publisher link and forwards every current subscription to it.
    pub fn attach(&mut self, mut link: L) -> Result<(), SendError<Msg>> {
        for prefix in &self.prefixes {
            link.send(Msg::from_parts(&[&[1], prefix]))?;
        }
        self.links.push(link);
        Ok(())
    }

    /// The links, to register their fds in an event loop.
    pub fn links_mut(&mut self) -> &mut [L] {
        &mut self.links
    }

    /// Subscribes to topics starting with `prefix` (empty: everything), upstream too.
    pub fn subscribe(&mut self, prefix: &[u8]) -> Result<(), SendError<Msg>> {
        self.prefixes.push(prefix.to_vec());
        self.forward(1, prefix)
    }

    /// Drops one subscription to `prefix`, upstream too.
    pub fn unsubscribe(&mut self, prefix: &[u8]) -> Result<(), SendError<Msg>> {
        if let Some(i) = self.prefixes.iter().position(|p| p == prefix) {
            self.prefixes.swap_remove(i);
        }
        self.forward(0, prefix)
    }

    fn forward(&mut self, op: u8, prefix: &[u8]) -> Result<(), SendError<Msg>> {
        for link in &mut self.links {
            link.send(Msg::from_parts(&[&[op], prefix]))?;
        }
        Ok(())
    }

    /// The next message matching a subscription. Messages still in flight from before an
    /// unsubscribe are filtered out here.
    pub fn try_recv(&mut self) -> Result<Msg, RecvError> {
        loop {
            let n = self.links.len();
            let mut closed = 0;
            let mut got = None;
            for i in 0..n {
                let at = (self.next + i) % n;
                match self.links[at].try_recv() {
                    Ok(msg) => {
                        self.next = (at + 1) % n;
                        got = Some(msg);
                        break;
                    }
                    Err(RecvError::WouldBlock) => {}
                    Err(RecvError::Closed | RecvError::Discarded(_)) => closed += 1,
                    Err(e) => return Err(e),
                }
            }
            match got {
                Some(msg) if self.prefixes.iter().any(|p| topic(&msg).starts_with(p)) => {
                    return Ok(msg)
                }
                Some(_) => continue,
                None if closed == n => return Err(RecvError::Closed),
                None => return Err(RecvError::WouldBlock),
            }
        }
    }
}
