//! The sibling protocol: every frame two workers of a node exchange over their link, as one
//! enum with one encoder ([`Frame::encode`]) and one decoder ([`Frame::decode`]), as `codec/` is
//! for MQTT packets.
//!
//! A frame is a kind byte and a body; integers are little-endian. The kinds, by concern:
//!
//! | kind | frame | concern |
//! |---|---|---|
//! | `S` `U` | a filter this worker's clients started / stopped using | subscription forwarding |
//! | `P` | a message published by a client of the sender, for the receiver's subscribers | |
//! | `Y` | the end of the sender's filter snapshot for a new link | |
//! | `B` `A` | a barrier and its answer: everything sent before `B` is applied | |
//! | `R` | a retained message (or its removal) with its Lamport stamp | retained replica |
//! | `L` | the worker slots the sender is linked to | reloads |
//! | `C` `c` | a socket (attached) that sent its CONNECT to the wrong worker / none yet | moving clients |
//! | `H` `O` | a session with its live socket (attached) / without a connection | |
//! | `D` | a message a stub sends on to the session it stood for | switch (`broker/switch.rs`) |
//! | `W` `J` `K` `k` | the switch markers | |
//! | `F` `f` `G` | the fence of a moving publisher | |
//!
//! Frames only ever come from a sibling worker of the same binary: one that does not decode is
//! a bug, and the link is closed. Decoding never panics.

use std::sync::Arc;

use bytes::Bytes;

use crate::core::queue::Msg;
use crate::log;
use crate::mqtt::codec::QoS;
use crate::mqtt::mesh::wire::{self, Malformed, Reader, Writer};
use crate::mqtt::session::{Message, Session};

/// Lamport stamp of a retained message: (counter, worker slot). Every worker keeps the whole
/// retained store; a change carries its stamp, and the largest stamp wins everywhere, in
/// whatever order the changes arrive.
pub type Stamp = (u64, u16);

/// The largest frame the ipc transport carries, less room for the headers.
const MAX_SESSION_FRAME: usize = crate::core::queue::ipc::MAX_FRAME - 1024;

/// One frame between two workers.
#[derive(Debug)]
pub enum Frame {
    /// `S`: a filter the sender's clients started using.
    Subscribe(Box<str>),
    /// `U`: a filter no client of the sender uses any more.
    Unsubscribe(Box<str>),
    /// `P`: a message a client of the sender published.
    Publish(Message),
    /// `Y`: the sender's filters are all sent (the end of a new link's snapshot).
    SnapshotEnd,
    /// `L`: the slots of the workers the sender is linked to.
    Links(Vec<u16>),
    /// `B`: answer `A` once everything sent before is applied.
    Barrier(u64),
    /// `A`: the answer to barrier `B`.
    BarrierPassed(u64),
    /// `R`: a retained message, or its removal (an empty payload), with its stamp.
    Retained { msg: Message, stamp: Stamp },
    /// `D`: a message for a session that moved to the receiver, sent on by its stub.
    Directed { client_id: Box<str>, msg: Message },
    /// `W`: the sender took client `client_id` from the worker in `old_slot`.
    Switch { client_id: Box<str>, old_slot: u16 },
    /// `J`: the sender's direct messages for the client are new from here on; `no_relay`:
    /// nothing of the sender's comes through the old worker either.
    Direct { client_id: Box<str>, no_relay: bool },
    /// `K`: the sender sends the old worker nothing more for the client.
    OriginSwitched { client_id: Box<str> },
    /// `k`: the old worker has sent on everything it will from the origin in `origin_slot`.
    RelayedAll {
        client_id: Box<str>,
        origin_slot: u16,
    },
    /// `F`: everything the old worker forwarded for the client is ahead of this frame; tell
    /// the new worker in `new_slot`.
    Fence { client_id: Box<str>, new_slot: u16 },
    /// `f`: the slots whose `G` the moved client waits for.
    FenceList {
        client_id: Box<str>,
        slots: Vec<u16>,
    },
    /// `G`: the sender has passed what the old worker forwarded for the client.
    FencePassed { client_id: Box<str> },
    /// `C`: a connection (its socket attached) whose CONNECT belongs to the receiver: the
    /// CONNECT re-encoded and whatever the client sent after it.
    Handed { read: Vec<u8> },
    /// `c`: a connection (its socket attached) from a stopping worker that has not sent its
    /// CONNECT yet, with what was read of it.
    Raw { read: Vec<u8> },
    /// `H`: a live connection (its socket attached) with its session: its keep-alive and the
    /// bytes read and not processed.
    Live {
        keep_alive: u16,
        read: Vec<u8>,
        session: Box<Session>,
    },
    /// `O`: a session whose client is away.
    Offline(Box<Session>),
}

