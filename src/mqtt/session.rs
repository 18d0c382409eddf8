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

use crate::mqtt::codec::{self, QoS, Will};

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
    /// Filters and granted QoS, in the order subscribed (the tree holds the routing copy).
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

    /// Appends a two-byte acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK).
    pub fn write_ack(&mut self, byte1: u8, pkid: u16) {
        let id = pkid.to_be_bytes();
        self.out.extend_from_slice(&[byte1, 2, id[0], id[1]]);
    }

    /// Sends again what the client had not acknowledged when its connection ended, in the
    /// original order, PUBLISH with DUP set and PUBREL as it was ([MQTT-4.4.0-1]).
    pub fn resend_inflight(&mut self, now_ms: u64) {
        for i in 0..self.inflight.len() {
            let f = self.inflight[i].clone();
            match f.state {
                Flight::Published => self.write_publish(&f.msg, f.qos, f.msg.retain, true, f.pkid),
                Flight::Released => self.write_ack(0x62, f.pkid),
            }
            self.inflight[i].sent_ms = now_ms;
        }
    }

    /// The oldest unacknowledged send, for the stall check.
    pub fn oldest_inflight_ms(&self) -> Option<u64> {
        self.inflight.iter().map(|f| f.sent_ms).min()
    }
}

/// The wire form of a session moved to another worker: the session itself (subscriptions,
/// in-flight and queued messages, held identifiers) and, for a live connection, its keep-alive
/// and unread/unsent bytes. Little-endian, length-prefixed; decoding checks every length.
pub mod wire {
    use super::*;

    pub struct Writer(pub Vec<u8>);

