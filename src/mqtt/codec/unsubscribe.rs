//! UNSUBSCRIBE (3.10): a packet identifier and one or more topic filters. UNSUBACK has the
//! PUBACK shape and lives in `puback.rs`.

use bytes::Bytes;

use super::reader::Reader;
use super::{fixed, strings, topic, CodecError};

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub pkid: u16,
    /// At least one ([MQTT-3.10.3-2]).
    pub filters: Vec<String>,
}

pub(crate) fn decode(body: &Bytes) -> Result<Unsubscribe, CodecError> {
    let mut r = Reader::new(body);
    let pkid = r.packet_id("UNSUBSCRIBE")?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = strings::read(&mut r, "topic filter")?;
        topic::validate_filter(&filter, "topic filter")?;
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(CodecError::Invalid {
            field: "UNSUBSCRIBE payload",
            why: "no topic filter [MQTT-3.10.3-2]",
        });
    }
    Ok(Unsubscribe { pkid, filters })
}

pub(crate) fn encode(u: &Unsubscribe, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let len = 2 + u
        .filters
        .iter()
        .map(|f| strings::wire_len(f))
        .sum::<usize>();
    fixed::write(0xa2, len, out)?;
    out.extend_from_slice(&u.pkid.to_be_bytes());
    for f in &u.filters {
        strings::put(f, "topic filter", out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{decode_one, roundtrip};
    use super::super::{CodecError, Packet};
    use super::*;

    #[test]
    fn fixture_two_filters() {
        let u = Unsubscribe {
            pkid: 0x0102,
            filters: vec!["a/b".into(), "+/#".into()],
        };
        roundtrip(
            b"\xa2\x0c\x01\x02\x00\x03a/b\x00\x03+/#",
            Packet::Unsubscribe(u),
        );
    }

    #[test]
    fn flags_mqtt_3_10_1_1() {
        assert!(matches!(
            decode_one(b"\xa0\x05\x00\x01\x00\x01a"),
            Err(CodecError::Flags { .. })
        ));
    }

    #[test]
    fn no_filters_mqtt_3_10_3_2() {
        assert!(matches!(
            decode_one(b"\xa2\x02\x00\x01"),
            Err(CodecError::Invalid { .. })
        ));
    }

    #[test]
    fn filter_rules_and_utf8_mqtt_3_10_3_1() {
        assert!(matches!(
            decode_one(b"\xa2\x06\x00\x01\x00\x02#a"),
            Err(CodecError::Topic { .. })
        ));
        assert!(matches!(
            decode_one(b"\xa2\x05\x00\x01\x00\x01\xff"),
            Err(CodecError::Utf8 { .. })
        ));
        assert!(matches!(
            decode_one(b"\xa2\x05\x00\x00\x00\x01a"),
            Err(CodecError::PacketId { .. })
        ));
    }
}
