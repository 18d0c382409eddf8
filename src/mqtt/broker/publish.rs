//! PUBLISH in both directions (3.3-3.7, 4.3): a client's message to the ingest hook, the
//! retained store, local subscribers and the siblings; delivery at the granted QoS through the
//! in-flight window and the queue; the QoS 1 and 2 acknowledgement flows; and acknowledgements
//! held by the ingest hook until it says the message is durable, still sent in arrival order
//! ([MQTT-4.6.0-2]).

use std::collections::HashMap;

use mio::Token;

use super::{Broker, SessionRef, Via, HERE};
use crate::mqtt::auth::Op;
use crate::mqtt::codec::{Packet, Publish, QoS};
use crate::mqtt::ingest::{Ack, Delivery, Origin};
use crate::mqtt::router::ClientKey;
use crate::mqtt::session::{Flight, HeldAck, Inflight, Message, Session};
use crate::mqtt::stats::Drop;

/// The acknowledgements the ingest hook holds, by the ticket it was given, and the
/// connections waiting for it to have room.
#[derive(Default)]
pub(super) struct Tickets {
    next: u64,
    held: HashMap<u64, SessionRef>,
    blocked: Vec<Token>,
}

impl Tickets {
    /// The tickets of a session that ends or leaves mean nothing any more.
    pub(super) fn forget_session(&mut self, sid: usize) {
        self.held.retain(|_, r| r.sid != sid);
    }
}

/// The roots of the server's own topics (DESIGN.md section 6): `commands/#` (sensor
/// configurations) and `hives/#` (occupancy).
const SERVER_ROOTS: [&str; 2] = ["commands", "hives"];

