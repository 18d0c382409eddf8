//! SUBACK (3.9): a packet identifier and one return code per requested filter: the granted QoS
//! or 0x80 for a refusal; every other value is reserved ([MQTT-3.9.3-2]).

use bytes::Bytes;

use super::reader::Reader;
use super::{fixed, CodecError, QoS};

/// One SUBACK return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubackCode {
    Granted(QoS),
    /// 0x80.
    Failure,
}

impl SubackCode {
    fn byte(self) -> u8 {
        match self {
            SubackCode::Granted(q) => q as u8,
            SubackCode::Failure => 0x80,
        }
    }
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suback {
    pub pkid: u16,
    /// In the order of the SUBSCRIBE's filters ([MQTT-3.9.3-1]).
    pub codes: Vec<SubackCode>,
}

pub(crate) fn decode(body: &Bytes) -> Result<Suback, CodecError> {
    let mut r = Reader::new(body);
    let pkid = r.packet_id("SUBACK")?;
    let mut codes = Vec::new();
    while !r.is_empty() {
        let code = match r.u8("SUBACK return code")? {
            0x80 => SubackCode::Failure,
            b => SubackCode::Granted(QoS::from_bits(b).ok_or(CodecError::Invalid {
                field: "SUBACK return code",
                why: "reserved return code [MQTT-3.9.3-2]",
            })?),
        };
        codes.push(code);
    }
    if codes.is_empty() {
        return Err(CodecError::Invalid {
            field: "SUBACK payload",
            why: "no return code",
        });
    }
    Ok(Suback { pkid, codes })
}

pub(crate) fn encode(s: &Suback, out: &mut Vec<u8>) -> Result<(), CodecError> {
    fixed::write(0x90, 2 + s.codes.len(), out)?;
    out.extend_from_slice(&s.pkid.to_be_bytes());
    out.extend(s.codes.iter().map(|c| c.byte()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{decode_one, roundtrip};
    use super::super::{CodecError, Packet};
    use super::*;

    #[test]
    fn every_return_code() {
        let s = Suback {
            pkid: 7,
            codes: vec![
                SubackCode::Granted(QoS::AtMostOnce),
                SubackCode::Granted(QoS::AtLeastOnce),
                SubackCode::Granted(QoS::ExactlyOnce),
                SubackCode::Failure,
            ],
        };
        roundtrip(b"\x90\x06\x00\x07\x00\x01\x02\x80", Packet::Suback(s));
    }

    #[test]
    fn reserved_codes_mqtt_3_9_3_2() {
        for b in [3u8, 0x81, 0xff] {
            assert!(matches!(
                decode_one(&[0x90, 3, 0, 1, b]),
                Err(CodecError::Invalid { .. })
            ));
        }
    }

    #[test]
    fn empty_and_id_0() {
        assert!(matches!(
            decode_one(&[0x90, 2, 0, 1]),
            Err(CodecError::Invalid { .. })
        ));
        assert!(matches!(
            decode_one(&[0x90, 3, 0, 0, 0]),
            Err(CodecError::PacketId { .. })
        ));
    }
}
