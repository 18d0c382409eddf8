//! The links between the workers of a node, so that any client's PUBLISH reaches every
//! subscriber on any worker (DESIGN.md section 6), carried by the queue engine's ipc transport.
//!
//! The master makes a socket pair for every two workers (a new worker inherits its ends, the
//! running ones receive theirs over their command channel, as nginx passes its channels). Over
//! each link, pub/sub with subscription forwarding in ZeroMQ's XPUB manner, with MQTT filters in
//! place of prefixes: a worker tells its siblings each filter its clients start using and stop
//! using, and forwards a client's PUBLISH only to the siblings with a matching filter, once per
//! sibling whatever the number of its subscribers. Retained messages are replicated to every
//! sibling, and a sibling that joins receives the filters and the whole retained store.
//! Sessions move between workers over the same links. What travels is told in [`frame`].
//!
//! This module owns the link table (with each link's queue of frames), the siblings' filters,
//! the owner map of client identifiers, and who said they are linked to whom. It never touches
//! a session: the broker acts on the frames the link connections decode.
//!
//! A link that falls behind (a sibling that does not read) never makes a worker buffer without
//! bound: past [`MAX_BACKLOG`] frames, forwarded messages to it are dropped and counted.

pub mod frame;
mod peers;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;

use mio::Token;
use slab::Slab;

use crate::core::event::Posted;
use crate::core::queue::Msg;
use crate::mqtt::codec::QoS;
use crate::mqtt::router::ClientKey;
use crate::mqtt::session::Message;

pub use frame::{Frame, Stamp};
use peers::PeerFilters;

/// Frames queued for one sibling before forwarded messages to it are dropped.
pub const MAX_BACKLOG: usize = 65_536;

/// One sibling worker.
#[derive(Debug)]
pub struct Link {
    pub slot: usize,
    pub generation: u64,
    /// The link's connection in the event loop.
    pub token: Option<Token>,
    pub out: VecDeque<Out>,
    pub woken: bool,
    /// The link's socket could not take everything: output is waiting.
    pub backed_up: bool,
}

/// An encoded frame for a sibling, with the descriptor it carries (a client's socket).
#[derive(Debug)]
pub struct Out {
    pub msg: Msg,
    pub fd: Option<OwnedFd>,
}

/// This worker's side of every link.
pub struct Mesh {
    pub slot: usize,
    pub generation: u64,
    links: Slab<Link>,
    /// Siblings' filters, by link key.
    peers: PeerFilters,
    /// Scratch space for a forward: the wildcard routes, and the links to send to.
    routes: Vec<(ClientKey, QoS)>,
    targets: Vec<usize>,
    posted: Posted,
    barrier_seq: u64,
    /// What each sibling said it is linked to (worker slots).
    peer_links: HashMap<usize, Vec<u16>>,
    /// Links to the workers running when this one started whose filters are not all in yet.
    awaiting: Vec<usize>,
    /// The workers that own client identifiers, (slot, link key or `None` for this one), by
    /// slot: those of the newest generation. Kept as links come and go, so that a CONNECT
    /// finds its owner without building the list.
    members: Vec<(usize, Option<usize>)>,
}

impl Mesh {
    pub fn new(slot: usize, generation: u64, posted: Posted) -> Mesh {
        Mesh {
            slot,
            generation,
            links: Slab::new(),
            peers: PeerFilters::default(),
            routes: Vec::new(),
            targets: Vec::new(),
            posted,
            barrier_seq: 0,
            peer_links: HashMap::new(),
            awaiting: Vec::new(),
            members: vec![(slot, None)],
        }
    }

    pub fn links(&self) -> impl Iterator<Item = (usize, &Link)> {
        self.links.iter()
    }

    pub fn link(&self, key: usize) -> Option<&Link> {
        self.links.get(key)
    }

    pub fn link_mut(&mut self, key: usize) -> Option<&mut Link> {
        self.links.get_mut(key)
    }

