//! MQTT 3.1.1 packets as the load generator needs them: encoders for what a client sends
//! (CONNECT, PUBLISH, PUBACK, SUBSCRIBE, PINGREQ, DISCONNECT) and a decoder for what a broker
//! answers (CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP).
//!
//! The generator's hot loops call these for every message, so nothing here allocates: encoders
//! append to the caller's buffer and the decoder returns a small value with the fields the
//! scenarios measure (the payload's timestamp and sequence number), never the payload itself.
//! It never blocks and never panics on what a broker sends.

use std::fmt;
use std::sync::OnceLock;

/// Bytes in every payload the generator sends: a send timestamp and a sequence number.
pub const PAYLOAD_LEN: usize = 16;

/// Bits of a payload's sequence word that hold the sequence number; the bits above hold the
/// generator's run tag.
const SEQ_BITS: u32 = 40;

/// This process's run tag (its process id, 24 bits). A receiver ignores payloads with another
/// tag: messages an earlier run left queued in the broker must not count as this run's.
fn run_tag() -> u64 {
    static TAG: OnceLock<u64> = OnceLock::new();
    *TAG.get_or_init(|| u64::from(std::process::id()) & 0xff_ffff)
}

/// The payload: nanoseconds since the generator started, then the run tag and a sequence
/// number, both big-endian. Latency is receive time minus the first field.
pub fn payload(stamp_ns: u64, seq: u64) -> [u8; PAYLOAD_LEN] {
    let mut p = [0u8; PAYLOAD_LEN];
    let word = run_tag() << SEQ_BITS | (seq & ((1 << SEQ_BITS) - 1));
    p[..8].copy_from_slice(&stamp_ns.to_be_bytes());
    p[8..].copy_from_slice(&word.to_be_bytes());
    p
}

/// A packet from the broker, reduced to what the scenarios look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet {
    ConnAck {
        code: u8,
    },
    PubAck {
        pkid: u16,
    },
    SubAck {
        pkid: u16,
        granted: u8,
    },
    /// `stamp`: (timestamp, sequence) if the payload is this run's, else `None`.
    Publish {
        qos: u8,
        pkid: u16,
        stamp: Option<(u64, u64)>,
    },
    PingResp,
}

/// What the broker sent that this generator does not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    RemainingLength,
    Unexpected {
        kind: u8,
    },
    Malformed {
        kind: &'static str,
        why: &'static str,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::RemainingLength => write!(f, "remaining length longer than 4 bytes"),
            WireError::Unexpected { kind } => write!(f, "unexpected packet type {kind}"),
            WireError::Malformed { kind, why } => write!(f, "malformed {kind}: {why}"),
        }
    }
}

fn put_remaining_len(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// CONNECT with a clean session, no will, no user name.
pub fn connect(out: &mut Vec<u8>, client_id: &str, keep_alive_s: u16) {
    connect_with(out, client_id, None, keep_alive_s);
}

/// CONNECT with a clean session, no will, and a user name and password: a sensor's login,
/// where the client id is the device id and so is the user name.
pub fn connect_login(out: &mut Vec<u8>, device: &str, password: &str, keep_alive_s: u16) {
    connect_with(out, device, Some((device, password)), keep_alive_s);
}

/// CONNECT with a clean session and no will, logging in as `login` (user name, password).
fn connect_with(
    out: &mut Vec<u8>,
    client_id: &str,
    login: Option<(&str, &str)>,
    keep_alive_s: u16,
) {
    let login_len = login.map_or(0, |(u, p)| 4 + u.len() + p.len());
    out.push(0x10);
    put_remaining_len(out, 10 + 2 + client_id.len() + login_len);
    put_str(out, b"MQTT");
    out.push(4);
    out.push(if login.is_some() { 0xc2 } else { 0x02 });
    out.extend_from_slice(&keep_alive_s.to_be_bytes());
    put_str(out, client_id.as_bytes());
    if let Some((user, password)) = login {
        put_str(out, user.as_bytes());
        put_str(out, password.as_bytes());
    }
}

/// PUBLISH, not retained, never a duplicate; `pkid` is ignored for QoS 0.
pub fn publish(out: &mut Vec<u8>, topic: &[u8], qos: u8, pkid: u16, payload: &[u8]) {
    let id_len = if qos > 0 { 2 } else { 0 };
    out.push(0x30 | (qos << 1));
    put_remaining_len(out, 2 + topic.len() + id_len + payload.len());
    put_str(out, topic);
    if qos > 0 {
        out.extend_from_slice(&pkid.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

pub fn puback(out: &mut Vec<u8>, pkid: u16) {
    out.extend_from_slice(&[0x40, 2]);
    out.extend_from_slice(&pkid.to_be_bytes());
}

/// SUBSCRIBE to one filter.
pub fn subscribe(out: &mut Vec<u8>, pkid: u16, filter: &[u8], qos: u8) {
    out.push(0x82);
    put_remaining_len(out, 2 + 2 + filter.len() + 1);
    out.extend_from_slice(&pkid.to_be_bytes());
    put_str(out, filter);
    out.push(qos);
}

pub fn pingreq(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xc0, 0]);
}

pub fn disconnect(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xe0, 0]);
}

/// One packet from the front of `buf`: `Ok(None)` until all of it is there, else the packet
/// and how many bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Packet, usize)>, WireError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    let mut at = 1;
    loop {
        let Some(&b) = buf.get(at) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7f) << (7 * (at - 1));
        at += 1;
        if b & 0x80 == 0 {
            break;
        }
        if at == 5 {
            return Err(WireError::RemainingLength);
        }
    }
    let Some(body) = buf.get(at..at + len) else {
        return Ok(None);
    };
    Ok(Some((packet(first, body)?, at + len)))
}

