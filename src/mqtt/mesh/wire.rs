//! The byte layout under the sibling protocol's frames (`frame.rs`): little-endian integers,
//! length-prefixed byte strings, and a whole session (subscriptions, in-flight and queued
//! messages, held identifiers) for a session that moves to another worker. Decoding checks
//! every length and never panics.

use std::sync::Arc;

use bytes::Bytes;

use crate::mqtt::codec::{QoS, Will};
use crate::mqtt::session::{Flight, HeldAck, Inflight, Message, Session};
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
}