    /// A new link to the sibling in `slot`, served by the loop's connection `token`.
    /// `initial`: the sibling was running when this worker started (and may have clients): no
    /// client is served here before its filters are in ([`Mesh::routing_ready`]).
    pub fn add(
        &mut self,
        slot: usize,
        generation: u64,
        token: Option<Token>,
        initial: bool,
    ) -> usize {
        let key = self.links.insert(Link {
            slot,
            generation,
            token,
            out: VecDeque::new(),
            woken: false,
            backed_up: false,
        });
        if initial {
            self.awaiting.push(key);
        }
        self.regroup();
        key
    }

    /// Recomputes the owners of client identifiers: the newest generation's workers by slot.
    fn regroup(&mut self) {
        let newest = self.newest();
        self.members.clear();
        let linked = self.links.iter().filter(|(_, l)| l.generation == newest);
        self.members.extend(linked.map(|(k, l)| (l.slot, Some(k))));
        if self.generation == newest {
            self.members.push((self.slot, None));
        }
        self.members.sort_unstable();
    }

    /// The link `key` is gone.
    pub fn remove(&mut self, key: usize) {
        self.peers.remove_link(key);
        self.links.try_remove(key);
        self.regroup();
        self.peer_links.remove(&key);
        self.awaiting.retain(|&k| k != key);
        self.announce();
    }

    /// Tells every sibling which workers this one is linked to.
    pub fn announce(&mut self) {
        let slots = self.links.iter().map(|(_, l)| l.slot as u16).collect();
        self.broadcast(&Frame::Links(slots));
    }

    /// What the sibling on link `key` said it is linked to.
    pub fn peer_linked(&mut self, key: usize, slots: Vec<u16>) {
        self.peer_links.insert(key, slots);
    }

    /// The sibling on link `key` sent its last snapshot filter.
    pub fn snapshot_done(&mut self, key: usize) {
        self.awaiting.retain(|&k| k != key);
    }

    /// Whether this worker has the filters of every sibling that was running when it started:
    /// before that, a client's PUBLISH here could miss a subscriber there.
    pub fn routing_ready(&self) -> bool {
        self.awaiting.is_empty()
    }

    /// Whether the newest workers are all linked to one another, as far as they said.
    pub fn complete(&self) -> bool {
        let newest = self.newest();
        let members: Vec<(usize, u16)> = self
            .links
            .iter()
            .filter(|(_, l)| l.generation == newest)
            .map(|(k, l)| (k, l.slot as u16))
            .collect();
        members.iter().all(|(k, me)| {
            let theirs = self.peer_links.get(k);
            members
                .iter()
                .filter(|(_, s)| s != me)
                .all(|(_, s)| theirs.is_some_and(|t| t.contains(s)))
        })
    }

    /// Queues a frame for sibling `key` and wakes its link; false if there is no such link.
    pub fn push(&mut self, key: usize, frame: &Frame) -> bool {
        self.push_out(
            key,
            Out {
                msg: frame.encode(),
                fd: None,
            },
        )
    }

    /// Queues a frame with the socket it carries for sibling `key`; false if there is no such
    /// link (the socket is closed).
    pub fn push_with_fd(&mut self, key: usize, frame: &Frame, fd: OwnedFd) -> bool {
        self.push_out(
            key,
            Out {
                msg: frame.encode(),
                fd: Some(fd),
            },
        )
    }

    fn push_out(&mut self, key: usize, out: Out) -> bool {
        let Some(l) = self.links.get_mut(key) else {
            return false;
        };
        l.out.push_back(out);
        if let (Some(t), false) = (l.token, l.woken) {
            l.woken = true;
            self.posted.post(t);
        }
        true
    }

    /// The generation of the newest workers this one knows (itself included).
    pub fn newest(&self) -> u64 {
        self.links
            .iter()
            .map(|(_, l)| l.generation)
            .fold(self.generation, u64::max)
    }

    /// Whether newer workers run beside this one (it is being replaced).
    pub fn has_successors(&self) -> bool {
        self.newest() > self.generation
    }

