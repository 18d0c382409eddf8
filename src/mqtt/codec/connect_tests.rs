//! CONNECT fixtures, one per rule of 3.1.

use super::super::tests::{decode_one, roundtrip};
use super::super::{CodecError, ConnackCode, Packet, QoS};
use super::*;

/// CONNECT header up to the flags: name "MQTT", level 4.
fn connect_bytes(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![
        0x10,
        (10 + payload.len()) as u8,
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        4,
        flags,
        0,
        60,
    ];
    v.extend_from_slice(payload);
    v
}

fn minimal(client_id: &str) -> Connect {
    Connect {
        clean_session: true,
        keep_alive: 60,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    }
}

#[test]
fn minimal_connect() {
    roundtrip(
        &connect_bytes(0x02, b"\x00\x03abc"),
        Packet::Connect(minimal("abc")),
    );
}

#[test]
fn empty_client_id_is_returned_empty_mqtt_3_1_3_6() {
    roundtrip(
        &connect_bytes(0x02, b"\x00\x00"),
        Packet::Connect(minimal("")),
    );
}

#[test]
fn client_ids_mqtt_3_1_3_5() {
    let id = "0123456789abcdefghijKLM";
    let mut payload = vec![0, 23];
    payload.extend_from_slice(id.as_bytes());
    roundtrip(&connect_bytes(0x02, &payload), Packet::Connect(minimal(id)));
    // Longer, and other characters: accepted here, the session layer decides.
    let long = "sensor/ü-".repeat(10);
    let mut payload = vec![0, long.len() as u8];
    payload.extend_from_slice(long.as_bytes());
    roundtrip(
        &connect_bytes(0x02, &payload),
        Packet::Connect(minimal(&long)),
    );
}

#[test]
fn every_field() {
    let c = Connect {
        clean_session: false,
        keep_alive: 60,
        client_id: "c".into(),
        will: Some(Will {
            topic: "w/t".into(),
            message: Bytes::from_static(b"bye"),
            qos: QoS::ExactlyOnce,
            retain: true,
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"\x00\xff")),
    };
    let payload = b"\x00\x01c\x00\x03w/t\x00\x03bye\x00\x01u\x00\x02\x00\xff";
    roundtrip(&connect_bytes(0xf4, payload), Packet::Connect(c));
}

#[test]
fn keep_alive_0_is_valid() {
    let mut bytes = connect_bytes(0x02, b"\x00\x01c");
    bytes[10..12].copy_from_slice(&[0, 0]);
    let mut c = minimal("c");
    c.keep_alive = 0;
    roundtrip(&bytes, Packet::Connect(c));
}

#[test]
fn protocol_name_mqtt_3_1_2_1() {
    let mut bytes = connect_bytes(0x02, b"\x00\x01c");
    bytes[4] = b'm';
    assert_eq!(decode_one(&bytes), Err(CodecError::ProtocolName));
    // MQTT 3.1's "MQIsdp" level 3 is another protocol.
    let mut v31 = vec![0x10, 15, 0, 6];
    v31.extend_from_slice(b"MQIsdp\x03\x02\x00\x3c\x00\x01c");
    assert_eq!(decode_one(&v31), Err(CodecError::ProtocolName));
}

#[test]
fn protocol_level_answers_connack_1_mqtt_3_1_2_2() {
    for level in [3u8, 5, 0, 255] {
        let mut bytes = connect_bytes(0x02, b"\x00\x01c");
        bytes[8] = level;
        let err = decode_one(&bytes).expect_err("level other than 4");
        assert_eq!(err, CodecError::ProtocolLevel(level));
        assert_eq!(
            err.connack_code(),
            Some(ConnackCode::UnacceptableProtocolVersion)
        );
    }
    // An MQTT 5 CONNECT (properties after keep-alive) still gets 0x01.
    let mut v5 = connect_bytes(0x02, b"\x00\x00\x01c");
    v5[8] = 5;
    assert_eq!(decode_one(&v5), Err(CodecError::ProtocolLevel(5)));
    assert_eq!(CodecError::ProtocolName.connack_code(), None);
}