    impl Writer {
        pub fn u8(&mut self, v: u8) {
            self.0.push(v);
        }
        pub fn u16(&mut self, v: u16) {
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        pub fn u32(&mut self, v: u32) {
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        pub fn u64(&mut self, v: u64) {
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        pub fn bytes(&mut self, b: &[u8]) {
            self.u32(b.len() as u32);
            self.0.extend_from_slice(b);
        }
        pub fn opt(&mut self, b: Option<&[u8]>) {
            match b {
                Some(b) => {
                    self.u8(1);
                    self.bytes(b);
                }
                None => self.u8(0),
            }
        }
        pub fn message(&mut self, m: &Message) {
            self.bytes(m.topic.as_bytes());
            self.bytes(&m.payload);
            self.u8(m.qos as u8 | u8::from(m.retain) << 2);
        }
    }

    /// Reads what [`Writer`] wrote; every read checks the length left.
    pub struct Reader<'a>(pub &'a [u8]);

    /// A frame from a sibling that does not parse: a bug or a version mismatch, never input
    /// from a client.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Malformed;

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
            if self.0.len() < n {
                return Err(Malformed);
            }
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            Ok(a)
        }
        pub fn u8(&mut self) -> Result<u8, Malformed> {
            Ok(self.take(1)?[0])
        }
        pub fn u16(&mut self) -> Result<u16, Malformed> {
            Ok(u16::from_le_bytes(
                self.take(2)?.try_into().unwrap_or([0; 2]),
            ))
        }
        pub fn u32(&mut self) -> Result<u32, Malformed> {
            Ok(u32::from_le_bytes(
                self.take(4)?.try_into().unwrap_or([0; 4]),
            ))
        }
        pub fn u64(&mut self) -> Result<u64, Malformed> {
            Ok(u64::from_le_bytes(
                self.take(8)?.try_into().unwrap_or([0; 8]),
            ))
        }
        pub fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
            let n = self.u32()? as usize;
            self.take(n)
        }
        pub fn str(&mut self) -> Result<&'a str, Malformed> {
            std::str::from_utf8(self.bytes()?).map_err(|_| Malformed)
        }
        pub fn opt(&mut self) -> Result<Option<&'a [u8]>, Malformed> {
            match self.u8()? {
                0 => Ok(None),
                1 => self.bytes().map(Some),
                _ => Err(Malformed),
            }
        }
        pub fn qos(&mut self) -> Result<QoS, Malformed> {
            QoS::from_bits(self.u8()?).ok_or(Malformed)
        }
        pub fn message(&mut self) -> Result<Message, Malformed> {
            let topic: Arc<str> = self.str()?.into();
            let payload = Bytes::copy_from_slice(self.bytes()?);
            let b = self.u8()?;
            Ok(Message {
                topic,
                payload,
                qos: QoS::from_bits(b & 3).ok_or(Malformed)?,
                retain: b & 4 != 0,
            })
        }
        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }

    /// Everything of `s` but its queued messages, which travel one per frame after it.
    pub fn encode_session(s: &Session, w: &mut Writer) {
        w.bytes(s.client_id.as_bytes());
        w.u8(u8::from(s.clean));
        w.opt(s.username.as_deref().map(str::as_bytes));
        match &s.will {
            Some(will) => {
                w.u8(1);
                w.bytes(will.topic.as_bytes());
                w.bytes(&will.message);
                w.u8(will.qos as u8 | u8::from(will.retain) << 2);
            }
            None => w.u8(0),
        }
        w.u32(s.subs.len() as u32);
        for (f, q) in &s.subs {
            w.bytes(f.as_bytes());
            w.u8(*q as u8);
        }
        w.bytes(&s.out);
        w.u32(s.inflight.len() as u32);
        for f in &s.inflight {
            w.u16(f.pkid);
            w.u8(f.qos as u8);
            w.u8(match f.state {
                Flight::Published => 0,
                Flight::Released => 1,
            });
            w.message(&f.msg);
        }
        w.u32(s.incoming.len() as u32);
        for id in &s.incoming {
            w.u16(*id);
        }
        // Held acknowledgements are sent before a session moves (the hook answered or the
        // worker waited for it); what is left is sent by the new owner at once.
        w.u32(s.held.len() as u32);
        for h in &s.held {
            w.u16(h.pkid);
            w.u8(h.qos as u8);
        }
        w.u16(s.next_pkid);
    }

    pub fn decode_session(r: &mut Reader<'_>, now_ms: u64) -> Result<Session, Malformed> {
        let id: Arc<str> = r.str()?.into();
        let clean = r.u8()? != 0;
        let mut s = Session::new(id, clean);
        s.username = match r.opt()? {
            Some(u) => Some(std::str::from_utf8(u).map_err(|_| Malformed)?.into()),
            None => None,
        };
        if r.u8()? == 1 {
            let topic = r.str()?.to_string();
            let message = Bytes::copy_from_slice(r.bytes()?);
            let b = r.u8()?;
            s.will = Some(Box::new(Will {
                topic,
                message,
                qos: QoS::from_bits(b & 3).ok_or(Malformed)?,
                retain: b & 4 != 0,
            }));
        }
        for _ in 0..r.u32()? {
            let f: Box<str> = r.str()?.into();
            s.subs.push((f, r.qos()?));
        }
        s.out = r.bytes()?.to_vec();
        for _ in 0..r.u32()? {
            let pkid = r.u16()?;
            let qos = r.qos()?;
            let state = match r.u8()? {
                0 => Flight::Published,
                1 => Flight::Released,
                _ => return Err(Malformed),
            };
            let msg = r.message()?;
            s.inflight.push_back(Inflight {
                pkid,
                qos,
                state,
                msg,
                sent_ms: now_ms,
            });
        }
        for _ in 0..r.u32()? {
            s.incoming.push(r.u16()?);
        }
        for _ in 0..r.u32()? {
            let pkid = r.u16()?;
            let qos = r.qos()?;
            s.held.push_back(HeldAck {
                pkid,
                qos,
                ticket: None,
            });
        }
        s.next_pkid = r.u16()?.max(1);
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::wire::*;
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
    fn a_session_survives_the_wire() {
        let mut s = Session::new("dev-1".into(), false);
        s.username = Some("u".into());
        s.will = Some(Box::new(Will {
            topic: "w/t".into(),
            message: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
        }));
        s.subs.push(("a/+".into(), QoS::ExactlyOnce));
        s.out.extend_from_slice(b"\x30\x03\x00\x01a");
        s.inflight.push_back(Inflight {
            pkid: 7,
            qos: QoS::ExactlyOnce,
            state: Flight::Released,
            msg: msg("a/b", b"x", QoS::ExactlyOnce),
            sent_ms: 1,
        });
        s.incoming.push(9);
        s.held.push_back(HeldAck {
            pkid: 3,
            qos: QoS::AtLeastOnce,
            ticket: Some(5),
        });
        s.next_pkid = 8;
        let mut w = Writer(Vec::new());
        encode_session(&s, &mut w);
        let mut r = Reader(&w.0);
        let t = decode_session(&mut r, 10).unwrap();
        assert!(r.is_empty());
        assert_eq!(&*t.client_id, "dev-1");
        assert!(!t.clean);
        assert_eq!(t.username.as_deref(), Some("u"));
        assert_eq!(t.will, s.will);
        assert_eq!(t.subs, s.subs);
        assert_eq!(t.out, s.out);
        assert_eq!(t.inflight[0].pkid, 7);
        assert_eq!(t.inflight[0].state, Flight::Released);
        assert_eq!(t.inflight[0].msg, s.inflight[0].msg);
        assert_eq!(t.incoming, vec![9]);
        assert_eq!(t.held[0].pkid, 3);
        assert_eq!(t.held[0].ticket, None);
        assert_eq!(t.next_pkid, 8);
        for cut in 0..w.0.len() {
            assert!(decode_session(&mut Reader(&w.0[..cut]), 0).is_err());
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
