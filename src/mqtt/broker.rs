//! One worker's broker: sessions, subscriptions and retained messages, and what each packet
//! does to them (MQTT 3.1.1 sections 3 and 4).
//!
//! Owns every session of the clients this worker serves (connected or not), the worker's
//! subscription tree, its replica of the node's retained messages, the ingest hook, and the
//! [`Mesh`] to the sibling workers. Connections hand it whole, valid packets and write out
//! what it leaves in their session's output buffer; links to siblings hand it their frames.
//! It never touches a socket, so every rule here is tested without one.
//!
//! Identity of a session across its connections: a slab key plus an epoch, so a connection whose
//! session was taken over or discarded finds out instead of acting on a stranger's.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use mio::Token;
use slab::Slab;

use crate::core::event::Posted;
use crate::log;
use crate::mqtt::auth::{Authority, Op, Refusal};
use crate::mqtt::codec::{
    self, ConnackCode, Connect, Packet, Publish, QoS, Subscribe, Unsubscribe,
};
use crate::mqtt::ingest::{Ack, Ingest, Origin};
use crate::mqtt::mesh::Mesh;
use crate::mqtt::router::Unsubscribed;
use crate::mqtt::router::{ClientKey, Retained, RetainedStore, Subscribed, SubscriptionTree};
use crate::mqtt::session::{Flight, HeldAck, Inflight, Message, Session};
use crate::mqtt::stats::{Drop, Stats};

/// Per-client limits, from `[mqtt]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// QoS 1 and 2 messages sent and not yet acknowledged, per client.
    pub max_inflight: usize,
    /// Messages queued behind the in-flight window or while offline, per session.
    pub max_queued: usize,
    /// Bytes waiting for a client's socket past which QoS 0 messages to it are dropped.
    pub max_out_bytes: usize,
    /// Seconds; caps a client's non-zero keep-alive.
    pub max_keepalive: u16,
    /// A client that leaves a QoS 1/2 message unacknowledged, or its socket unwritable, this
    /// long is disconnected.
    pub stall_ms: u64,
    /// `mqtt.max_packet_size`, for connections made here.
    pub max_packet_size: usize,
}

impl Limits {
    /// The limits `[mqtt]` sets.
    pub fn from_conf(c: &crate::mqtt::conf::MqttConf) -> Limits {
        Limits {
            max_inflight: c.max_inflight as usize,
            max_queued: c.max_queued as usize,
            max_out_bytes: c.max_outbound.0 as usize,
            max_keepalive: c.max_keepalive.0.as_secs().min(u64::from(u16::MAX)) as u16,
            stall_ms: c.stall_timeout.0.as_millis() as u64,
            max_packet_size: c.max_packet_size.0 as usize,
        }
    }
}

/// The defaults of `[mqtt]`.
impl Default for Limits {
    fn default() -> Limits {
        Limits::from_conf(&crate::mqtt::conf::MqttConf::default())
    }
}

/// A session as a connection holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef {
    pub sid: usize,
    pub epoch: u64,
}

/// What a successful CONNECT gave the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    pub session: SessionRef,
    pub session_present: bool,
    /// Seconds after which silence ends the connection (1.5 x the effective keep-alive), or 0.
    pub keep_alive: u16,
}

/// Why a connection must close after a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    /// DISCONNECT: a normal end, the will is discarded ([MQTT-3.14.4-3]).
    Disconnect,
    /// A protocol violation: the will is published ([MQTT-3.1.2-8]).
    Violation(&'static str),
}

/// Lamport stamp of a retained message: (counter, worker slot). Every worker keeps the whole
/// retained store; a change carries its stamp, and the largest stamp wins everywhere, in
/// whatever order the changes arrive.
pub type Stamp = (u64, u16);

/// Longest a stopping worker waits for the newer workers to be linked before it moves its
/// clients anyway.
pub const MESH_WAIT_MS: u64 = 1000;

/// What waits for the siblings to have this worker's latest filters.
enum Waiter {
    Suback(Suback),
}

/// A SUBACK waiting for the siblings to have its filters.
struct Suback {
    session: SessionRef,
    pkid: u16,
    codes: Vec<u8>,
    granted: Vec<(String, QoS)>,
}

