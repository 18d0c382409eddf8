//! MQTT 3.1.1 codec: bytes to [`Packet`] and back, with every field checked against the OASIS
//! standard (statement ids such as [MQTT-3.1.2-3] are quoted where a rule is enforced).
//!
//! The worker's MQTT connection calls [`Decoder::decode`] on its read buffer and [`encode`] on its
//! write buffer; the session layer sees only whole, valid packets. A [`CodecError`] closes that
//! connection and nothing else ([MQTT-4.8.0-1]); [`CodecError::connack_code`] says which CONNACK to
//! send first. The codec never panics on input, never blocks and never touches sockets.

mod connack;
mod connect;
mod fixed;
mod ping;
mod puback;
mod publish;
mod reader;
mod strings;
mod suback;
mod subscribe;
mod topic;
mod unsubscribe;

#[cfg(test)]
mod tests;

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

pub use connack::{Connack, ConnackCode};
pub use connect::{Connect, Will};
pub use publish::{encode_publish, Publish};
pub use suback::{Suback, SubackCode};
pub use subscribe::Subscribe;
pub use topic::{validate_filter, validate_name};
pub use unsubscribe::Unsubscribe;

/// Largest remaining length four bytes can carry (2.2.3): 256 MiB - 1.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Most the decoder reserves ahead for a packet whose body has not arrived yet.
const RESERVE_CAP: usize = 64 * 1024;

