//! PINGREQ, PINGRESP and DISCONNECT (3.12, 3.13, 3.14): a fixed header and nothing else.

use super::{CodecError, Packet};

/// The remaining length of these packets is 0; anything after the header is malformed.
pub(crate) fn decode(name: &'static str, body: &[u8], p: Packet) -> Result<Packet, CodecError> {
    if body.is_empty() {
        Ok(p)
    } else {
        Err(CodecError::TrailingBytes { packet: name })
    }
}

pub(crate) fn encode(byte1: u8, out: &mut Vec<u8>) -> Result<(), CodecError> {
    out.extend_from_slice(&[byte1, 0]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{decode_one, roundtrip};
    use super::super::{CodecError, Packet};

    #[test]
    fn fixtures() {
        roundtrip(&[0xc0, 0x00], Packet::Pingreq);
        roundtrip(&[0xd0, 0x00], Packet::Pingresp);
        roundtrip(&[0xe0, 0x00], Packet::Disconnect);
    }

    #[test]
    fn remaining_length_must_be_0() {
        for byte1 in [0xc0, 0xd0, 0xe0] {
            assert!(matches!(
                decode_one(&[byte1, 1, 0]),
                Err(CodecError::TrailingBytes { .. })
            ));
        }
    }

    #[test]
    fn disconnect_flags_mqtt_3_14_1_1() {
        assert!(matches!(
            decode_one(&[0xe1, 0]),
            Err(CodecError::Flags { .. })
        ));
    }
}
