//! The links between the workers of a node, so that any client's PUBLISH reaches every
//! subscriber on any worker (DESIGN.md section 6), carried by the queue engine's ipc transport.
//!
//! The master makes a socket pair for every two workers (a new worker inherits its ends, the
//! running ones receive theirs over their command channel, as nginx passes its channels). Over
//! each link, pub/sub with subscription forwarding in ZeroMQ's XPUB manner, with MQTT filters in
//! place of prefixes: a worker tells its siblings each filter its clients start using (`S`) and
//! stop using (`U`), and forwards a client's PUBLISH only to the siblings with a matching
//! filter (`P`), once per sibling whatever the number of its subscribers. Retained messages are
//! replicated to every sibling (`R`, with a Lamport stamp, so the newest wins everywhere), and a
//! sibling that joins receives the filters and the whole retained store. Sessions move between
//! workers over the same links ([`crate::mqtt::handoff`]).
//!
//! A link that falls behind (a sibling that does not read) never makes a worker buffer without
//! bound: past [`MAX_BACKLOG`] frames, forwarded messages to it are dropped and counted.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use mio::{Interest, Token};
use slab::Slab;

use crate::core::event::{Conn, Cx, Next, Posted, Ready};
use crate::core::queue::{IpcChannel, Msg, RecvError, SendError};
use crate::log;
use crate::mqtt::broker::{Broker, Stamp};
use crate::mqtt::codec::QoS;
use crate::mqtt::router::{ClientKey, SubscriptionTree};
use crate::mqtt::session::Message;

/// Frames queued for one sibling before forwarded messages to it are dropped.
pub const MAX_BACKLOG: usize = 65_536;

/// One sibling worker.
#[derive(Debug)]
pub struct Link {
    pub slot: usize,
    pub generation: u64,
    /// The link's connection in the event loop.
    pub token: Option<Token>,
    pub out: VecDeque<Frame>,
    pub woken: bool,
    /// The link's socket could not take everything: output is waiting.
    pub backed_up: bool,
}

/// A frame for a sibling, with the descriptor it carries (a client's socket being moved).
#[derive(Debug)]
pub struct Frame {
    pub msg: Msg,
    pub fd: Option<OwnedFd>,
}

/// This worker's side of every link.
pub struct Mesh {
    pub slot: usize,
    pub generation: u64,
    links: Slab<Link>,
    /// Siblings' filters; the subscriber key is the link's key.
    peer_tree: SubscriptionTree,
    routes: Vec<(ClientKey, QoS)>,
    posted: Posted,
    barrier_seq: u64,
    /// What each sibling said it is linked to (worker slots).
    peer_links: std::collections::HashMap<usize, Vec<u16>>,
    /// Links to the workers running when this one started whose filters are not all in yet.
    pub awaiting: Vec<usize>,
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
            peer_tree: SubscriptionTree::new(),
            routes: Vec::new(),
            posted,
            barrier_seq: 0,
            peer_links: std::collections::HashMap::new(),
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