/// Quality of service of a message or subscription (4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// QoS from its two-bit wire value; 3 is malformed ([MQTT-3.3.1-4], [MQTT-3.1.2-14]).
    pub fn from_bits(bits: u8) -> Option<QoS> {
        match bits {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// One MQTT control packet (2.2.1: the 14 types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    Connack(Connack),
    Publish(Publish),
    /// PUBACK with its packet identifier.
    Puback(u16),
    Pubrec(u16),
    Pubrel(u16),
    Pubcomp(u16),
    Subscribe(Subscribe),
    Suback(Suback),
    Unsubscribe(Unsubscribe),
    /// UNSUBACK with its packet identifier.
    Unsuback(u16),
    Pingreq,
    Pingresp,
    Disconnect,
}

/// What was wrong with the bytes (for the connection's one log line) and how to close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// Packet type 0 or 15 (2.2.1: reserved).
    ReservedType(u8),
    /// Fixed-header flags not those of Table 2.2 for this type ([MQTT-2.2.2-2]).
    Flags { packet: &'static str, flags: u8 },
    /// A fifth remaining-length byte (2.2.3: at most four).
    RemainingLength,
    /// The fixed header announces a packet over `max_packet_size`.
    TooLarge { size: usize, max: usize },
    /// The remaining length ends inside `field`.
    Truncated { field: &'static str },
    /// Bytes after the last field of a packet with a fixed layout.
    TrailingBytes { packet: &'static str },
    /// Ill-formed UTF-8 ([MQTT-1.5.3-1]).
    Utf8 { field: &'static str },
    /// U+0000 in a string ([MQTT-1.5.3-2]).
    NullChar { field: &'static str },
    /// A topic name or filter breaking 4.7.
    Topic {
        field: &'static str,
        why: &'static str,
    },
    /// Packet identifier 0 ([MQTT-2.3.1-1]).
    PacketId { packet: &'static str },
    /// Protocol name other than "MQTT" ([MQTT-3.1.2-1]): close without CONNACK.
    ProtocolName,
    /// Protocol level other than 4: answer CONNACK 0x01, then close ([MQTT-3.1.2-2]).
    ProtocolLevel(u8),
    /// Any other field rule (reserved bits, QoS 3, flag consistency, empty lists, codes).
    Invalid {
        field: &'static str,
        why: &'static str,
    },
    /// Encoding only: a string or binary field over 65,535 bytes, or a packet over 256 MiB.
    TooLong { field: &'static str },
}

impl CodecError {
    /// The CONNACK return code to send before closing, where the standard gives one.
    pub fn connack_code(&self) -> Option<ConnackCode> {
        match self {
            CodecError::ProtocolLevel(_) => Some(ConnackCode::UnacceptableProtocolVersion),
            _ => None,
        }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CodecError::*;
        match self {
            ReservedType(t) => write!(f, "reserved packet type {t}"),
            Flags { packet, flags } => {
                write!(f, "{packet}: invalid fixed-header flags {flags:#06b}")
            }
            RemainingLength => f.write_str("remaining length longer than 4 bytes"),
            TooLarge { size, max } => {
                write!(f, "packet of {size} bytes over max_packet_size {max}")
            }
            Truncated { field } => write!(f, "{field}: truncated"),
            TrailingBytes { packet } => write!(f, "{packet}: bytes after the last field"),
            Utf8 { field } => write!(f, "{field}: ill-formed UTF-8"),
            NullChar { field } => write!(f, "{field}: contains U+0000"),
            Topic { field, why } | Invalid { field, why } => write!(f, "{field}: {why}"),
            PacketId { packet } => write!(f, "{packet}: packet identifier 0"),
            ProtocolName => f.write_str("CONNECT: protocol name is not MQTT"),
            ProtocolLevel(l) => write!(f, "CONNECT: unsupported protocol level {l}"),
            TooLong { field } => write!(f, "{field}: too long to encode"),
        }
    }
}

impl std::error::Error for CodecError {}

/// A framing decoder over a connection's read buffer.
pub trait Decode {
    /// `Ok(None)`: need more bytes. An error closes this connection only.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, CodecError>;
}

/// MQTT decoder; `max_packet_size` bounds a whole packet, fixed header included (as mosquitto's
/// `max_packet_size`), and is checked as soon as the fixed header is complete.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    pub max_packet_size: usize,
}

impl Decode for Decoder {
    /// Consumes exactly one packet's bytes on success and nothing otherwise.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        let Some(head) = fixed::parse(buf)? else {
            return Ok(None);
        };
        let size = head.len + head.remaining;
        if size > self.max_packet_size {
            return Err(CodecError::TooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        if buf.len() < size {
            // Capped: five bytes from a client must not make the server allocate megabytes.
            buf.reserve((size - buf.len()).min(RESERVE_CAP));
            return Ok(None);
        }
        buf.advance(head.len);
        let body = buf.split_to(head.remaining).freeze();
        decode_body(head.byte1, body).map(Some)
    }
}

/// Decodes a body whose fixed header has passed [`fixed::parse`] (type and flags checked).
fn decode_body(byte1: u8, body: Bytes) -> Result<Packet, CodecError> {
    let flags = byte1 & 0x0f;
    match byte1 >> 4 {
        1 => connect::decode(&body).map(Packet::Connect),
        2 => connack::decode(&body).map(Packet::Connack),
        3 => publish::decode(flags, body).map(Packet::Publish),
        4 => puback::decode("PUBACK", &body).map(Packet::Puback),
        5 => puback::decode("PUBREC", &body).map(Packet::Pubrec),
        6 => puback::decode("PUBREL", &body).map(Packet::Pubrel),
        7 => puback::decode("PUBCOMP", &body).map(Packet::Pubcomp),
        8 => subscribe::decode(&body).map(Packet::Subscribe),
        9 => suback::decode(&body).map(Packet::Suback),
        10 => unsubscribe::decode(&body).map(Packet::Unsubscribe),
        11 => puback::decode("UNSUBACK", &body).map(Packet::Unsuback),
        12 => ping::decode("PINGREQ", &body, Packet::Pingreq),
        13 => ping::decode("PINGRESP", &body, Packet::Pingresp),
        14 => ping::decode("DISCONNECT", &body, Packet::Disconnect),
        t => Err(CodecError::ReservedType(t)),
    }
}

/// Appends `p`'s wire form to `out`. On error (a field too long for its length prefix) `out` is
/// left as it was.
pub fn encode(p: &Packet, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    let r = encode_inner(p, out);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn encode_inner(p: &Packet, out: &mut Vec<u8>) -> Result<(), CodecError> {
    match p {
        Packet::Connect(c) => connect::encode(c, out),
        Packet::Connack(c) => connack::encode(c, out),
        Packet::Publish(p) => publish::encode(p, out),
        Packet::Puback(id) => puback::encode(0x40, *id, out),
        Packet::Pubrec(id) => puback::encode(0x50, *id, out),
        Packet::Pubrel(id) => puback::encode(0x62, *id, out),
        Packet::Pubcomp(id) => puback::encode(0x70, *id, out),
        Packet::Subscribe(s) => subscribe::encode(s, out),
        Packet::Suback(s) => suback::encode(s, out),
        Packet::Unsubscribe(u) => unsubscribe::encode(u, out),
        Packet::Unsuback(id) => puback::encode(0xb0, *id, out),
        Packet::Pingreq => ping::encode(0xc0, out),
        Packet::Pingresp => ping::encode(0xd0, out),
        Packet::Disconnect => ping::encode(0xe0, out),
    }
}

/// Fuzz and property check: `data` decoded whole and byte by byte gives the same packets and the
/// same error, nothing panics, and every decoded packet survives encode -> decode.
pub fn fuzz_decode(data: &[u8]) {
    let whole = decode_all(data, data.len().max(1));
    let trickled = decode_all(data, 1);
    assert_eq!(whole, trickled, "result depends on how input is split");
    for p in &whole.0 {
        let mut out = Vec::new();
        encode(p, &mut out).expect("a decoded packet fits its length prefixes");
        let again = decode_all(&out, out.len());
        assert_eq!(
            again.0.as_slice(),
            std::slice::from_ref(p),
            "re-encoding changed it"
        );
        assert_eq!(again.1, None, "re-encoding made it invalid");
    }
}

/// Feeds `data` in `step`-byte pieces; returns the packets and the error that stopped it.
fn decode_all(data: &[u8], step: usize) -> (Vec<Packet>, Option<CodecError>) {
    let mut dec = Decoder {
        max_packet_size: 1 << 16,
    };
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(p)) => packets.push(p),
                Ok(None) => break,
                Err(e) => return (packets, Some(e)),
            }
        }
    }
    (packets, None)
}