impl Frame {
    /// Whether the frame travels with a socket.
    pub fn carries_socket(&self) -> bool {
        matches!(
            self,
            Frame::Handed { .. } | Frame::Raw { .. } | Frame::Live { .. }
        )
    }

    /// The frame's bytes.
    pub fn encode(&self) -> Msg {
        match self {
            Frame::Subscribe(f) => Msg::from_parts(&[b"S", f.as_bytes()]),
            Frame::Unsubscribe(f) => Msg::from_parts(&[b"U", f.as_bytes()]),
            Frame::Publish(msg) => encode_publish(msg),
            Frame::SnapshotEnd => Msg::new(b"Y"),
            Frame::Links(slots) => {
                let mut w = Writer(vec![b'L']);
                for s in slots {
                    w.u16(*s);
                }
                Msg::new(&w.0)
            }
            Frame::Barrier(seq) => Msg::from_parts(&[b"B", &seq.to_le_bytes()]),
            Frame::BarrierPassed(seq) => Msg::from_parts(&[b"A", &seq.to_le_bytes()]),
            Frame::Retained { msg, stamp } => {
                let mut head = [0; 10];
                head[..8].copy_from_slice(&stamp.0.to_le_bytes());
                head[8..].copy_from_slice(&stamp.1.to_le_bytes());
                message(b'R', &head, msg)
            }
            Frame::Directed { client_id, msg } => {
                let mut head = Vec::with_capacity(2 + client_id.len());
                head.extend_from_slice(&(client_id.len() as u16).to_le_bytes());
                head.extend_from_slice(client_id.as_bytes());
                message(b'D', &head, msg)
            }
            Frame::Switch {
                client_id,
                old_slot,
            } => with_id(b'W', client_id, &old_slot.to_le_bytes()),
            Frame::Direct {
                client_id,
                no_relay,
            } => with_id(b'J', client_id, &[u8::from(*no_relay)]),
            Frame::OriginSwitched { client_id } => with_id(b'K', client_id, &[]),
            Frame::RelayedAll {
                client_id,
                origin_slot,
            } => with_id(b'k', client_id, &origin_slot.to_le_bytes()),
            Frame::Fence {
                client_id,
                new_slot,
            } => with_id(b'F', client_id, &new_slot.to_le_bytes()),
            Frame::FenceList { client_id, slots } => {
                let tail: Vec<u8> = slots.iter().flat_map(|s| s.to_le_bytes()).collect();
                with_id(b'f', client_id, &tail)
            }
            Frame::FencePassed { client_id } => with_id(b'G', client_id, &[]),
            Frame::Handed { read } => Msg::from_parts(&[b"C", read]),
            Frame::Raw { read } => Msg::from_parts(&[b"c", read]),
            Frame::Live {
                keep_alive,
                read,
                session,
            } => {
                let mut w = Writer(vec![b'H']);
                w.u16(*keep_alive);
                w.bytes(read);
                write_session(session, &mut w);
                Msg::new(&w.0)
            }
            Frame::Offline(session) => {
                let mut w = Writer(vec![b'O']);
                write_session(session, &mut w);
                Msg::new(&w.0)
            }
        }
    }