#[test]
fn reserved_flag_mqtt_3_1_2_3() {
    assert!(matches!(
        decode_one(&connect_bytes(0x03, b"\x00\x01c")),
        Err(CodecError::Invalid { .. })
    ));
}

#[test]
fn will_flags_without_will_mqtt_3_1_2_11_13_15() {
    for flags in [0x0a, 0x12, 0x22, 0x1a] {
        assert!(
            matches!(
                decode_one(&connect_bytes(flags, b"\x00\x01c")),
                Err(CodecError::Invalid { .. })
            ),
            "{flags:#x}"
        );
    }
}

#[test]
fn will_qos_3_mqtt_3_1_2_14() {
    let payload = b"\x00\x01c\x00\x01t\x00\x00";
    assert!(matches!(
        decode_one(&connect_bytes(0x1e, payload)),
        Err(CodecError::Invalid { .. })
    ));
}

#[test]
fn will_topic_is_a_topic_name_mqtt_3_1_3_10() {
    let payload = b"\x00\x01c\x00\x01#\x00\x00";
    assert!(matches!(
        decode_one(&connect_bytes(0x06, payload)),
        Err(CodecError::Topic { .. })
    ));
    let payload = b"\x00\x01c\x00\x01\xff\x00\x00";
    assert!(matches!(
        decode_one(&connect_bytes(0x06, payload)),
        Err(CodecError::Utf8 { .. })
    ));
}

#[test]
fn password_without_user_name_mqtt_3_1_2_22() {
    let payload = b"\x00\x01c\x00\x01p";
    assert!(matches!(
        decode_one(&connect_bytes(0x42, payload)),
        Err(CodecError::Invalid { .. })
    ));
}

#[test]
fn flagged_fields_must_be_present_mqtt_3_1_2_19_and_21() {
    assert!(matches!(
        decode_one(&connect_bytes(0x82, b"\x00\x01c")),
        Err(CodecError::Truncated { field: "user name" })
    ));
    assert!(matches!(
        decode_one(&connect_bytes(0xc2, b"\x00\x01c\x00\x01u")),
        Err(CodecError::Truncated { field: "password" })
    ));
}

#[test]
fn unflagged_fields_must_be_absent_mqtt_3_1_2_18() {
    assert!(matches!(
        decode_one(&connect_bytes(0x02, b"\x00\x01c\x00\x01u")),
        Err(CodecError::TrailingBytes { .. })
    ));
}

#[test]
fn client_id_utf8_mqtt_3_1_3_4() {
    assert!(matches!(
        decode_one(&connect_bytes(0x02, b"\x00\x01\x00")),
        Err(CodecError::NullChar { .. })
    ));
    assert!(matches!(
        decode_one(&connect_bytes(0x02, b"\x00\x01\xfe")),
        Err(CodecError::Utf8 { .. })
    ));
}

#[test]
fn user_name_utf8_mqtt_3_1_3_11() {
    let payload = b"\x00\x01c\x00\x02\xed\xa0";
    assert!(matches!(
        decode_one(&connect_bytes(0x82, payload)),
        Err(CodecError::Utf8 { .. })
    ));
}

#[test]
fn will_flag_needs_will_topic_and_message_mqtt_3_1_2_9() {
    assert!(matches!(
        decode_one(&connect_bytes(0x06, b"\x00\x01c")),
        Err(CodecError::Truncated {
            field: "will topic"
        })
    ));
    assert!(matches!(
        decode_one(&connect_bytes(0x06, b"\x00\x01c\x00\x01t")),
        Err(CodecError::Truncated {
            field: "will message"
        })
    ));
}

#[test]
fn cut_short_variable_header() {
    for len in 0..10u8 {
        let mut bytes = connect_bytes(0x02, b"\x00\x01c");
        bytes.truncate(2 + usize::from(len));
        bytes[1] = len;
        let err = decode_one(&bytes).expect_err("too short");
        assert!(
            matches!(err, CodecError::Truncated { .. } | CodecError::ProtocolName),
            "{len}: {err:?}"
        );
    }
}