fn packet(first: u8, body: &[u8]) -> Result<Packet, WireError> {
    let id = |kind| {
        body.get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(WireError::Malformed {
                kind,
                why: "no packet identifier",
            })
    };
    match first >> 4 {
        2 => match body {
            [_, code] => Ok(Packet::ConnAck { code: *code }),
            _ => Err(WireError::Malformed {
                kind: "CONNACK",
                why: "length is not 2",
            }),
        },
        3 => publish_in(first, body),
        4 => Ok(Packet::PubAck {
            pkid: id("PUBACK")?,
        }),
        9 => match body {
            [_, _, granted, ..] => Ok(Packet::SubAck {
                pkid: id("SUBACK")?,
                granted: *granted,
            }),
            _ => Err(WireError::Malformed {
                kind: "SUBACK",
                why: "no return code",
            }),
        },
        13 => Ok(Packet::PingResp),
        kind => Err(WireError::Unexpected { kind }),
    }
}

fn publish_in(first: u8, body: &[u8]) -> Result<Packet, WireError> {
    let malformed = |why| WireError::Malformed {
        kind: "PUBLISH",
        why,
    };
    let qos = (first >> 1) & 3;
    let topic_len = match body {
        [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
        _ => return Err(malformed("no topic")),
    };
    let mut at = 2 + topic_len;
    let mut pkid = 0;
    if qos > 0 {
        let b = body
            .get(at..at + 2)
            .ok_or(malformed("no packet identifier"))?;
        pkid = u16::from_be_bytes([b[0], b[1]]);
        at += 2;
    }
    let payload = body
        .get(at..)
        .ok_or(malformed("topic longer than the packet"))?;
    let stamp = <[u8; PAYLOAD_LEN]>::try_from(payload).ok().map(|p| {
        let [t, s] = [&p[..8], &p[8..]]
            .map(|w| u64::from_be_bytes(w.try_into().expect("8 of the 16 payload bytes")));
        (t, s)
    });
    let stamp = stamp.filter(|(_, s)| s >> SEQ_BITS == run_tag());
    let stamp = stamp.map(|(t, s)| (t, s & ((1 << SEQ_BITS) - 1)));
    Ok(Packet::Publish { qos, pkid, stamp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_round_trip() {
        let mut out = Vec::new();
        publish(&mut out, b"sensors/7/counter", 1, 513, &payload(42, 9));
        assert_eq!(&out[..2], &[0x32, 2 + 17 + 2 + 16]);
        let (p, used) = decode(&out).expect("valid").expect("complete");
        assert_eq!(used, out.len());
        assert_eq!(
            p,
            Packet::Publish {
                qos: 1,
                pkid: 513,
                stamp: Some((42, 9))
            }
        );
        assert_eq!(decode(&out[..used - 1]), Ok(None));
    }

    #[test]
    fn login_connect_is_what_the_server_decodes() {
        use bizzy::mqtt::codec::{Decode, Decoder, Packet as Server};
        let mut out = Vec::new();
        connect_login(&mut out, "live-7", "s3cret", 900);
        let mut buf = bytes::BytesMut::from(&out[..]);
        let decoded = Decoder {
            max_packet_size: 1 << 16,
        }
        .decode(&mut buf);
        let Ok(Some(Server::Connect(c))) = decoded else {
            panic!("not a CONNECT: {decoded:?}");
        };
        assert!(buf.is_empty());
        assert_eq!(
            (c.client_id.as_str(), c.username.as_deref(), c.keep_alive),
            ("live-7", Some("live-7"), 900)
        );
        assert_eq!(c.password.as_deref(), Some(&b"s3cret"[..]));
        assert!(c.clean_session);
    }

    #[test]
    fn foreign_payload_has_no_stamp() {
        let mut theirs = payload(42, 9);
        theirs[8] ^= 0x80;
        let mut out = Vec::new();
        publish(&mut out, b"t", 0, 0, &theirs);
        let (p, _) = decode(&out).expect("valid").expect("complete");
        assert_eq!(
            p,
            Packet::Publish {
                qos: 0,
                pkid: 0,
                stamp: None
            }
        );
    }

    #[test]
    fn long_remaining_length() {
        let mut out = Vec::new();
        publish(&mut out, &[b'a'; 200], 0, 0, b"x");
        assert_eq!(&out[..3], &[0x30, 203 % 128 | 0x80, 1]);
        let (p, _) = decode(&out).expect("valid").expect("complete");
        assert_eq!(
            p,
            Packet::Publish {
                qos: 0,
                pkid: 0,
                stamp: None
            }
        );
    }

    #[test]
    fn acks() {
        assert_eq!(
            decode(&[0x20, 2, 0, 5]),
            Ok(Some((Packet::ConnAck { code: 5 }, 4)))
        );
        assert_eq!(
            decode(&[0x40, 2, 1, 2]),
            Ok(Some((Packet::PubAck { pkid: 258 }, 4)))
        );
        let suback = [0x90, 3, 0, 1, 0x80];
        assert_eq!(
            decode(&suback),
            Ok(Some((
                Packet::SubAck {
                    pkid: 1,
                    granted: 0x80
                },
                5
            )))
        );
        assert_eq!(decode(&[0xd0, 0]), Ok(Some((Packet::PingResp, 2))));
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(
            decode(&[0x30, 0xff, 0xff, 0xff, 0xff, 1]),
            Err(WireError::RemainingLength)
        );
        assert_eq!(
            decode(&[0x50, 2, 0, 1]),
            Err(WireError::Unexpected { kind: 5 })
        );
        assert!(decode(&[0x32, 3, 0, 1, b'a']).is_err());
        assert!(decode(&[0x20, 1, 0]).is_err());
    }
}
