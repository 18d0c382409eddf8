//! A client's session (MQTT 3.1.1 section 4.1): what outlives a connection when the client asked
//! for it (clean session 0), and what a connection needs while it is up.
//!
//! Owns the outbound side of the session: encoded bytes waiting for the socket (`out`), QoS 1
//! and 2 messages in flight with their state, messages queued behind the in-flight window or
//! while the client is offline, the identifiers of incoming QoS 2 messages not yet released, and
//! the acknowledgements an ingest hook is still holding. The broker fills it; the connection
//! empties `out` into its socket. Never does I/O.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::log;
use crate::mqtt::codec::{self, Packet, QoS, Will};

/// An application message as routed: shared, never copied per subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

/// Where an outgoing QoS 1 or 2 message is in its exchange (4.3.2, 4.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flight {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published,
    /// QoS 2: PUBREC received and PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// An outgoing message the client has not acknowledged yet.
#[derive(Debug, Clone)]
pub struct Inflight {
    pub pkid: u16,
    pub qos: QoS,
    pub state: Flight,
    pub msg: Message,
    /// When it was last sent (ms on the loop's clock): a client that leaves it unanswered for
    /// too long is not reading.
    pub sent_ms: u64,
}

/// An acknowledgement of an incoming message, held in arrival order ([MQTT-4.6.0-2],
/// [MQTT-4.6.0-3]) until the ingest hook says the message is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldAck {
    pub pkid: u16,
    /// QoS 1: PUBACK; QoS 2: PUBREC.
    pub qos: QoS,
    /// The hook's ticket; `None` once durable.
    pub ticket: Option<u64>,
}

/// On the worker a session moved to, until every origin of messages has switched from the old
/// worker's route to this one (`broker::switch`): per origin (a sibling's link key, or
/// `broker::HERE`), whether its `J` (its direct messages are new from here on) and its `k` (the
/// old worker has sent on everything it will from it) arrived, and its direct messages held
/// between the two.
#[derive(Debug, Default)]
pub struct Switch {
    pub origins: std::collections::HashMap<usize, OriginState>,
    /// The old worker's link.
    pub from: Option<usize>,
}

#[derive(Debug, Default)]
pub struct OriginState {
    pub j: bool,
    pub k: bool,
    pub held: VecDeque<(Message, QoS, bool)>,
}

/// One client's session.
#[derive(Debug)]
pub struct Session {
    pub client_id: Arc<str>,
    pub clean: bool,
    pub username: Option<Arc<str>>,
    /// Published when the connection ends other than by DISCONNECT ([MQTT-3.1.2-8]).
    pub will: Option<Box<Will>>,
    /// Filters and granted QoS while the session travels (moved to a sibling, or being
    /// stored): empty while it is stored, when the worker's subscription tree holds them.
    pub subs: Vec<(Box<str>, QoS)>,
    /// Encoded packets for the socket.
    pub out: Vec<u8>,
    pub inflight: VecDeque<Inflight>,
    /// QoS 1 and 2 messages waiting for room in flight, or for the client to come back.
    pub queue: VecDeque<Message>,
    /// Incoming QoS 2 identifiers received and not yet released by PUBREL (4.3.3 method B).
    pub incoming: Vec<u16>,
    pub held: VecDeque<HeldAck>,
    pub next_pkid: u16,
    /// The connection serving it (the loop's token), if any.
    pub conn: Option<mio::Token>,
    /// A wake-up for the connection is already posted.
    pub woken: bool,
    /// Set by the broker when it stores the session: tells this session from a later one of
    /// the same client in the same slab slot.
    pub epoch: u64,
    /// The sibling this session is to move to (with its connection, which is woken to do it).
    pub move_to: Option<usize>,
    /// A stub: the session moved to this sibling, and what it is routed is sent on there.
    pub moved_to: Option<usize>,
    /// A stub: the origins (sibling links, or this worker) that still send here for it.
    pub relay_pending: Vec<usize>,
    /// Moved here: the switch-over from the old worker's route is not complete.
    pub switch: Option<Box<Switch>>,
    /// Moved here live: its connection is about to join the loop.
    pub arriving: bool,
}

impl Session {
    pub fn new(client_id: Arc<str>, clean: bool) -> Session {
        Session {
            client_id,
            clean,
            username: None,
            will: None,
            subs: Vec::new(),
            out: Vec::new(),
            inflight: VecDeque::new(),
            queue: VecDeque::new(),
            incoming: Vec::new(),
            held: VecDeque::new(),
            next_pkid: 1,
            conn: None,
            woken: false,
            epoch: 0,
            move_to: None,
            moved_to: None,
            relay_pending: Vec::new(),
            switch: None,
            arriving: false,
        }
    }

    /// A packet identifier not in flight ([MQTT-2.3.1-2]); the window is far smaller than 65,535.
    pub fn take_pkid(&mut self) -> u16 {
        loop {
            let id = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|f| f.pkid == id) {
                return id;
            }
        }
    }

    /// Appends a PUBLISH to `out`.
    pub fn write_publish(&mut self, msg: &Message, qos: QoS, retain: bool, dup: bool, pkid: u16) {
        codec::encode_publish(
            &msg.topic,
            &msg.payload,
            qos,
            retain,
            dup,
            pkid,
            &mut self.out,
        );
    }

    /// Appends a packet the server sends (CONNACK, acknowledgements, SUBACK, PINGRESP). These
    /// are small and bounded, so the codec always encodes them; if it ever refused, the packet
    /// is left out and logged rather than half written.
    pub fn write(&mut self, p: &Packet) {
        if let Err(e) = codec::encode(p, &mut self.out) {
            log!(Error, "mqtt session {}: not sent ({e})", self.client_id);
        }
    }

    /// Sends again what the client had not acknowledged when its connection ended, in the
    /// original order, PUBLISH with DUP set and PUBREL as it was ([MQTT-4.4.0-1]).
    pub fn resend_inflight(&mut self, now_ms: u64) {
        for i in 0..self.inflight.len() {
            let f = self.inflight[i].clone();
            match f.state {
                Flight::Published => self.write_publish(&f.msg, f.qos, f.msg.retain, true, f.pkid),
                Flight::Released => self.write(&Packet::Pubrel(f.pkid)),
            }
            self.inflight[i].sent_ms = now_ms;
        }
    }

    /// The oldest unacknowledged send, for the stall check.
    pub fn oldest_inflight_ms(&self) -> Option<u64> {
        self.inflight.iter().map(|f| f.sent_ms).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: &str, p: &[u8], qos: QoS) -> Message {
        Message {
            topic: t.into(),
            payload: Bytes::copy_from_slice(p),
            qos,
            retain: true,
        }
    }

    #[test]
    fn packet_ids_skip_those_in_flight_mqtt_2_3_1_2() {
        let mut s = Session::new("c".into(), true);
        s.next_pkid = u16::MAX;
        s.inflight.push_back(Inflight {
            pkid: 1,
            qos: QoS::AtLeastOnce,
            state: Flight::Published,
            msg: msg("t", b"", QoS::AtLeastOnce),
            sent_ms: 0,
        });
        assert_eq!(s.take_pkid(), u16::MAX);
        assert_eq!(s.take_pkid(), 2, "0 is never used and 1 is in flight");
    }
}
