//! CONNACK (3.2): the session-present flag and a return code. Decoded for clients and tests; the
//! server only encodes it.

use bytes::Bytes;

use super::reader::Reader;
use super::{fixed, CodecError};

/// CONNACK return codes (Table 3.1); 6..255 are reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnackCode {
    Accepted = 0,
    UnacceptableProtocolVersion = 1,
    IdentifierRejected = 2,
    ServerUnavailable = 3,
    BadUsernameOrPassword = 4,
    NotAuthorized = 5,
}

impl ConnackCode {
    pub fn from_byte(b: u8) -> Option<ConnackCode> {
        use ConnackCode::*;
        Some(match b {
            0 => Accepted,
            1 => UnacceptableProtocolVersion,
            2 => IdentifierRejected,
            3 => ServerUnavailable,
            4 => BadUsernameOrPassword,
            5 => NotAuthorized,
            _ => return None,
        })
    }
}

/// CONNACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connack {
    /// Only with `Accepted` ([MQTT-3.2.2-4]).
    pub session_present: bool,
    pub code: ConnackCode,
}

/// Bits 7-1 of the acknowledge flags are reserved, 0 (3.2.2.1).
pub(crate) fn decode(body: &Bytes) -> Result<Connack, CodecError> {
    let mut r = Reader::new(body);
    let flags = r.u8("CONNACK flags")?;
    let code = r.u8("CONNACK return code")?;
    r.finish("CONNACK")?;
    if flags & 0xfe != 0 {
        return Err(CodecError::Invalid {
            field: "CONNACK flags",
            why: "reserved bits set",
        });
    }
    let code = ConnackCode::from_byte(code).ok_or(CodecError::Invalid {
        field: "CONNACK return code",
        why: "reserved return code",
    })?;
    let session_present = flags == 1;
    if session_present && code != ConnackCode::Accepted {
        return Err(CodecError::Invalid {
            field: "CONNACK flags",
            why: "session present with a refusal [MQTT-3.2.2-4]",
        });
    }
    Ok(Connack {
        session_present,
        code,
    })
}

pub(crate) fn encode(c: &Connack, out: &mut Vec<u8>) -> Result<(), CodecError> {
    fixed::write(0x20, 2, out)?;
    let present = c.session_present && c.code == ConnackCode::Accepted;
    out.extend_from_slice(&[u8::from(present), c.code as u8]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{decode_one, roundtrip};
    use super::super::{CodecError, Packet};
    use super::*;

    #[test]
    fn every_return_code() {
        for b in 0..=5u8 {
            let code = ConnackCode::from_byte(b).expect("0..5");
            let c = Connack {
                session_present: false,
                code,
            };
            roundtrip(&[0x20, 0x02, 0x00, b], Packet::Connack(c));
        }
        let present = Connack {
            session_present: true,
            code: ConnackCode::Accepted,
        };
        roundtrip(&[0x20, 0x02, 0x01, 0x00], Packet::Connack(present));
    }

    #[test]
    fn reserved_codes_and_bits() {
        assert!(matches!(
            decode_one(&[0x20, 2, 0, 6]),
            Err(CodecError::Invalid { .. })
        ));
        assert!(matches!(
            decode_one(&[0x20, 2, 0, 0xff]),
            Err(CodecError::Invalid { .. })
        ));
        assert!(matches!(
            decode_one(&[0x20, 2, 2, 0]),
            Err(CodecError::Invalid { .. })
        ));
        assert!(matches!(
            decode_one(&[0x20, 3, 0, 0, 0]),
            Err(CodecError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn session_present_only_when_accepted_mqtt_3_2_2_4() {
        assert!(matches!(
            decode_one(&[0x20, 2, 1, 5]),
            Err(CodecError::Invalid { .. })
        ));
        let mut out = Vec::new();
        let refused = Connack {
            session_present: true,
            code: ConnackCode::NotAuthorized,
        };
        encode(&refused, &mut out).expect("fits");
        assert_eq!(out, [0x20, 2, 0, 5]);
    }
}