pub struct Broker {
    pub limits: Limits,
    auth: Rc<dyn Authority>,
    hook: Box<dyn Ingest>,
    sessions: Slab<Session>,
    by_id: HashMap<Arc<str>, usize>,
    tree: SubscriptionTree,
    retained: RetainedStore,
    stamps: HashMap<Arc<str>, Stamp>,
    lamport: u64,
    pub mesh: Mesh,
    posted: Posted,
    pub stats: Stats,
    routes: Vec<(ClientKey, QoS)>,
    next_epoch: u64,
    next_ticket: u64,
    tickets: HashMap<u64, SessionRef>,
    /// What waits for siblings, by barrier: the links yet to answer.
    barriers: HashMap<u64, (Vec<usize>, Waiter)>,
    /// Stubs of sessions moved to a sibling, by client id.
    moved: HashMap<Arc<str>, usize>,
    /// Clients moved here whose earlier messages may still be on their way from the old worker
    /// through siblings: the slots yet to say they are past them, and the connections waiting.
    gates: HashMap<Arc<str>, (Vec<u16>, Vec<Token>)>,
    /// Connections waiting for this worker to have every running sibling's filters.
    unready: Vec<Token>,
    /// The worker is stopping and its sessions wait for the newer workers to be linked.
    drain_since: Option<u64>,
    anonymous: u64,
    slot: usize,
    /// The broker's own cell, for connections it makes (sockets handed over by siblings).
    pub me: Weak<RefCell<Broker>>,
}

impl Broker {
    pub fn new(
        limits: Limits,
        auth: Rc<dyn Authority>,
        hook: Box<dyn Ingest>,
        posted: Posted,
        stats: Stats,
        (slot, generation): (usize, u64),
    ) -> Rc<RefCell<Broker>> {
        let mesh = Mesh::new(slot, generation, posted.clone());
        let b = Rc::new(RefCell::new(Broker {
            limits,
            auth,
            hook,
            sessions: Slab::new(),
            by_id: HashMap::new(),
            tree: SubscriptionTree::new(),
            retained: RetainedStore::new(),
            stamps: HashMap::new(),
            lamport: 0,
            mesh,
            posted,
            stats,
            routes: Vec::new(),
            next_epoch: 1,
            next_ticket: 1,
            tickets: HashMap::new(),
            barriers: HashMap::new(),
            moved: HashMap::new(),
            gates: HashMap::new(),
            unready: Vec::new(),
            drain_since: None,
            anonymous: 0,
            slot,
            me: Weak::new(),
        }));
        b.borrow_mut().me = Rc::downgrade(&b);
        b
    }

    #[cfg(test)]
    pub fn stats_zone(&self) -> crate::core::shm::Zone {
        self.stats.zone()
    }

    /// Whether this worker has the filters of every sibling that was running when it started:
    /// before that, a client's PUBLISH here could miss a subscriber there.
    pub fn routing_ready(&self) -> bool {
        self.mesh.awaiting.is_empty()
    }

    /// Connection `token` waits for [`Broker::routing_ready`]; it is woken then.
    pub fn wait_ready(&mut self, token: Token) {
        if !self.unready.contains(&token) {
            self.unready.push(token);
        }
    }

    /// Wakes the waiting connections once the siblings' filters are all in.
    pub fn routing_ready_check(&mut self) {
        if self.routing_ready() {
            for t in self.unready.drain(..) {
                self.posted.post(t);
            }
        }
    }

    pub fn posted(&self) -> &Posted {
        &self.posted
    }

    /// The sibling the session of `r` is to move to, if any.
    pub fn moving(&self, r: SessionRef) -> Option<usize> {
        self.session(r).and_then(|s| s.move_to)
    }