/// Whether `topic` is one of the server's own: `commands/#` or `hives/#` (the roots
/// themselves included, as those filters match them). No client publishes there, whatever its
/// authority says: not a PUBLISH (retained or not) and not a will ([`Broker::connect`]). The
/// server's own messages do not come this way.
pub fn server_topic(topic: &str) -> bool {
    SERVER_ROOTS.iter().any(|root| {
        topic
            .strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

impl Broker {
    pub(super) fn on_publish(&mut self, r: SessionRef, p: Publish, now_ms: u64) {
        let (qos, pkid) = (p.qos, p.pkid);
        self.stats.received(qos as u8);
        let s = &self.sessions[r.sid];
        // QoS 2 method B (4.3.3): a PUBLISH whose identifier is not yet released is a
        // retransmission; it is acknowledged again and not delivered again ([MQTT-4.3.3-2]).
        // A QoS 1 PUBLISH whose acknowledgement is still queued is the client's retransmission
        // of it (an identifier is not reused before it is acknowledged): the queued
        // acknowledgement answers both, and the hook does not see it twice.
        let repeat = match qos {
            QoS::ExactlyOnce => s.incoming.contains(&pkid),
            QoS::AtLeastOnce => s.held.iter().any(|h| h.pkid == pkid && h.qos == qos),
            QoS::AtMostOnce => false,
        };
        let ticket = self.tickets.next + 1;
        let ack = if repeat {
            Ack::Now
        } else {
            self.accept(r.sid, p, ticket, now_ms)
        };
        if qos == QoS::AtMostOnce {
            return;
        }
        let s = &mut self.sessions[r.sid];
        if qos == QoS::ExactlyOnce && !repeat {
            s.incoming.push(pkid);
        }
        if repeat && s.held.iter().any(|h| h.pkid == pkid) {
            return;
        }
        let held = ack == Ack::Later && !repeat;
        if held {
            self.tickets.next = ticket;
            self.tickets.held.insert(ticket, r);
        }
        if s.held.is_empty() && !held {
            s.write(&ack_packet(qos, pkid));
        } else {
            s.held.push_back(HeldAck {
                pkid,
                qos,
                ticket: held.then_some(ticket),
            });
            flush_held(s);
        }
    }

    /// A client's message the ACL may allow: to the ingest hook and on to subscribers. The
    /// server's own topics are refused to every client, as an ACL refusal is.
    fn accept(&mut self, sid: usize, p: Publish, ticket: u64, now_ms: u64) -> Ack {
        let s = &self.sessions[sid];
        if server_topic(&p.topic)
            || !self
                .auth
                .allows(&s.client_id, s.username.as_deref(), Op::Publish, &p.topic)
        {
            // 3.1.1 has no negative acknowledgement: the message is acknowledged and dropped,
            // and counted.
            self.stats.dropped(Drop::NotAuthorised);
            return Ack::Now;
        }
        // The payload is copied out of the connection's read buffer: a message kept (queued,
        // in flight, retained) must not pin a whole buffer.
        let msg = Message {
            topic: p.topic.into(),
            payload: bytes::Bytes::copy_from_slice(&p.payload),
            qos: p.qos,
            retain: p.retain,
        };
        let origin = Origin {
            client_id: &s.client_id,
            username: s.username.as_deref(),
        };
        let ack = self.hook.publish(origin, &msg, ticket);
        self.publish_local(&msg, now_ms);
        ack
    }

    /// Whether connection `token` may hand the broker a PUBLISH now: false while the ingest
    /// hook has no room, and the connection is woken when it has.
    pub fn ingest_room(&mut self, token: Token) -> bool {
        if self.hook.has_room() {
            return true;
        }
        if !self.tickets.blocked.contains(&token) {
            self.tickets.blocked.push(token);
        }
        false
    }

    /// Wakes the connections waiting for the hook once it has room.
    pub(super) fn room_check(&mut self) {
        if !self.tickets.blocked.is_empty() && self.hook.has_room() {
            for t in self.tickets.blocked.drain(..) {
                self.posted.post(t);
            }
        }
    }

    /// Releases the acknowledgements whose tickets the hook completed.
    pub(super) fn collect_acks(&mut self) {
        if self.acks.pending() {
            for ticket in self.acks.take() {
                self.durable(ticket);
            }
        }
    }

    /// Routes the server's own messages given since the last turn.
    pub(super) fn collect_outbox(&mut self, now_ms: u64) {
        if !self.outbox.pending() {
            return;
        }
        for (msg, how) in self.outbox.take() {
            match how {
                Delivery::Publish => self.publish_local(&msg, now_ms),
                Delivery::Restore => self.restore_retained(&msg),
            }
        }
    }

    /// Whether the session of `r` has an acknowledgement the hook still holds: it may neither
    /// move nor end with a stopping server before it is sent.
    pub fn holds_acks(&self, r: SessionRef) -> bool {
        self.session(r).is_some_and(holds_acks)
    }

    /// The ingest hook made the message of `ticket` durable: its acknowledgement, and those
    /// queued behind it, can leave.
    fn durable(&mut self, ticket: u64) {
        let Some(r) = self.tickets.held.remove(&ticket) else {
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

    pub(super) fn on_pubrec(&mut self, sid: usize, id: u16, now_ms: u64) {
        let s = &mut self.sessions[sid];
        if let Some(f) = s
            .inflight
            .iter_mut()
            .find(|f| f.pkid == id && f.qos == QoS::ExactlyOnce)
        {
            f.state = Flight::Released;
            f.sent_ms = now_ms;
            // [MQTT-4.3.3-1]: PUBREL with the same identifier; again if PUBREC repeats.
            s.write(&Packet::Pubrel(id));
        }
    }

    pub(super) fn on_pubrel(&mut self, sid: usize, id: u16) {
        let s = &mut self.sessions[sid];
        s.incoming.retain(|&i| i != id);
        // [MQTT-4.3.3-2]: PUBCOMP, also for an identifier already released.
        s.write(&Packet::Pubcomp(id));
    }

    /// PUBACK or PUBCOMP: the exchange of `id` is over and the window has room.
    pub(super) fn acknowledged(&mut self, sid: usize, id: u16, qos: QoS, st: Flight, now_ms: u64) {
        let s = &mut self.sessions[sid];
        if let Some(i) = s
            .inflight
            .iter()
            .position(|f| f.pkid == id && f.qos == qos && f.state == st)
        {
            s.inflight.remove(i);
            self.pump(sid, now_ms);
        }
    }

    /// Routes a message published by a client of this worker (or a will): retained store,
    /// local subscribers, and the siblings whose clients subscribed.
    pub fn publish_local(&mut self, msg: &Message, now_ms: u64) {
        if msg.retain {
            let stamp = self.replica.stamp(self.slot);
            self.store_retained(msg, stamp);
            self.mesh.retained(msg, stamp);
        }
        if self.mesh.forward(msg) > 0 {
            self.stats.dropped(Drop::PeerBackedUp);
        }
        self.route(msg, now_ms, Via::Route(HERE));
    }

    /// Delivers `msg` to this worker's subscribers.
    pub(super) fn route(&mut self, msg: &Message, now_ms: u64, via: Via) {
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
    pub(super) fn deliver(
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
    pub(super) fn pump(&mut self, sid: usize, now_ms: u64) {
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
}

/// PUBACK for QoS 1, PUBREC for QoS 2.
fn ack_packet(qos: QoS, pkid: u16) -> Packet {
    if qos == QoS::AtLeastOnce {
        Packet::Puback(pkid)
    } else {
        Packet::Pubrec(pkid)
    }
}

/// Whether `s` has an acknowledgement the ingest hook still holds.
pub(super) fn holds_acks(s: &Session) -> bool {
    s.held.iter().any(|h| h.ticket.is_some())
}

/// Sends the held acknowledgements at the head of the queue that are durable.
pub(super) fn flush_held(s: &mut Session) {
    while let Some(h) = s.held.front().copied() {
        if h.ticket.is_some() {
            return;
        }
        s.held.pop_front();
        s.write(&ack_packet(h.qos, h.pkid));
    }
}