    /// Reads a frame; `now_ms` stamps the in-flight messages of a session that moves.
    pub fn decode(frame: &[u8], now_ms: u64) -> Result<Frame, Malformed> {
        let (&kind, body) = frame.split_first().ok_or(Malformed)?;
        Ok(match kind {
            b'S' => Frame::Subscribe(utf8(body)?.into()),
            b'U' => Frame::Unsubscribe(utf8(body)?.into()),
            b'P' => Frame::Publish(parse_message(body)?),
            b'Y' => Frame::SnapshotEnd,
            b'L' => Frame::Links(
                body.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            b'B' => Frame::Barrier(Reader(body).u64()?),
            b'A' => Frame::BarrierPassed(Reader(body).u64()?),
            b'R' => {
                let mut r = Reader(body);
                let stamp = (r.u64()?, r.u16()?);
                let msg = parse_message(r.0)?;
                Frame::Retained { msg, stamp }
            }
            b'D' => {
                let (client_id, rest) = parse_id(body)?;
                let msg = parse_message(rest)?;
                Frame::Directed { client_id, msg }
            }
            b'C' => Frame::Handed {
                read: body.to_vec(),
            },
            b'c' => Frame::Raw {
                read: body.to_vec(),
            },
            b'H' => {
                let mut r = Reader(body);
                let keep_alive = r.u16()?;
                let read = r.bytes()?.to_vec();
                let session = Box::new(read_session(&mut r, now_ms)?);
                Frame::Live {
                    keep_alive,
                    read,
                    session,
                }
            }
            b'O' => Frame::Offline(Box::new(read_session(&mut Reader(body), now_ms)?)),
            _ => decode_marker(kind, body)?,
        })
    }
}

/// `Frame::Publish(msg)`'s bytes, without the frame: the forwarding hot path encodes a
/// message it only borrows (a clone of its payload would cost an allocation per message).
pub fn encode_publish(msg: &Message) -> Msg {
    message(b'P', &[], msg)
}

/// The switch and fence frames: a client id, then what the kind carries.
fn decode_marker(kind: u8, body: &[u8]) -> Result<Frame, Malformed> {
    let (client_id, rest) = parse_id(body)?;
    let slot = || Reader(rest).u16();
    Ok(match kind {
        b'W' => Frame::Switch {
            client_id,
            old_slot: slot()?,
        },
        b'J' => Frame::Direct {
            client_id,
            no_relay: rest.first() == Some(&1),
        },
        b'K' => Frame::OriginSwitched { client_id },
        b'k' => Frame::RelayedAll {
            client_id,
            origin_slot: slot()?,
        },
        b'F' => Frame::Fence {
            client_id,
            new_slot: slot()?,
        },
        b'f' => Frame::FenceList {
            client_id,
            slots: rest
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        },
        b'G' => Frame::FencePassed { client_id },
        _ => return Err(Malformed),
    })
}

fn utf8(b: &[u8]) -> Result<&str, Malformed> {
    std::str::from_utf8(b).map_err(|_| Malformed)
}

/// `kind`, `head`, then `flags, topic length, topic, payload` (the payload runs to the end).
fn message(kind: u8, head: &[u8], msg: &Message) -> Msg {
    let flags = [msg.qos as u8 | u8::from(msg.retain) << 2];
    let len = (msg.topic.len() as u16).to_le_bytes();
    Msg::from_parts(&[
        &[kind],
        head,
        &flags,
        &len,
        msg.topic.as_bytes(),
        &msg.payload,
    ])
}

/// Reads `flags, topic length, topic, payload`.
fn parse_message(b: &[u8]) -> Result<Message, Malformed> {
    let (&flags, rest) = b.split_first().ok_or(Malformed)?;
    let mut r = Reader(rest);
    let len = usize::from(r.u16()?);
    let topic = utf8(r.0.get(..len).ok_or(Malformed)?)?;
    let payload = &r.0[len..];
    Ok(Message {
        topic: Arc::from(topic),
        payload: Bytes::copy_from_slice(payload),
        qos: QoS::from_bits(flags & 3).ok_or(Malformed)?,
        retain: flags & 4 != 0,
    })
}

/// `kind`, the client id (u16 length), `tail`.
fn with_id(kind: u8, id: &str, tail: &[u8]) -> Msg {
    let len = (id.len() as u16).to_le_bytes();
    Msg::from_parts(&[&[kind], &len, id.as_bytes(), tail])
}

/// Reads `id length, id, rest`.
fn parse_id(body: &[u8]) -> Result<(Box<str>, &[u8]), Malformed> {
    let mut r = Reader(body);
    let n = usize::from(r.u16()?);
    let id = utf8(r.0.get(..n).ok_or(Malformed)?)?;
    Ok((id.into(), &r.0[n..]))
}

/// The session, then its queued messages as many as fit in one frame (the rest are dropped and
/// logged: a queue of over 16 MiB is far past `max_queued` of sensor-sized messages).
fn write_session(s: &Session, w: &mut Writer) {
    wire::encode_session(s, w);
    let mut n = 0;
    let at = w.0.len();
    w.u32(0);
    for m in &s.queue {
        if w.0.len() + m.topic.len() + m.payload.len() + 16 > MAX_SESSION_FRAME {
            log!(
                Warn,
                "mqtt session {}: {} queued message(s) too many to move, dropped",
                s.client_id,
                s.queue.len() - n
            );
            break;
        }
        w.message(m);
        n += 1;
    }
    w.0[at..at + 4].copy_from_slice(&(n as u32).to_le_bytes());
}

fn read_session(r: &mut Reader<'_>, now_ms: u64) -> Result<Session, Malformed> {
    let mut s = wire::decode_session(r, now_ms)?;
    for _ in 0..r.u32()? {
        s.queue.push_back(r.message()?);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, payload: &'static [u8], qos: QoS, retain: bool) -> Message {
        Message {
            topic: topic.into(),
            payload: Bytes::from_static(payload),
            qos,
            retain,
        }
    }

    /// Every kind survives encode -> decode -> encode byte for byte, and every cut of it is
    /// refused or decodes to something else without a panic.
    #[test]
    fn every_frame_round_trips() {
        let mut session = Session::new("dev-1".into(), false);
        session
            .queue
            .push_back(msg("q/1", b"x", QoS::AtLeastOnce, false));
        let id: Box<str> = "dev-1".into();
        let frames = vec![
            Frame::Subscribe("a/+".into()),
            Frame::Unsubscribe("a/#".into()),
            Frame::Publish(msg("a/b", b"hello", QoS::ExactlyOnce, true)),
            Frame::SnapshotEnd,
            Frame::Links(vec![0, 3, 65535]),
            Frame::Barrier(u64::MAX),
            Frame::BarrierPassed(7),
            Frame::Retained {
                msg: msg("r", b"", QoS::AtMostOnce, true),
                stamp: (42, 1),
            },
            Frame::Directed {
                client_id: id.clone(),
                msg: msg("d", b"p", QoS::AtLeastOnce, false),
            },
            Frame::Switch {
                client_id: id.clone(),
                old_slot: 2,
            },
            Frame::Direct {
                client_id: id.clone(),
                no_relay: true,
            },
            Frame::OriginSwitched {
                client_id: id.clone(),
            },
            Frame::RelayedAll {
                client_id: id.clone(),
                origin_slot: 1,
            },
            Frame::Fence {
                client_id: id.clone(),
                new_slot: 4,
            },
            Frame::FenceList {
                client_id: id.clone(),
                slots: vec![1, 2],
            },
            Frame::FencePassed { client_id: id },
            Frame::Handed {
                read: b"\x10\x00".to_vec(),
            },
            Frame::Raw { read: Vec::new() },
            Frame::Live {
                keep_alive: 60,
                read: b"xy".to_vec(),
                session: Box::new(Session::new("c".into(), true)),
            },
            Frame::Offline(Box::new(session)),
        ];
        for f in &frames {
            let bytes = f.encode();
            let again = Frame::decode(bytes.as_bytes(), 0).unwrap();
            assert_eq!(again.encode().as_bytes(), bytes.as_bytes(), "{f:?}");
            for cut in 0..bytes.as_bytes().len() {
                let _ = Frame::decode(&bytes.as_bytes()[..cut], 0);
            }
        }
    }

    #[test]
    fn unknown_kinds_and_short_frames_are_refused() {
        assert!(Frame::decode(b"", 0).is_err());
        assert!(Frame::decode(b"Z", 0).is_err());
        assert!(Frame::decode(b"B\x01", 0).is_err());
        assert!(Frame::decode(b"P\x03\x05\x00ab", 0).is_err(), "qos 3");
        assert!(Frame::decode(b"W\x09\x00ab", 0).is_err());
    }
}