    /// The sibling that serves client `id`: client identifiers are spread over the workers of
    /// the newest generation by a hash, so that every connection of a client, and its
    /// persistent session, meet on one worker. `None`: this worker.
    pub fn owner(&self, id: &str) -> Option<usize> {
        let n = self.members.len() as u64;
        if n == 0 {
            return None;
        }
        self.members[(fnv1a(id.as_bytes()) % n) as usize].1
    }

    /// A newer worker to take a connection that has not named its client yet (it applies the
    /// owner map itself once the CONNECT comes), or `None` if there is none.
    pub fn any_successor(&self) -> Option<usize> {
        if self.has_successors() {
            self.members.first().and_then(|m| m.1)
        } else {
            None
        }
    }

    /// Where client `id` goes when this worker stops: its owner among the newer workers, or
    /// `None` if there are none (the server is stopping).
    pub fn successor(&self, id: &str) -> Option<usize> {
        if self.has_successors() {
            self.owner(id)
        } else {
            None
        }
    }

    /// Whether frames wait for a sibling: a stopping worker stays until they are sent.
    pub fn busy(&self) -> bool {
        self.links
            .iter()
            .any(|(_, l)| !l.out.is_empty() || l.backed_up)
    }

    /// Sends `frame` to every sibling (encoded once).
    pub fn broadcast(&mut self, frame: &Frame) {
        if self.links.is_empty() {
            return;
        }
        let msg = frame.encode();
        let keys: Vec<usize> = self.links.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.push_out(
                k,
                Out {
                    msg: msg.clone(),
                    fd: None,
                },
            );
        }
    }

    /// A filter this worker's clients started using.
    pub fn subscribe(&mut self, filter: &str) {
        self.broadcast(&Frame::Subscribe(filter.into()));
    }

    /// A filter no client of this worker uses any more.
    pub fn unsubscribe(&mut self, filter: &str) {
        self.broadcast(&Frame::Unsubscribe(filter.into()));
    }

    /// The sibling on link `key` has a client using `filter`.
    pub fn peer_subscribe(&mut self, key: usize, filter: &str) {
        self.peers.subscribe(key, filter);
    }

    /// The sibling on link `key` has no client using `filter` any more.
    pub fn peer_unsubscribe(&mut self, key: usize, filter: &str) {
        self.peers.unsubscribe(key, filter);
    }

    /// Asks every sibling to answer once it has applied what was sent to it before: returns
    /// the barrier's number and the links to wait for, or `None` without siblings.
    pub fn barrier(&mut self) -> Option<(u64, Vec<usize>)> {
        if self.links.is_empty() {
            return None;
        }
        self.barrier_seq += 1;
        let seq = self.barrier_seq;
        let keys: Vec<usize> = self.links.iter().map(|(k, _)| k).collect();
        self.broadcast(&Frame::Barrier(seq));
        Some((seq, keys))
    }

    /// A retained message (or removal) published here, for every sibling's replica.
    pub fn retained(&mut self, msg: &Message, stamp: Stamp) {
        self.broadcast(&Frame::Retained {
            msg: msg.clone(),
            stamp,
        });
    }

    /// Sends a client's message to the siblings whose clients subscribed; returns how many
    /// siblings it was dropped for.
    pub fn forward(&mut self, msg: &Message) -> usize {
        if self.links.is_empty() {
            return 0;
        }
        let mut targets = std::mem::take(&mut self.targets);
        self.peers.route(&msg.topic, &mut self.routes, &mut targets);
        let mut dropped = 0;
        if !targets.is_empty() {
            let frame = frame::encode_publish(msg);
            for &k in &targets {
                if self
                    .links
                    .get(k)
                    .is_some_and(|l| l.out.len() >= MAX_BACKLOG)
                {
                    dropped += 1;
                    continue;
                }
                self.push_out(
                    k,
                    Out {
                        msg: frame.clone(),
                        fd: None,
                    },
                );
            }
        }
        self.targets = targets;
        dropped
    }
}

/// FNV-1a: the same in every process (the standard library's hasher is seeded per process).
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}
