//! PUBLISH (3.3): DUP, QoS and RETAIN from the fixed header (checked there: [MQTT-3.3.1-2],
//! [MQTT-3.3.1-4]), a topic name, a packet identifier at QoS 1 and 2 only ([MQTT-2.3.1-5]), and
//! the payload, which shares the read buffer's memory instead of being copied.

use bytes::Bytes;

use super::reader::Reader;
use super::{fixed, strings, topic, CodecError, QoS};

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: String,
    /// Non-zero at QoS 1 and 2 ([MQTT-2.3.1-1]); 0 at QoS 0, where it is not sent.
    pub pkid: u16,
    /// Zero or more bytes (3.3.3).
    pub payload: Bytes,
}

/// `flags` passed [`fixed::parse`], so the QoS bits are 0, 1 or 2.
pub(crate) fn decode(flags: u8, body: Bytes) -> Result<Publish, CodecError> {
    let qos = QoS::from_bits((flags >> 1) & 3).ok_or(CodecError::Flags {
        packet: "PUBLISH",
        flags,
    })?;
    let mut r = Reader::new(&body);
    let topic = strings::read(&mut r, "topic name")?;
    topic::validate_name(&topic, "topic name")?;
    let pkid = match qos {
        QoS::AtMostOnce => 0,
        _ => r.packet_id("PUBLISH")?,
    };
    let payload = r.rest();
    Ok(Publish {
        dup: flags & 8 != 0,
        qos,
        retain: flags & 1 != 0,
        topic,
        pkid,
        payload,
    })
}

pub(crate) fn encode(p: &Publish, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let with_id = p.qos != QoS::AtMostOnce;
    let byte1 = 0x30 | u8::from(p.dup && with_id) << 3 | (p.qos as u8) << 1 | u8::from(p.retain);
    let len = strings::wire_len(&p.topic) + if with_id { 2 } else { 0 } + p.payload.len();
    fixed::write(byte1, len, out)?;
    strings::put(&p.topic, "topic name", out)?;
    if with_id {
        out.extend_from_slice(&p.pkid.to_be_bytes());
    }
    out.extend_from_slice(&p.payload);
    Ok(())
}

/// Appends a PUBLISH built from borrowed parts: the broker's delivery path, which must not build
/// a [`Publish`] per subscriber. `topic` is a topic name that was validated when it arrived
/// (at most 65,535 bytes), so the only failure left, a packet over 256 MiB, cannot come from a
/// message the decoder accepted; such a message is not written.
pub fn encode_publish(
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    dup: bool,
    pkid: u16,
    out: &mut Vec<u8>,
) {
    let with_id = qos != QoS::AtMostOnce;
    let byte1 = 0x30 | u8::from(dup && with_id) << 3 | (qos as u8) << 1 | u8::from(retain);
    let len = strings::wire_len(topic) + if with_id { 2 } else { 0 } + payload.len();
    let start = out.len();
    if topic.len() > usize::from(u16::MAX) || fixed::write(byte1, len, out).is_err() {
        out.truncate(start);
        return;
    }
    out.reserve(len);
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    if with_id {
        out.extend_from_slice(&pkid.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::super::tests::{decode_one, roundtrip};
    use super::super::{CodecError, Packet};
    use super::*;

    fn publish(qos: QoS, pkid: u16, payload: &'static [u8]) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: false,
            topic: "a/b".into(),
            pkid,
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn qos0_has_no_packet_id_mqtt_2_3_1_5() {
        roundtrip(
            b"\x30\x07\x00\x03a/bhi",
            Packet::Publish(publish(QoS::AtMostOnce, 0, b"hi")),
        );
    }

    #[test]
    fn qos1_and_qos2_with_flags() {
        roundtrip(
            b"\x32\x07\x00\x03a/b\x00\x0a",
            Packet::Publish(publish(QoS::AtLeastOnce, 10, b"")),
        );
        let mut p = publish(QoS::ExactlyOnce, 0xffff, b"\x00\xff");
        p.dup = true;
        p.retain = true;
        roundtrip(b"\x3d\x09\x00\x03a/b\xff\xff\x00\xff", Packet::Publish(p));
    }

    #[test]
    fn empty_payload_and_retain() {
        let mut p = publish(QoS::AtMostOnce, 0, b"");
        p.retain = true;
        roundtrip(b"\x31\x05\x00\x03a/b", Packet::Publish(p));
    }

    #[test]
    fn packet_id_0_mqtt_2_3_1_1() {
        assert_eq!(
            decode_one(b"\x32\x07\x00\x03a/b\x00\x00"),
            Err(CodecError::PacketId { packet: "PUBLISH" })
        );
    }

    #[test]
    fn wildcards_in_topic_mqtt_3_3_2_2() {
        assert!(matches!(
            decode_one(b"\x30\x05\x00\x03a/+"),
            Err(CodecError::Topic { .. })
        ));
        assert!(matches!(
            decode_one(b"\x30\x03\x00\x01#"),
            Err(CodecError::Topic { .. })
        ));
    }

    #[test]
    fn empty_topic_mqtt_4_7_3_1() {
        assert!(matches!(
            decode_one(b"\x30\x03\x00\x00x"),
            Err(CodecError::Topic { .. })
        ));
    }

    #[test]
    fn topic_utf8_mqtt_3_3_2_1() {
        assert!(matches!(
            decode_one(b"\x30\x04\x00\x02\xc3\x28"),
            Err(CodecError::Utf8 { .. })
        ));
        assert!(matches!(
            decode_one(b"\x30\x04\x00\x02a\x00"),
            Err(CodecError::NullChar { .. })
        ));
    }

    #[test]
    fn truncated_fields() {
        assert!(matches!(
            decode_one(b"\x30\x01\x00"),
            Err(CodecError::Truncated { .. })
        ));
        assert!(matches!(
            decode_one(b"\x32\x06\x00\x03a/b\x00"),
            Err(CodecError::Truncated { .. })
        ));
    }

    #[test]
    fn payload_shares_the_read_buffer() {
        let mut buf = bytes::BytesMut::from(&b"\x30\x0a\x00\x03a/bhello!"[..]);
        let base = buf.as_ptr() as usize;
        let mut dec = super::super::Decoder {
            max_packet_size: 64,
        };
        let p = match super::super::Decode::decode(&mut dec, &mut buf) {
            Ok(Some(Packet::Publish(p))) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(p.payload.as_ptr() as usize, base + 7, "payload was copied");
    }

    #[test]
    fn borrowed_encoding_matches_the_packet_encoding() {
        for (qos, pkid, dup, retain) in [
            (QoS::AtMostOnce, 0, false, true),
            (QoS::AtLeastOnce, 9, true, false),
            (QoS::ExactlyOnce, 65535, false, false),
        ] {
            let p = Publish {
                dup,
                qos,
                retain,
                topic: "a/b".into(),
                pkid,
                payload: Bytes::from(vec![7u8; 200]),
            };
            let (mut a, mut b) = (Vec::new(), Vec::new());
            encode(&p, &mut a).unwrap();
            encode_publish("a/b", &p.payload, qos, retain, dup, pkid, &mut b);
            assert_eq!(a, b);
        }
    }
}
