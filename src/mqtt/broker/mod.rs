//! One worker's broker: sessions, subscriptions and retained messages, and what each packet
//! does to them (MQTT 3.1.1 sections 3 and 4).
//!
//! Owns every session of the clients this worker serves (connected or not), the worker's
//! subscription tree, its replica of the node's retained messages, the hooks (who may do what,
//! and where accepted messages go), and the [`Mesh`] to the sibling workers. Connections hand it
//! whole, valid packets and write out what it leaves in their session's output buffer; links to
//! siblings hand it decoded frames. It never touches a socket, so every rule here is tested
//! without one.
//!
//! One file per concern, each with the state it owns:
//!
//! | file | concern | state |
//! |---|---|---|
//! | `mod.rs` | the sessions, packets and frames in, routing readiness | sessions, by client id |
//! | `connect.rs` | CONNECT, takeover, session present, disconnect and wills | |
//! | `publish.rs` | PUBLISH in and out, QoS 1/2 flows, held acknowledgements | tickets |
//! | `subscribe.rs` | SUBSCRIBE, UNSUBSCRIBE, the SUBACK barrier, retained messages | barriers, replica |
//! | `moves.rs` | sessions moving between workers, stubs, a stopping worker | stubs, drain |
//! | `switch.rs` | the switch and fence protocols of a move | fences |
//!
//! Identity of a session across its connections: a slab key plus an epoch, so a connection whose
//! session was taken over or discarded finds out instead of acting on a stranger's.

mod connect;
mod moves;
mod publish;
mod subscribe;
mod switch;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use mio::Token;
use slab::Slab;

use crate::core::event::Posted;
use crate::mqtt::auth::{Authority, Verdicts};
use crate::mqtt::codec::{Packet, QoS};
use crate::mqtt::conf::MqttConf;
use crate::mqtt::ingest::{Acks, Ingest, Outbox};
use crate::mqtt::mesh::{Frame, Mesh};
use crate::mqtt::router::{ClientKey, SubscriptionTree};
use crate::mqtt::session::{Flight, Session};
use crate::mqtt::stats::Stats;

pub use connect::{Admission, Connected};
pub use moves::Hold;
pub use publish::server_topic;
pub use switch::{Via, HERE};

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
    pub fn from_conf(c: &MqttConf) -> Limits {
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
        Limits::from_conf(&MqttConf::default())
    }
}

/// A session as a connection holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef {
    pub sid: usize,
    pub epoch: u64,
}

/// Why a connection must close after a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    /// DISCONNECT: a normal end, the will is discarded ([MQTT-3.14.4-3]).
    Disconnect,
    /// A protocol violation: the will is published ([MQTT-3.1.2-8]).
    Violation(&'static str),
}

/// The hooks a worker's broker calls, installed by the wiring.
pub struct Hooks {
    /// Who may connect, publish and subscribe.
    pub authority: Rc<dyn Authority>,
    /// Where the authority's late answers to CONNECTs arrive.
    pub verdicts: Verdicts,
    /// Where accepted messages go.
    pub ingest: Box<dyn Ingest>,
    /// Where the ingest hook completes the acknowledgements it holds.
    pub acks: Acks,
    /// The server's own messages.
    pub outbox: Outbox,
}

impl Hooks {
    /// `authority` answering at once, and no ingest.
    pub fn with_authority(authority: Rc<dyn Authority>) -> Hooks {
        Hooks {
            authority,
            verdicts: Verdicts::default(),
            ingest: Box::new(crate::mqtt::ingest::NoIngest),
            acks: Acks::default(),
            outbox: Outbox::default(),
        }
    }
}

pub struct Broker {
    limits: Limits,
    auth: Rc<dyn Authority>,
    verdicts: Verdicts,
    hook: Box<dyn Ingest>,
    acks: Acks,
    outbox: Outbox,
    logins: connect::Logins,
    sessions: Slab<Session>,
    by_id: HashMap<Arc<str>, usize>,
    next_epoch: u64,
    tree: SubscriptionTree,
    /// Scratch space for a route's subscribers.
    routes: Vec<(ClientKey, QoS)>,
    tickets: publish::Tickets,
    barriers: subscribe::Barriers,
    replica: subscribe::Replica,
    moves: moves::Moves,
    fences: switch::Fences,
    mesh: Mesh,
    /// Connections waiting for this worker to have every running sibling's filters.
    unready: Vec<Token>,
    posted: Posted,
    stats: Stats,
    slot: usize,
    /// Client identifiers made up for CONNECTs without one.
    anonymous: u64,
}