    /// Sibling `key` joined. When it is of the newest generation (a worker started or
    /// restarted beside this one), the clients the owner map now gives it move there: offline
    /// sessions at once, live ones through their connections.
    pub fn joined(&mut self, key: usize, _now_ms: u64) {
        let newest = self.mesh.newest();
        if self.mesh.link(key).is_none_or(|l| l.generation != newest)
            || self.mesh.generation != newest
        {
            return;
        }
        let owned: Vec<usize> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.moved_to.is_none() && self.mesh.owner(&s.client_id) == Some(key))
            .map(|(sid, _)| sid)
            .collect();
        for sid in owned {
            self.send_away(sid, key);
        }
    }

    /// Sibling `key` is gone: nothing moves to it any more, no SUBACK waits for it.
    pub fn left(&mut self, key: usize, now_ms: u64) {
        for (_, s) in self.sessions.iter_mut() {
            if s.move_to == Some(key) {
                s.move_to = None;
            }
        }
        let seqs: Vec<u64> = self.barriers.keys().copied().collect();
        for seq in seqs {
            self.barrier_passed(seq, key, now_ms);
        }
        self.switch_link_gone(key, now_ms);
    }

    /// The worker is stopping. With newer workers to take its clients, every session moves to
    /// its owner among them (live ones with their connections), once the newer workers are
    /// linked to one another: until then one of them could not yet route to another, and a
    /// message for a moved client could fall between them. Without newer workers (the server is
    /// stopping) the connections end themselves.
    pub fn drain(&mut self, now_ms: u64) {
        if self.mesh.newest() > self.mesh.generation {
            self.drain_since = Some(now_ms);
            self.tick(now_ms);
        }
    }

    /// Called every loop turn: moves the sessions of a stopping worker once the newer workers
    /// are linked (or after [`MESH_WAIT_MS`], linked or not).
    pub fn tick(&mut self, now_ms: u64) {
        let Some(since) = self.drain_since else {
            return;
        };
        if !self.mesh.complete() && now_ms < since + MESH_WAIT_MS {
            return;
        }
        if !self.mesh.complete() {
            log!(Warn, "moving clients before the new workers are all linked");
        }
        self.drain_since = None;
        let moves: Vec<(usize, usize)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.moved_to.is_none())
            .filter_map(|(sid, s)| Some((sid, self.mesh.successor(&s.client_id)?)))
            .collect();
        for (sid, key) in moves {
            self.send_away(sid, key);
        }
    }

    fn send_away(&mut self, sid: usize, key: usize) {
        let s = &mut self.sessions[sid];
        if s.conn.is_some() {
            s.move_to = Some(key);
            s.woken = false;
            self.wake(sid);
            return;
        }
        let r = SessionRef {
            sid,
            epoch: s.epoch,
        };
        if let Some(s) = self.export(r, key, 0) {
            self.mesh
                .push_frame(key, crate::mqtt::handoff::offline_frame(&s));
        }
    }

    /// The live session of `r`, unless it was taken over or discarded.
    pub fn session(&self, r: SessionRef) -> Option<&Session> {
        self.sessions.get(r.sid).filter(|s| s.epoch == r.epoch)
    }

    pub fn session_mut(&mut self, r: SessionRef) -> Option<&mut Session> {
        self.sessions.get_mut(r.sid).filter(|s| s.epoch == r.epoch)
    }

    /// Whether connection `token` still serves session `r`.
    pub fn serves(&self, r: SessionRef, token: Token) -> bool {
        self.session(r).is_some_and(|s| s.conn == Some(token))
    }

    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// CONNECT on connection `token` (3.1.4): credentials, the client identifier's rules, the
    /// session to resume or start, a connection of the same client to end. On success the
    /// CONNACK is in the session's output; on refusal the caller sends CONNACK with the code and
    /// closes ([MQTT-3.2.2-5]).
    pub fn connect(
        &mut self,
        c: Connect,
        token: Token,
        now_ms: u64,
    ) -> Result<Connected, ConnackCode> {
        let client_id: Arc<str> = if c.client_id.is_empty() {
            // [MQTT-3.1.3-7], [MQTT-3.1.3-8]: a zero-length identifier only with a clean
            // session, and then the server makes one up ([MQTT-3.1.3-6]).
            if !c.clean_session {
                self.stats.refused();
                return Err(ConnackCode::IdentifierRejected);
            }
            self.anonymous += 1;
            format!(
                "auto-{}-{}-{}",
                std::process::id(),
                self.slot,
                self.anonymous
            )
            .into()
        } else {
            c.client_id.as_str().into()
        };
        if let Err(r) = self
            .auth
            .connect(&client_id, c.username.as_deref(), c.password.as_deref())
        {
            self.stats.refused();
            return Err(match r {
                Refusal::BadCredentials => ConnackCode::BadUsernameOrPassword,
                Refusal::NotAuthorised => ConnackCode::NotAuthorized,
            });
        }
        let keep_alive = match c.keep_alive {
            0 => 0,
            k => k.min(self.limits.max_keepalive),
        };
        // [MQTT-3.1.4-2]: a connection of the same client ends; its session is resumed or
        // discarded below ([MQTT-3.1.2-4], [MQTT-3.1.2-6]).
        let mut present = false;
        if let Some(&sid) = self.by_id.get(&client_id) {
            let old = &mut self.sessions[sid];
            if let Some(t) = old.conn.take() {
                old.will = None;
                old.woken = false;
                old.out.clear();
                old.held.clear();
                self.posted.post(t);
                self.stats.connected(false);
            }
            if c.clean_session || old.clean {
                self.discard(sid);
            } else {
                present = true;
            }
        }
        let sid = match self.by_id.get(&client_id) {
            Some(&sid) => sid,
            None => self.insert(Session::new(Arc::clone(&client_id), c.clean_session)),
        };
        let s = &mut self.sessions[sid];
        s.clean = c.clean_session;
        s.username = c.username.map(Into::into);
        s.will = c.will.map(Box::new);
        s.conn = Some(token);
        s.woken = false;
        // CONNACK: session present only for a resumed session ([MQTT-3.2.2-1],
        // [MQTT-3.2.2-2], [MQTT-3.2.2-3]).
        s.out.extend_from_slice(&[0x20, 2, u8::from(present), 0]);
        if present {
            s.resend_inflight(now_ms);
        }
        let r = SessionRef {
            sid,
            epoch: s.epoch,
        };
        self.pump(sid, now_ms);
        self.stats.connected(true);
        Ok(Connected {
            session: r,
            session_present: present,
            keep_alive,
        })
    }

    fn insert(&mut self, mut s: Session) -> usize {
        s.epoch = self.next_epoch;
        self.next_epoch += 1;
        let id = Arc::clone(&s.client_id);
        let subs = std::mem::take(&mut s.subs);
        let sid = self.sessions.insert(s);
        self.by_id.insert(id, sid);
        for (f, q) in subs {
            self.subscribe_one(sid, &f, q);
        }
        self.stats.sessions(self.sessions.len());
        sid
    }

    /// Ends a session: its subscriptions go, and so do filters no one else here uses.
    fn discard(&mut self, sid: usize) {
        let s = self.sessions.remove(sid);
        self.by_id.remove(&s.client_id);
        for f in self.tree.remove_client(ClientKey(sid as u32)) {
            self.mesh.unsubscribe(&f);
        }
        self.tickets.retain(|_, r| r.sid != sid);
        self.stats.sessions(self.sessions.len());
    }

    /// The connection of `r` ended. `will`: it ended without DISCONNECT, so the will is
    /// published ([MQTT-3.1.2-8]); not after DISCONNECT ([MQTT-3.1.2-10]) or when the worker
    /// hands the client to a sibling. A clean session ends with its connection
    /// ([MQTT-3.1.2-6]); another stays for the client's return ([MQTT-3.1.2-4]).
    pub fn disconnected(&mut self, r: SessionRef, token: Token, will: bool, now_ms: u64) {
        if !self.serves(r, token) {
            return;
        }
        self.stats.connected(false);
        let s = &mut self.sessions[r.sid];
        s.conn = None;
        s.woken = false;
        s.out = Vec::new();
        s.held.clear();
        let last_will = s.will.take();
        let (id, user) = (Arc::clone(&s.client_id), s.username.clone());
        if s.clean {
            self.discard(r.sid);
        }
        if let (true, Some(w)) = (will, last_will) {
            if self
                .auth
                .allows(&id, user.as_deref(), Op::Publish, &w.topic)
            {
                let msg = Message {
                    topic: w.topic.into(),
                    payload: w.message,
                    qos: w.qos,
                    retain: w.retain,
                };
                self.publish_local(&msg, now_ms);
            } else {
                self.stats.dropped(Drop::NotAuthorised);
            }
        }
    }

    /// A packet from the client of `r`, after CONNECT.
    pub fn packet(&mut self, r: SessionRef, p: Packet, now_ms: u64) -> Result<(), Close> {
        if self.session(r).is_none() {
            return Err(Close::Disconnect);
        }
        match p {
            Packet::Publish(p) => self.on_publish(r, p, now_ms),
            Packet::Puback(id) => {
                self.acknowledged(r.sid, id, QoS::AtLeastOnce, Flight::Published, now_ms)
            }
            Packet::Pubrec(id) => {
                let s = &mut self.sessions[r.sid];
                if let Some(f) = s
                    .inflight
                    .iter_mut()
                    .find(|f| f.pkid == id && f.qos == QoS::ExactlyOnce)
                {
                    f.state = Flight::Released;
                    f.sent_ms = now_ms;
                    // [MQTT-4.3.3-1]: PUBREL with the same identifier; again if PUBREC repeats.
                    s.write_ack(0x62, id);
                }
            }
            Packet::Pubrel(id) => {
                let s = &mut self.sessions[r.sid];
                s.incoming.retain(|&i| i != id);
                // [MQTT-4.3.3-2]: PUBCOMP, also for an identifier already released.
                s.write_ack(0x70, id);
            }
            Packet::Pubcomp(id) => {
                self.acknowledged(r.sid, id, QoS::ExactlyOnce, Flight::Released, now_ms)
            }
            Packet::Subscribe(s) => self.on_subscribe(r, s, now_ms),
            Packet::Unsubscribe(u) => self.on_unsubscribe(r.sid, u),
            Packet::Pingreq => self.sessions[r.sid].out.extend_from_slice(&[0xd0, 0]),
            Packet::Disconnect => {
                self.sessions[r.sid].will = None;
                return Err(Close::Disconnect);
            }
            // [MQTT-3.1.0-2]: a second CONNECT is a protocol violation.
            Packet::Connect(_) => return Err(Close::Violation("second CONNECT")),
            Packet::Connack(_) | Packet::Suback(_) | Packet::Unsuback(_) | Packet::Pingresp => {
                return Err(Close::Violation("a packet only servers send"))
            }
        }
        Ok(())
    }

    fn on_publish(&mut self, r: SessionRef, p: Publish, now_ms: u64) {
        let qos = p.qos;
        self.stats.received(qos as u8);
        let s = &self.sessions[r.sid];
        // QoS 2 method B (4.3.3): a PUBLISH whose identifier is not yet released is a
        // retransmission; it is acknowledged again and not delivered again ([MQTT-4.3.3-2]).
        let repeat = qos == QoS::ExactlyOnce && s.incoming.contains(&p.pkid);
        let mut ack = Ack::Now;
        let ticket = self.next_ticket;
        if !repeat {
            let allowed =
                self.auth
                    .allows(&s.client_id, s.username.as_deref(), Op::Publish, &p.topic);
            if allowed {
                // The payload is copied out of the connection's read buffer: a message kept
                // (queued, in flight, retained) must not pin a whole buffer.
                let msg = Message {
                    topic: p.topic.into(),
                    payload: bytes::Bytes::copy_from_slice(&p.payload),
                    qos,
                    retain: p.retain,
                };
                let s = &self.sessions[r.sid];
                let origin = Origin {
                    client_id: &s.client_id,
                    username: s.username.as_deref(),
                };
                ack = self.hook.publish(origin, &msg, ticket);
                self.publish_local(&msg, now_ms);
            } else {
                // 3.1.1 has no negative acknowledgement: the message is acknowledged and
                // dropped, and counted.
                self.stats.dropped(Drop::NotAuthorised);
            }
        }
        if qos == QoS::AtMostOnce {
            return;
        }
        let s = &mut self.sessions[r.sid];
        if qos == QoS::ExactlyOnce && !repeat {
            s.incoming.push(p.pkid);
        }
        if repeat && s.held.iter().any(|h| h.pkid == p.pkid) {
            return;
        }
        let held = ack == Ack::Later && !repeat;
        if held {
            self.next_ticket += 1;
            self.tickets.insert(ticket, r);
        }
        if s.held.is_empty() && !held {
            s.write_ack(if qos == QoS::AtLeastOnce { 0x40 } else { 0x50 }, p.pkid);
        } else {
            s.held.push_back(HeldAck {
                pkid: p.pkid,
                qos,
                ticket: held.then_some(ticket),
            });
            flush_held(s);
        }
    }

    /// The ingest hook made the message of `ticket` durable: its acknowledgement, and those
    /// queued behind it, can leave.
    pub fn durable(&mut self, ticket: u64) {
        let Some(r) = self.tickets.remove(&ticket) else {
            return;
        };
        let Some(s) = self.session_mut(r) else {
            return;
        };
        if let Some(h) = s.held.iter_mut().find(|h| h.ticket == Some(ticket)) {
            h.ticket = None;
        }
        flush_held(s);
        self.wake(r.sid);
    }

    fn acknowledged(&mut self, sid: usize, id: u16, qos: QoS, state: Flight, now_ms: u64) {
        let s = &mut self.sessions[sid];
        if let Some(i) = s
            .inflight
            .iter()
            .position(|f| f.pkid == id && f.qos == qos && f.state == state)
        {
            s.inflight.remove(i);
            self.pump(sid, now_ms);
        }
    }

    fn on_subscribe(&mut self, r: SessionRef, sub: Subscribe, now_ms: u64) {
        let sid = r.sid;
        let mut codes = Vec::with_capacity(sub.filters.len());
        let mut granted = Vec::with_capacity(sub.filters.len());
        let mut forwarded = false;
        for (filter, qos) in sub.filters {
            let s = &self.sessions[sid];
            if !self
                .auth
                .allows(&s.client_id, s.username.as_deref(), Op::Subscribe, &filter)
            {
                // A refusal is answered, not dropped silently ([MQTT-3.9.3-2]: 0x80).
                codes.push(0x80);
                continue;
            }
            forwarded |= self.subscribe_one(sid, &filter, qos);
            codes.push(qos as u8);
            granted.push((filter, qos));
        }
        let done = Suback {
            session: r,
            pkid: sub.pkid,
            codes,
            granted,
        };
        // A filter new to this worker was forwarded to the siblings: the SUBACK waits until
        // each has it, so that whatever any client publishes after the SUBACK reaches this one.
        if forwarded {
            if let Some((seq, waiting)) = self.mesh.barrier() {
                self.barriers.insert(seq, (waiting, Waiter::Suback(done)));
                return;
            }
        }
        self.finish_subscribe(done, now_ms);
    }

    /// Sibling `key` has every filter forwarded before barrier `seq`.
    pub fn barrier_passed(&mut self, seq: u64, key: usize, now_ms: u64) {
        let Some((waiting, _)) = self.barriers.get_mut(&seq) else {
            return;
        };
        waiting.retain(|&k| k != key);
        if waiting.is_empty() {
            match self.barriers.remove(&seq) {
                Some((_, Waiter::Suback(done))) => self.finish_subscribe(done, now_ms),
                None => {}
            }
        }
    }

    fn finish_subscribe(&mut self, done: Suback, now_ms: u64) {
        let Some(s) = self.session_mut(done.session) else {
            return;
        };
        let sid = done.session.sid;
        // [MQTT-3.8.4-1], [MQTT-3.8.4-4], [MQTT-3.8.4-5]: one SUBACK, a code per filter in order.
        let id = done.pkid.to_be_bytes();
        // The codes are one per filter of a packet under max_packet_size: the header fits.
        if codec::write_fixed_header(0x90, 2 + done.codes.len(), &mut s.out).is_ok() {
            s.out.extend_from_slice(&id);
            s.out.extend_from_slice(&done.codes);
        }
        self.wake(sid);
        // [MQTT-3.3.1-6], [MQTT-3.8.4-3]: the retained messages matching each filter, with
        // RETAIN set, after the SUBACK.
        let mut found: Vec<Retained> = Vec::new();
        for (filter, qos) in done.granted {
            found.clear();
            self.retained.matching(&filter, &mut found);
            if self.auth.screens_delivery() {
                let s = &self.sessions[sid];
                let (id, user) = (&s.client_id, s.username.as_deref());
                found.retain(|m| self.auth.allows(id, user, Op::Receive, &m.topic));
            }
            for m in &found {
                let msg = Message {
                    topic: Arc::clone(&m.topic),
                    payload: m.payload.clone(),
                    qos: m.qos,
                    retain: true,
                };
                self.deliver(sid, &msg, m.qos.min(qos), true, now_ms, Via::Direct);
            }
        }
    }

    /// Subscribes session `sid`; true if the filter is new here and was forwarded.
    fn subscribe_one(&mut self, sid: usize, filter: &str, qos: QoS) -> bool {
        let first =
            self.tree.subscribe(ClientKey(sid as u32), filter, qos) == Subscribed::FirstForFilter;
        if first {
            self.mesh.subscribe(filter);
        }
        let subs = &mut self.sessions[sid].subs;
        match subs.iter_mut().find(|(f, _)| **f == *filter) {
            Some(e) => e.1 = qos,
            None => subs.push((filter.into(), qos)),
        }
        first
    }

    fn on_unsubscribe(&mut self, sid: usize, u: Unsubscribe) {
        for filter in &u.filters {
            if self.tree.unsubscribe(ClientKey(sid as u32), filter) == Unsubscribed::LastForFilter {
                self.mesh.unsubscribe(filter);
            }
            self.sessions[sid].subs.retain(|(f, _)| **f != **filter);
        }
        // [MQTT-3.10.4-4], [MQTT-3.10.4-5]: UNSUBACK even when nothing matched.
        self.sessions[sid].write_ack(0xb0, u.pkid);
    }

    /// Routes a message published by a client of this worker (or a will): retained store,
    /// local subscribers, and the siblings whose clients subscribed.
    pub fn publish_local(&mut self, msg: &Message, now_ms: u64) {
        if msg.retain {
            self.lamport += 1;
            let stamp = (self.lamport, self.slot as u16);
            self.store_retained(msg, stamp);
            self.mesh.retained(msg, stamp);
        }
        if self.mesh.forward(msg) > 0 {
            self.stats.dropped(Drop::PeerBackedUp);
        }
        self.route(msg, now_ms, Via::Route(HERE));
    }

    /// A message a sibling's client published (forwarded on link `key`), for this worker's
    /// subscribers.
    pub fn publish_from_peer(&mut self, msg: &Message, key: usize, now_ms: u64) {
        self.route(msg, now_ms, Via::Route(key));
    }

    /// A retained message (or its removal, by an empty payload) from a sibling.
    pub fn retained_from_peer(&mut self, msg: &Message, stamp: Stamp) {
        self.lamport = self.lamport.max(stamp.0);
        self.store_retained(msg, stamp);
    }

    fn store_retained(&mut self, msg: &Message, stamp: Stamp) {
        if self.stamps.get(&*msg.topic).is_some_and(|s| *s >= stamp) {
            return;
        }
        self.stamps.insert(Arc::clone(&msg.topic), stamp);
        self.retained
            .retain(&msg.topic, msg.payload.clone(), msg.qos);
        self.stats.retained(self.retained.len());
    }

    /// Every retained message with its stamp (removals too), for a sibling that just joined.
    pub fn retained_snapshot(&self, mut f: impl FnMut(&Message, Stamp)) {
        for (topic, stamp) in &self.stamps {
            let (payload, qos) = match self.retained.get(topic) {
                Some(r) => (r.payload.clone(), r.qos),
                None => (bytes::Bytes::new(), QoS::AtMostOnce),
            };
            let msg = Message {
                topic: Arc::clone(topic),
                payload,
                qos,
                retain: true,
            };
            f(&msg, *stamp);
        }
    }

    /// Every filter this worker's clients use, for a sibling that just joined.
    pub fn filters(&self, mut f: impl FnMut(&str)) {
        self.tree.for_each_filter(&mut f);
    }

    fn route(&mut self, msg: &Message, now_ms: u64, via: Via) {
        let mut routes = std::mem::take(&mut self.routes);
        self.tree.route(&msg.topic, &mut routes);
        if self.auth.screens_delivery() {
            let (auth, sessions) = (&self.auth, &self.sessions);
            routes.retain(|(ClientKey(sid), _)| {
                sessions.get(*sid as usize).is_some_and(|s| {
                    auth.allows(&s.client_id, s.username.as_deref(), Op::Receive, &msg.topic)
                })
            });
        }
        for &(ClientKey(sid), granted) in &routes {
            // [MQTT-3.3.5-1]: at the lower of the message's and the subscription's QoS, with
            // RETAIN cleared on live delivery ([MQTT-3.3.1-9]).
            self.deliver(sid as usize, msg, msg.qos.min(granted), false, now_ms, via);
        }
        self.routes = routes;
    }

    /// Sends or queues `msg` for session `sid` at `qos`.
    fn deliver(
        &mut self,
        sid: usize,
        msg: &Message,
        qos: QoS,
        retain: bool,
        now_ms: u64,
        via: Via,
    ) {
        let Some(s) = self.sessions.get(sid) else {
            return;
        };
        if s.moved_to.is_some() {
            self.relay(sid, msg, qos, retain, via);
            return;
        }
        if s.switch.is_some() && self.switch_gate(sid, msg, qos, retain, via) {
            return;
        }
        let limits = &self.limits;
        let s = &mut self.sessions[sid];
        let online = s.conn.is_some() || s.arriving;
        if qos == QoS::AtMostOnce {
            // QoS 0 is not kept for offline clients (mosquitto's default too), and is dropped,
            // counted, for a client that does not read.
            if !online {
                return;
            }
            if s.out.len() > limits.max_out_bytes {
                self.stats.dropped(Drop::SlowQos0);
                return;
            }
            s.write_publish(msg, qos, retain, false, 0);
            self.stats.sent(0);
            self.wake(sid);
            return;
        }
        let mut m = msg.clone();
        m.retain = retain;
        m.qos = qos;
        if online && s.queue.is_empty() && s.inflight.len() < limits.max_inflight {
            self.send_inflight(sid, m, now_ms);
            self.wake(sid);
        } else if s.queue.len() < limits.max_queued {
            s.queue.push_back(m);
        } else {
            self.stats.dropped(Drop::QueueFull);
        }
    }

    fn send_inflight(&mut self, sid: usize, m: Message, now_ms: u64) {
        let s = &mut self.sessions[sid];
        let pkid = s.take_pkid();
        s.write_publish(&m, m.qos, m.retain, false, pkid);
        self.stats.sent(m.qos as u8);
        s.inflight.push_back(Inflight {
            pkid,
            qos: m.qos,
            state: Flight::Published,
            msg: m,
            sent_ms: now_ms,
        });
    }

    /// Moves queued messages into the in-flight window while there is room and a connection.
    fn pump(&mut self, sid: usize, now_ms: u64) {
        let max = self.limits.max_inflight;
        let mut sent = false;
        loop {
            let s = &mut self.sessions[sid];
            if s.conn.is_none() || s.inflight.len() >= max {
                break;
            }
            let Some(m) = s.queue.pop_front() else {
                break;
            };
            self.send_inflight(sid, m, now_ms);
            sent = true;
        }
        if sent {
            self.wake(sid);
        }
    }

    /// Posts the session's connection so that it writes what waits.
    fn wake(&mut self, sid: usize) {
        let s = &mut self.sessions[sid];
        if let (Some(t), false) = (s.conn, s.woken) {
            s.woken = true;
            self.posted.post(t);
        }
    }

    /// Takes a session out of this worker, to move it to a sibling (with its connection, if
    /// `token` still serves it). Its subscriptions leave the tree; nothing is published.
    pub fn export(&mut self, r: SessionRef, to: usize, now_ms: u64) -> Option<Session> {
        self.session(r)?;
        // A stub stays in the session's place, with its subscriptions, and sends on what they
        // route to the sibling until every origin has switched to the sibling (see `switch`).
        let mut stub = Session::new(Arc::clone(&self.sessions[r.sid].client_id), true);
        stub.epoch = self.next_epoch;
        self.next_epoch += 1;
        stub.moved_to = Some(to);
        stub.relay_pending = self.mesh.links().map(|(k, _)| k).collect();
        stub.relay_pending.push(HERE);
        self.release_all(r.sid, now_ms);
        let mut s = std::mem::replace(&mut self.sessions[r.sid], stub);
        self.by_id.remove(&s.client_id);
        self.moved.insert(Arc::clone(&s.client_id), r.sid);
        self.tickets.retain(|_, t| t.sid != r.sid);
        if s.conn.take().is_some() {
            self.stats.connected(false);
        }
        self.stats.handed_over();
        self.fence(&s.client_id, to);
        Some(s)
    }

    fn drop_stub(&mut self, sid: usize) {
        self.sessions.remove(sid);
        for f in self.tree.remove_client(ClientKey(sid as u32)) {
            self.mesh.unsubscribe(&f);
        }
        self.stats.sessions(self.sessions.len());
    }

    /// Stubs wait for their siblings' word: a stopping worker stays until they are gone.
    pub fn forwarding(&self) -> bool {
        !self.moved.is_empty() || self.drain_since.is_some()
    }

    /// A message a stub sent on: delivered to the session it stood for.
    pub fn deliver_moved(&mut self, id: &str, msg: &Message, qos: QoS, retain: bool, now_ms: u64) {
        if let Some(&sid) = self.by_id.get(id) {
            self.deliver(sid, msg, qos, retain, now_ms, Via::Direct);
        }
    }

    /// Takes in a session a sibling moved here. With `token` it is live on that connection,
    /// which goes on where the other worker left off; a session of the same client already
    /// here is replaced (the newer connection wins, as a takeover would decide).
    pub fn import(&mut self, mut s: Session, live: bool, from: usize) -> SessionRef {
        // A live session's connection joins this worker's loop a moment later ([`attach`]);
        // until then what is routed to it waits in its output as if it were connected.
        s.conn = None;
        s.arriving = live;
        s.woken = false;
        s.move_to = None;
        s.moved_to = None;
        flush_held(&mut s);
        if let Some(&old) = self.by_id.get(&s.client_id) {
            // A session of the same client here is older than one that moved with its
            // connection; a moved offline session is older than a connected one here.
            if !live && (self.sessions[old].conn.is_some() || self.sessions[old].arriving) {
                self.refuse_switch(&s.client_id, from);
                return SessionRef {
                    sid: old,
                    epoch: self.sessions[old].epoch,
                };
            }
            if let Some(t) = self.sessions[old].conn.take() {
                self.stats.connected(false);
                self.posted.post(t);
            }
            self.discard(old);
        }
        let sid = self.insert(s);
        self.start_switch(sid, from);
        SessionRef {
            sid,
            epoch: self.sessions[sid].epoch,
        }
    }

    /// The connection of a session that arrived live was lost on the way: the session stays
    /// as after any lost connection (a clean one ends; no will, the client did nothing wrong).
    pub fn arrival_failed(&mut self, r: SessionRef) {
        let Some(s) = self.session_mut(r) else {
            return;
        };
        s.arriving = false;
        s.out = Vec::new();
        s.will = None;
        if s.clean {
            self.discard(r.sid);
        }
    }

    /// The connection of a session that arrived live is in the loop now, under `token`.
    /// False if the session is gone meanwhile (taken over by a newer connection).
    pub fn attach(&mut self, r: SessionRef, token: Token, now_ms: u64) -> bool {
        let Some(s) = self.session_mut(r) else {
            return false;
        };
        if !s.arriving {
            return false;
        }
        s.arriving = false;
        s.conn = Some(token);
        self.stats.connected(true);
        self.pump(r.sid, now_ms);
        self.wake(r.sid);
        true
    }
}

/// Sends the held acknowledgements at the head of the queue that are durable.
fn flush_held(s: &mut Session) {
    while let Some(h) = s.held.front().copied() {
        if h.ticket.is_some() {
            return;
        }
        s.held.pop_front();
        s.write_ack(
            if h.qos == QoS::AtLeastOnce {
                0x40
            } else {
                0x50
            },
            h.pkid,
        );
    }
}

#[path = "switch.rs"]
mod switch;
pub use switch::{Via, HERE};

#[cfg(test)]
#[path = "broker_tests.rs"]
mod tests;
