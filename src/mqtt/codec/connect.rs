//! CONNECT (3.1): protocol name and level, connect flags, keep-alive, then the payload fields the
//! flags announce, in the order of [MQTT-3.1.3-1]. Whether a client id is acceptable (empty, long,
//! unusual characters: [MQTT-3.1.3-5] to [MQTT-3.1.3-9]) is the session layer's decision; the
//! codec accepts any valid UTF-8 string and returns an empty one as empty.

use bytes::Bytes;

use super::reader::{put_binary, Reader};
use super::{fixed, strings, topic, CodecError, QoS};

/// The will message published if the connection ends abnormally (3.1.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// A topic name: no wildcards, since the will is published to it.
    pub topic: String,
    pub message: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

/// CONNECT of protocol level 4 (other levels fail with [`CodecError::ProtocolLevel`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub clean_session: bool,
    /// Seconds; 0 turns keep-alive off (3.1.2.10).
    pub keep_alive: u16,
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    /// Binary data (3.1.3.5), not a string.
    pub password: Option<Bytes>,
}

const RESERVED: u8 = 0x01;
const CLEAN_SESSION: u8 = 0x02;
const WILL: u8 = 0x04;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

pub(crate) fn decode(body: &Bytes) -> Result<Connect, CodecError> {
    let mut r = Reader::new(body);
    let name = r.binary("protocol name")?;
    if name.as_ref() != b"MQTT" {
        return Err(CodecError::ProtocolName);
    }
    // Checked before the rest: an MQTT 5 CONNECT has fields this decoder would call malformed,
    // and must still be answered with 0x01 ([MQTT-3.1.2-2]).
    let level = r.u8("protocol level")?;
    if level != 4 {
        return Err(CodecError::ProtocolLevel(level));
    }
    let flags = r.u8("connect flags")?;
    let will_qos = check_flags(flags)?;
    let keep_alive = r.u16("keep alive")?;
    let client_id = strings::read(&mut r, "client identifier")?;
    let will = match will_qos {
        Some(qos) => Some(read_will(&mut r, qos, flags & WILL_RETAIN != 0)?),
        None => None,
    };
    let username = match flags & USERNAME {
        0 => None,
        _ => Some(strings::read(&mut r, "user name")?),
    };
    let password = match flags & PASSWORD {
        0 => None,
        _ => Some(r.binary("password")?),
    };
    r.finish("CONNECT")?;
    Ok(Connect {
        clean_session: flags & CLEAN_SESSION != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
    })
}

/// Checks the connect flags (3.1.2.3); returns the will QoS when the will flag is set.
fn check_flags(flags: u8) -> Result<Option<QoS>, CodecError> {
    let invalid = |why| {
        Err(CodecError::Invalid {
            field: "connect flags",
            why,
        })
    };
    if flags & RESERVED != 0 {
        return invalid("reserved bit set [MQTT-3.1.2-3]");
    }
    if flags & PASSWORD != 0 && flags & USERNAME == 0 {
        return invalid("password without user name [MQTT-3.1.2-22]");
    }
    let qos_bits = (flags >> 3) & 3;
    if flags & WILL == 0 {
        if qos_bits != 0 {
            return invalid("will QoS without will flag [MQTT-3.1.2-13]");
        }
        if flags & WILL_RETAIN != 0 {
            return invalid("will retain without will flag [MQTT-3.1.2-15]");
        }
        return Ok(None);
    }
    match QoS::from_bits(qos_bits) {
        Some(q) => Ok(Some(q)),
        None => invalid("will QoS 3 [MQTT-3.1.2-14]"),
    }
}

fn read_will(r: &mut Reader<'_>, qos: QoS, retain: bool) -> Result<Will, CodecError> {
    let topic = strings::read(r, "will topic")?;
    topic::validate_name(&topic, "will topic")?;
    let message = r.binary("will message")?;
    Ok(Will {
        topic,
        message,
        qos,
        retain,
    })
}

pub(crate) fn encode(c: &Connect, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let mut flags = 0u8;
    let mut len = 10 + strings::wire_len(&c.client_id);
    if c.clean_session {
        flags |= CLEAN_SESSION;
    }
    if let Some(w) = &c.will {
        flags |= WILL | (w.qos as u8) << 3;
        if w.retain {
            flags |= WILL_RETAIN;
        }
        len += strings::wire_len(&w.topic) + 2 + w.message.len();
    }
    if let Some(u) = &c.username {
        flags |= USERNAME;
        len += strings::wire_len(u);
    }
    if let Some(p) = &c.password {
        flags |= PASSWORD;
        len += 2 + p.len();
    }
    fixed::write(0x10, len, out)?;
    out.extend_from_slice(b"\x00\x04MQTT\x04");
    out.push(flags);
    out.extend_from_slice(&c.keep_alive.to_be_bytes());
    strings::put(&c.client_id, "client identifier", out)?;
    if let Some(w) = &c.will {
        strings::put(&w.topic, "will topic", out)?;
        put_binary(&w.message, "will message", out)?;
    }
    if let Some(u) = &c.username {
        strings::put(u, "user name", out)?;
    }
    if let Some(p) = &c.password {
        put_binary(p, "password", out)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "connect_tests.rs"]
mod tests;