impl Broker {
    pub fn new(
        limits: Limits,
        hooks: Hooks,
        posted: Posted,
        stats: Stats,
        (slot, generation): (usize, u64),
    ) -> Broker {
        Broker {
            limits,
            auth: hooks.authority,
            verdicts: hooks.verdicts,
            hook: hooks.ingest,
            acks: hooks.acks,
            outbox: hooks.outbox,
            logins: connect::Logins::default(),
            sessions: Slab::new(),
            by_id: HashMap::new(),
            next_epoch: 1,
            tree: SubscriptionTree::new(),
            routes: Vec::new(),
            tickets: publish::Tickets::default(),
            barriers: subscribe::Barriers::default(),
            replica: subscribe::Replica::default(),
            moves: moves::Moves::default(),
            fences: switch::Fences::default(),
            mesh: Mesh::new(slot, generation, posted.clone()),
            unready: Vec::new(),
            posted,
            stats,
            slot,
            anonymous: 0,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn posted(&self) -> &Posted {
        &self.posted
    }

    /// The links to the sibling workers.
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
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

    /// Whether this worker has the filters of every sibling that was running when it started:
    /// before that, a client's PUBLISH here could miss a subscriber there.
    pub fn routing_ready(&self) -> bool {
        self.mesh.routing_ready()
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

    /// Once per loop turn, after every connection had its turn: the hooks' answers are picked
    /// up (held acknowledgements released, parked CONNECTs woken), the ingest hook sends what
    /// the turn gathered, connections waiting for it to have room are woken when it has, and a
    /// stopping worker moves its sessions when it may.
    pub fn tick(&mut self, now_ms: u64) {
        self.collect_acks();
        self.collect_verdicts();
        self.collect_outbox(now_ms);
        self.hook.flush();
        self.room_check();
        self.move_when_linked(now_ms);
    }

    /// Posts the session's connection so that it writes what waits.
    fn wake(&mut self, sid: usize) {
        let s = &mut self.sessions[sid];
        if let (Some(t), false) = (s.conn, s.woken) {
            s.woken = true;
            self.posted.post(t);
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
            Packet::Pubrec(id) => self.on_pubrec(r.sid, id, now_ms),
            Packet::Pubrel(id) => self.on_pubrel(r.sid, id),
            Packet::Pubcomp(id) => {
                self.acknowledged(r.sid, id, QoS::ExactlyOnce, Flight::Released, now_ms)
            }
            Packet::Subscribe(s) => self.on_subscribe(r, s, now_ms),
            Packet::Unsubscribe(u) => self.on_unsubscribe(r.sid, u),
            Packet::Pingreq => self.sessions[r.sid].write(&Packet::Pingresp),
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

    /// A frame from the sibling on link `key` (those that carry a socket are the link
    /// connection's: they make connections).
    pub fn sibling_frame(&mut self, key: usize, frame: Frame, now_ms: u64) {
        match frame {
            Frame::Subscribe(f) => self.mesh.peer_subscribe(key, &f),
            Frame::Unsubscribe(f) => self.mesh.peer_unsubscribe(key, &f),
            Frame::Publish(msg) => self.route(&msg, now_ms, Via::Route(key)),
            Frame::SnapshotEnd => {
                self.mesh.snapshot_done(key);
                self.routing_ready_check();
            }
            Frame::Links(slots) => {
                self.mesh.peer_linked(key, slots);
                self.move_when_linked(now_ms);
            }
            Frame::Barrier(seq) => {
                self.mesh.push(key, &Frame::BarrierPassed(seq));
            }
            Frame::BarrierPassed(seq) => self.barrier_passed(seq, key, now_ms),
            Frame::Retained { msg, stamp } => self.retained_from_peer(&msg, stamp),
            Frame::Directed { client_id, msg } => self.deliver_moved(&client_id, &msg, now_ms),
            Frame::Offline(s) => {
                self.import(*s, false, key);
            }
            Frame::Handed { .. } | Frame::Raw { .. } | Frame::Live { .. } => {}
            marker => self.switch_frame(key, marker, now_ms),
        }
    }
}
