//! SUBSCRIBE (3.8): a packet identifier, then one or more topic filters, each followed by a
//! requested-QoS byte whose upper six bits are reserved.

use bytes::Bytes;

use super::reader::Reader;
use super::{fixed, strings, topic, CodecError, QoS};

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub pkid: u16,
    /// At least one ([MQTT-3.8.3-3]).
    pub filters: Vec<(String, QoS)>,
}

pub(crate) fn decode(body: &Bytes) -> Result<Subscribe, CodecError> {
    let mut r = Reader::new(body);
    let pkid = r.packet_id("SUBSCRIBE")?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = strings::read(&mut r, "topic filter")?;
        topic::validate_filter(&filter, "topic filter")?;
        let q = r.u8("requested QoS")?;
        // [MQTT-3-8.3-4]: reserved bits 7-2 are 0 and QoS is 0, 1 or 2.
        let qos = QoS::from_bits(q)
            .filter(|_| q & 0xfc == 0)
            .ok_or(CodecError::Invalid {
                field: "requested QoS",
                why: "reserved bits or QoS 3 [MQTT-3-8.3-4]",
            })?;
        filters.push((filter, qos));
    }
    if filters.is_empty() {
        return Err(CodecError::Invalid {
            field: "SUBSCRIBE payload",
            why: "no topic filter [MQTT-3.8.3-3]",
        });
    }
    Ok(Subscribe { pkid, filters })
}

pub(crate) fn encode(s: &Subscribe, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let len = 2 + s
        .filters
        .iter()
        .map(|(f, _)| strings::wire_len(f) + 1)
        .sum::<usize>();
    fixed::write(0x82, len, out)?;
    out.extend_from_slice(&s.pkid.to_be_bytes());
    for (f, q) in &s.filters {
        strings::put(f, "topic filter", out)?;
        out.push(*q as u8);
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
        let s = Subscribe {
            pkid: 10,
            filters: vec![
                ("a/b".into(), QoS::AtLeastOnce),
                ("c/#".into(), QoS::ExactlyOnce),
            ],
        };
        roundtrip(
            b"\x82\x0e\x00\x0a\x00\x03a/b\x01\x00\x03c/#\x02",
            Packet::Subscribe(s),
        );
    }

    #[test]
    fn flags_mqtt_3_8_1_1() {
        assert!(matches!(
            decode_one(b"\x80\x06\x00\x01\x00\x01a\x00"),
            Err(CodecError::Flags { .. })
        ));
    }

    #[test]
    fn no_filters_mqtt_3_8_3_3() {
        assert!(matches!(
            decode_one(b"\x82\x02\x00\x01"),
            Err(CodecError::Invalid { .. })
        ));
    }

    #[test]
    fn qos_byte_mqtt_3_8_3_4() {
        for q in [3u8, 4, 0x80, 0xfd] {
            let bytes = [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', q];
            assert!(
                matches!(decode_one(&bytes), Err(CodecError::Invalid { .. })),
                "{q:#x}"
            );
        }
    }

    #[test]
    fn packet_id_0_mqtt_2_3_1_1() {
        assert!(matches!(
            decode_one(b"\x82\x06\x00\x00\x00\x01a\x00"),
            Err(CodecError::PacketId { .. })
        ));
    }

    #[test]
    fn bad_filters_mqtt_4_7_1_2_mqtt_4_7_1_3_mqtt_4_7_3_1() {
        for f in [&b"a#"[..], b"#/a", b"a+", b""] {
            let mut bytes = vec![0x82, (5 + f.len()) as u8, 0, 1, 0, f.len() as u8];
            bytes.extend_from_slice(f);
            bytes.push(0);
            assert!(
                matches!(decode_one(&bytes), Err(CodecError::Topic { .. })),
                "{f:?}"
            );
        }
    }

    #[test]
    fn missing_qos_byte_is_truncated() {
        assert!(matches!(
            decode_one(b"\x82\x05\x00\x01\x00\x01a"),
            Err(CodecError::Truncated { .. })
        ));
    }
}
