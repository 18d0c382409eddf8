//! PUBACK, PUBREC, PUBREL, PUBCOMP and UNSUBACK (3.4-3.7, 3.11): a packet identifier and nothing
//! else. PUBREL's 0b0010 flags are checked with the fixed header ([MQTT-3.6.1-1]).

use bytes::Bytes;

use super::reader::Reader;
use super::CodecError;

/// The body is exactly a non-zero packet identifier ([MQTT-2.3.1-1]).
pub(crate) fn decode(packet: &'static str, body: &Bytes) -> Result<u16, CodecError> {
    let mut r = Reader::new(body);
    let id = r.packet_id(packet)?;
    r.finish(packet)?;
    Ok(id)
}

/// Four bytes: the remaining length 2 fits one byte. On every QoS 1 and 2 message's path.
#[inline]
pub(crate) fn encode(byte1: u8, id: u16, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let [hi, lo] = id.to_be_bytes();
    out.extend_from_slice(&[byte1, 2, hi, lo]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{decode_one, roundtrip};
    use super::super::{CodecError, Packet};

    #[test]
    fn fixtures() {
        roundtrip(&[0x40, 0x02, 0x12, 0x34], Packet::Puback(0x1234));
        roundtrip(&[0x50, 0x02, 0x00, 0x01], Packet::Pubrec(1));
        roundtrip(&[0x62, 0x02, 0xff, 0xff], Packet::Pubrel(0xffff));
        roundtrip(&[0x70, 0x02, 0x00, 0x07], Packet::Pubcomp(7));
        roundtrip(&[0xb0, 0x02, 0x00, 0x09], Packet::Unsuback(9));
    }

    #[test]
    fn packet_id_0_mqtt_2_3_1_1() {
        for byte1 in [0x40, 0x50, 0x62, 0x70, 0xb0] {
            assert!(matches!(
                decode_one(&[byte1, 0x02, 0x00, 0x00]),
                Err(CodecError::PacketId { .. })
            ));
        }
    }

    #[test]
    fn wrong_lengths() {
        assert!(matches!(
            decode_one(&[0x40, 0x01, 0x01]),
            Err(CodecError::Truncated { .. })
        ));
        assert!(matches!(
            decode_one(&[0x40, 0x03, 0x00, 0x01, 0x00]),
            Err(CodecError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn pubrel_flags_mqtt_3_6_1_1() {
        assert!(matches!(
            decode_one(&[0x60, 0x02, 0x00, 0x01]),
            Err(CodecError::Flags { .. })
        ));
        assert!(matches!(
            decode_one(&[0x42, 0x02, 0x00, 0x01]),
            Err(CodecError::Flags { .. })
        ));
    }
}