    pub(crate) fn add(&mut self, slot: usize, generation: u64) -> usize {
        let key = self.links.insert(Link {
            slot,
            generation,
            token: None,
            out: VecDeque::new(),
            woken: false,
            backed_up: false,
        });
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

    fn remove(&mut self, key: usize) {
        self.peer_tree.remove_client(ClientKey(key as u32));
        self.links.try_remove(key);
        self.regroup();
        self.peer_links.remove(&key);
        self.awaiting.retain(|&k| k != key);
        self.announce();
    }

    /// Tells every sibling which workers this one is linked to (`L` + slots).
    fn announce(&mut self) {
        let mut frame = vec![b'L'];
        for (_, l) in &self.links {
            frame.extend_from_slice(&(l.slot as u16).to_le_bytes());
        }
        self.broadcast(&Msg::new(&frame));
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

    /// Queues a frame for sibling `key` and wakes its link.
    pub fn push(&mut self, key: usize, msg: Msg) {
        self.push_frame(key, Frame { msg, fd: None });
    }

    /// Queues a frame with a descriptor for sibling `key`; false if there is no such link.
    pub fn push_frame(&mut self, key: usize, frame: Frame) -> bool {
        let Some(l) = self.links.get_mut(key) else {
            return false;
        };
        l.out.push_back(frame);
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
        if self.newest() > self.generation {
            self.members.first().and_then(|m| m.1)
        } else {
            None
        }
    }

    /// Where client `id` goes when this worker stops: its owner among the newer workers, or
    /// `None` if there are none (the server is stopping).
    pub fn successor(&self, id: &str) -> Option<usize> {
        if self.newest() > self.generation {
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

    fn broadcast(&mut self, frame: &Msg) {
        let keys: Vec<usize> = self.links.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.push(k, frame.clone());
        }
    }

    /// A filter this worker's clients started using.
    pub fn subscribe(&mut self, filter: &str) {
        self.broadcast(&Msg::from_parts(&[b"S", filter.as_bytes()]));
    }

    /// A filter no client of this worker uses any more.
    pub fn unsubscribe(&mut self, filter: &str) {
        self.broadcast(&Msg::from_parts(&[b"U", filter.as_bytes()]));
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
        for &k in &keys {
            self.push(k, Msg::from_parts(&[b"B", &seq.to_le_bytes()]));
        }
        Some((seq, keys))
    }

    /// A retained message (or removal) published here, for every sibling's replica.
    pub fn retained(&mut self, msg: &Message, stamp: Stamp) {
        self.broadcast(&retained_frame(msg, stamp));
    }

    /// Sends a client's message to the siblings whose clients subscribed; returns how many
    /// siblings it was dropped for.
    pub fn forward(&mut self, msg: &Message) -> usize {
        if self.links.is_empty() {
            return 0;
        }
        let mut routes = std::mem::take(&mut self.routes);
        self.peer_tree.route(&msg.topic, &mut routes);
        let mut dropped = 0;
        if !routes.is_empty() {
            let frame = publish_frame(msg);
            for &(ClientKey(k), _) in &routes {
                let k = k as usize;
                if self
                    .links
                    .get(k)
                    .is_some_and(|l| l.out.len() >= MAX_BACKLOG)
                {
                    dropped += 1;
                    continue;
                }
                self.push(k, frame.clone());
            }
        }
        self.routes = routes;
        dropped
    }
}

/// FNV-1a: the same in every process (the standard library's hasher is seeded per process).
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn publish_frame(msg: &Message) -> Msg {
    let flags = [msg.qos as u8 | u8::from(msg.retain) << 2];
    let len = (msg.topic.len() as u16).to_le_bytes();
    Msg::from_parts(&[b"P", &flags, &len, msg.topic.as_bytes(), &msg.payload])
}

/// `D` + client id + a message: for a session that moved to the receiving worker.
pub fn directed_frame(id: &str, msg: &Message, qos: QoS, retain: bool) -> Msg {
    let flags = [qos as u8 | u8::from(retain) << 2];
    let idlen = (id.len() as u16).to_le_bytes();
    let len = (msg.topic.len() as u16).to_le_bytes();
    Msg::from_parts(&[
        b"D",
        &idlen,
        id.as_bytes(),
        &flags,
        &len,
        msg.topic.as_bytes(),
        &msg.payload,
    ])
}

fn retained_frame(msg: &Message, stamp: Stamp) -> Msg {
    let flags = [msg.qos as u8 | 4];
    let len = (msg.topic.len() as u16).to_le_bytes();
    Msg::from_parts(&[
        b"R",
        &stamp.0.to_le_bytes(),
        &stamp.1.to_le_bytes(),
        &flags,
        &len,
        msg.topic.as_bytes(),
        &msg.payload,
    ])
}

/// Reads `flags, topic length, topic, payload`.
fn parse_message(b: &[u8]) -> Option<Message> {
    let (&flags, rest) = b.split_first()?;
    let len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let topic = std::str::from_utf8(rest.get(2..2 + len)?).ok()?;
    let payload = rest.get(2 + len..)?;
    Some(Message {
        topic: Arc::from(topic),
        payload: Bytes::copy_from_slice(payload),
        qos: QoS::from_bits(flags & 3)?,
        retain: flags & 4 != 0,
    })
}

/// What a frame from a sibling asks of this worker; `None`: it does not parse.
fn apply(
    broker: &mut Broker,
    key: usize,
    frame: &[u8],
    fds: Vec<OwnedFd>,
    now_ms: u64,
) -> Option<()> {
    let (&kind, body) = frame.split_first()?;
    match kind {
        b'S' => {
            let filter = std::str::from_utf8(body).ok()?;
            broker
                .mesh
                .peer_tree
                .subscribe(ClientKey(key as u32), filter, QoS::ExactlyOnce);
        }
        b'U' => {
            let filter = std::str::from_utf8(body).ok()?;
            broker
                .mesh
                .peer_tree
                .unsubscribe(ClientKey(key as u32), filter);
        }
        b'P' => {
            let msg = parse_message(body)?;
            broker.publish_from_peer(&msg, key, now_ms);
        }
        b'Y' => {
            broker.mesh.awaiting.retain(|&k| k != key);
            broker.routing_ready_check();
        }
        b'L' => {
            let slots = body
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            broker.mesh.peer_links.insert(key, slots);
            broker.tick(now_ms);
        }
        b'D' => {
            let n = u16::from_le_bytes(body.get(..2)?.try_into().ok()?) as usize;
            let id = std::str::from_utf8(body.get(2..2 + n)?).ok()?;
            let msg = parse_message(body.get(2 + n..)?)?;
            broker.deliver_moved(id, &msg, msg.qos, msg.retain, now_ms);
        }
        b'F' | b'f' | b'G' | b'W' | b'J' | b'K' | b'k' => {
            broker.switch_frame(key, kind, body, now_ms)?;
        }
        b'B' => {
            let seq = body.get(..8)?;
            broker.mesh.push(key, Msg::from_parts(&[b"A", seq]));
        }
        b'A' => {
            let seq = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
            broker.barrier_passed(seq, key, now_ms);
        }
        b'R' => {
            let lamport = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
            let slot = u16::from_le_bytes(body.get(8..10)?.try_into().ok()?);
            let msg = parse_message(body.get(10..)?)?;
            broker.retained_from_peer(&msg, (lamport, slot));
        }
        _ => return crate::mqtt::handoff::apply(broker, key, kind, body, fds, now_ms),
    }
    Some(())
}

/// A link to a sibling as a connection of the event loop.
pub struct PeerConn {
    broker: Rc<RefCell<Broker>>,
    key: usize,
    ch: IpcChannel,
}

/// Adds the link to sibling `slot` of `generation` over `fd` to the event loop (posted: it runs
/// after the current events), and sends the sibling this worker's filters and retained store.
/// `initial`: a link this worker inherited at its start, to a worker that was already running
/// (and may have clients): this worker serves no client before that worker's filters are in.
pub fn adopt(
    broker: &Rc<RefCell<Broker>>,
    posted: &Posted,
    slot: usize,
    generation: u64,
    fd: OwnedFd,
    initial: bool,
) {
    let broker = Rc::clone(broker);
    posted.adopt(
        Box::new(move |cx: &mut Cx<'_>| {
            let mut ch = IpcChannel::from_fd(fd);
            if let Err(e) =
                cx.registry()
                    .register(&mut ch, cx.token(), Interest::READABLE | Interest::WRITABLE)
            {
                log!(
                    Crit,
                    "epoll_ctl(ADD) for the link to worker slot {slot} failed ({e})"
                );
                return None;
            }
            let key = {
                let mut b = broker.borrow_mut();
                let key = b.mesh.add(slot, generation);
                b.mesh.links[key].token = Some(cx.token());
                let mut frames = Vec::new();
                b.filters(|f| frames.push(Msg::from_parts(&[b"S", f.as_bytes()])));
                b.retained_snapshot(|m, s| frames.push(retained_frame(m, s)));
                for f in frames {
                    b.mesh.push(key, f);
                }
                // The end of the snapshot: the sibling has every filter of this worker.
                b.mesh.push(key, Msg::new(b"Y"));
                if initial {
                    b.mesh.awaiting.push(key);
                }
                b.mesh.announce();
                b.joined(key, cx.now_ms());
                key
            };
            log!(
                Info,
                "linked to worker slot {slot} (generation {generation})"
            );
            Some(Box::new(PeerConn { broker, key, ch }) as Box<dyn Conn>)
        }),
        false,
    );
}

impl PeerConn {
    fn gone(&mut self, why: &str, now_ms: u64) -> Next {
        let mut b = self.broker.borrow_mut();
        if let Some(l) = b.mesh.link(self.key) {
            log!(Info, "link to worker slot {} closed ({why})", l.slot);
        }
        b.left(self.key, now_ms);
        b.mesh.remove(self.key);
        b.routing_ready_check();
        Next::Close
    }
}

impl Conn for PeerConn {
    fn ready(&mut self, cx: &mut Cx<'_>, _ev: Ready) -> Next {
        let now = cx.now_ms();
        loop {
            match self.ch.try_recv_with_fds() {
                Ok((msg, fds)) => {
                    let mut b = self.broker.borrow_mut();
                    if apply(&mut b, self.key, msg.as_bytes(), fds, now).is_none() {
                        drop(b);
                        return self.gone("a frame that does not parse", now);
                    }
                }
                Err(RecvError::WouldBlock) => break,
                Err(RecvError::Closed | RecvError::Discarded(_)) => {
                    return self.gone("closed", now)
                }
                Err(e) => return self.gone(&e.to_string(), now),
            }
        }
        let mut b = self.broker.borrow_mut();
        let Some(link) = b.mesh.link_mut(self.key) else {
            return Next::Close;
        };
        link.woken = false;
        while let Some(frame) = link.out.pop_front() {
            let res = match &frame.fd {
                Some(fd) => {
                    use std::os::fd::AsFd;
                    self.ch.send_with_fds(frame.msg.clone(), &[fd.as_fd()])
                }
                None => self.ch.write(frame.msg.clone()),
            };
            match res {
                Ok(()) => {}
                Err(SendError::WouldBlock(_)) => {
                    link.out.push_front(frame);
                    break;
                }
                Err(e) => {
                    drop(b);
                    return self.gone(&format!("{e:?}"), now);
                }
            }
        }
        match self.ch.flush() {
            Ok(()) => {
                link.backed_up = !link.out.is_empty();
                Next::Keep
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                link.backed_up = true;
                Next::Keep
            }
            Err(e) => {
                drop(b);
                self.gone(&e.to_string(), now)
            }
        }
    }

    fn timeout(&mut self, _cx: &mut Cx<'_>) -> Next {
        Next::Keep
    }

    fn drain(&mut self, _cx: &mut Cx<'_>) -> Next {
        // A link outlives the worker's clients: the last thing a stopping worker does is move
        // its sessions over it. The loop drops it when the worker exits.
        Next::Keep
    }
}
