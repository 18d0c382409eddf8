//! Fixture helpers shared by the per-packet tests, the decoder's framing rules, and property
//! tests: encode -> decode round trips, arbitrary bytes, and splits at every byte boundary.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

/// Decodes exactly one packet from `bytes`, which must hold nothing else.
pub(super) fn decode_one(bytes: &[u8]) -> Result<Packet, CodecError> {
    let mut buf = BytesMut::from(bytes);
    let mut dec = Decoder {
        max_packet_size: 1 << 20,
    };
    let p = dec.decode(&mut buf)?.ok_or(CodecError::Truncated {
        field: "test input",
    })?;
    assert!(buf.is_empty(), "decode left {} bytes", buf.len());
    Ok(p)
}

/// `bytes` decodes to `p`, `p` encodes to `bytes`, and every proper prefix needs more bytes.
pub(super) fn roundtrip(bytes: &[u8], p: Packet) {
    assert_eq!(decode_one(bytes), Ok(p.clone()));
    let mut out = Vec::new();
    encode(&p, &mut out).expect("fits");
    assert_eq!(out, bytes, "encoding of {p:?}");
    let mut dec = Decoder {
        max_packet_size: 1 << 20,
    };
    for n in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..n]);
        assert_eq!(dec.decode(&mut buf), Ok(None), "prefix of {n} bytes");
        assert_eq!(buf.len(), n, "a prefix was consumed");
    }
}

#[test]
fn max_packet_size_checked_from_the_fixed_header() {
    let mut dec = Decoder {
        max_packet_size: 1000,
    };
    // Five bytes announce a 268,435,455-byte PUBLISH: refused with no body buffered.
    let mut buf = BytesMut::from(&[0x30, 0xff, 0xff, 0xff, 0x7f][..]);
    assert_eq!(
        dec.decode(&mut buf),
        Err(CodecError::TooLarge {
            size: 268_435_460,
            max: 1000
        })
    );
    // The limit counts the whole packet: 3 + 997 fits, 3 + 998 does not.
    let mut buf = BytesMut::from(&[0x30, 0xe5, 0x07][..]);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    let mut buf = BytesMut::from(&[0x30, 0xe6, 0x07][..]);
    assert!(matches!(
        dec.decode(&mut buf),
        Err(CodecError::TooLarge { .. })
    ));
}

#[test]
fn announced_size_does_not_reserve_the_whole_body() {
    let mut dec = Decoder {
        max_packet_size: 1 << 24,
    };
    // A PUBLISH announcing 16 MiB - 5 bytes, of which only the header has arrived.
    let mut buf = BytesMut::from(&[0x30, 0xfb, 0xff, 0xff, 0x07][..]);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert!(buf.capacity() <= 128 * 1024, "reserved {}", buf.capacity());
}

#[test]
fn consumes_exactly_one_packet() {
    let mut buf = BytesMut::from(&b"\xc0\x00\x40\x02\x00\x01\xe0"[..]);
    let mut dec = Decoder {
        max_packet_size: 64,
    };
    assert_eq!(dec.decode(&mut buf), Ok(Some(Packet::Pingreq)));
    assert_eq!(dec.decode(&mut buf), Ok(Some(Packet::Puback(1))));
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert_eq!(&buf[..], b"\xe0");
    buf.extend_from_slice(b"\x00");
    assert_eq!(dec.decode(&mut buf), Ok(Some(Packet::Disconnect)));
    assert!(buf.is_empty());
}

#[test]
fn encode_refuses_strings_over_65535_and_leaves_out_alone() {
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t".repeat(65_536),
        pkid: 0,
        payload: Bytes::new(),
    });
    let mut out = vec![1, 2];
    assert_eq!(
        encode(&p, &mut out),
        Err(CodecError::TooLong {
            field: "topic name"
        })
    );
    assert_eq!(out, [1, 2]);
}

#[test]
fn fuzz_regressions() {
    for data in [
        &b""[..],
        b"\x30",
        b"\x10\x80\x80\x80\x80\x01",
        b"\x82\x00",
        b"\x30\x00",
    ] {
        fuzz_decode(data);
    }
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9/$ é\u{feff}-]{1,20}"
}

fn filter() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof!["[a-z0-9 é]{0,5}", Just("+".to_string())], 1..5)
        .prop_flat_map(|levels| {
            let joined = levels.join("/");
            prop_oneof![
                Just(joined.clone()),
                Just(format!("{joined}/#")),
                Just("#".to_string())
            ]
        })
        .prop_filter("non-empty", |f| !f.is_empty())
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn publish() -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        name(),
        1..=u16::MAX,
        payload(),
    )
        .prop_map(|(dup, qos, retain, topic, id, payload)| {
            let qos0 = qos == QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && !qos0,
                qos,
                retain,
                topic,
                pkid: if qos0 { 0 } else { id },
                payload,
            })
        })
}

fn connect() -> impl Strategy<Value = Packet> {
    let will = prop::option::of((name(), payload(), qos(), any::<bool>()).prop_map(
        |(topic, message, qos, retain)| Will {
            topic,
            message,
            qos,
            retain,
        },
    ));
    let login = prop::option::of(("\\PC{0,10}", prop::option::of(payload())));
    (
        any::<bool>(),
        any::<u16>(),
        "[0-9a-zA-Z]{0,23}",
        will,
        login,
    )
        .prop_map(|(clean_session, keep_alive, client_id, will, login)| {
            let (username, password) = match login {
                Some((u, p)) => (Some(u.replace('\0', "")), p),
                None => (None, None),
            };
            Packet::Connect(Connect {
                clean_session,
                keep_alive,
                client_id,
                will,
                username,
                password,
            })
        })
}

fn acks() -> impl Strategy<Value = Packet> {
    let id = 1..=u16::MAX;
    prop_oneof![
        id.clone().prop_map(Packet::Puback),
        id.clone().prop_map(Packet::Pubrec),
        id.clone().prop_map(Packet::Pubrel),
        id.clone().prop_map(Packet::Pubcomp),
        id.prop_map(Packet::Unsuback),
        Just(Packet::Pingreq),
        Just(Packet::Pingresp),
        Just(Packet::Disconnect),
        (0..=5u8, any::<bool>()).prop_map(|(c, p)| {
            let code = ConnackCode::from_byte(c).expect("0..=5");
            Packet::Connack(Connack {
                session_present: p && code == ConnackCode::Accepted,
                code,
            })
        }),
    ]
}

fn subscriptions() -> impl Strategy<Value = Packet> {
    let code = prop_oneof![
        qos().prop_map(SubackCode::Granted),
        Just(SubackCode::Failure)
    ];
    prop_oneof![
        (1..=u16::MAX, prop::collection::vec((filter(), qos()), 1..5))
            .prop_map(|(pkid, filters)| Packet::Subscribe(Subscribe { pkid, filters })),
        (1..=u16::MAX, prop::collection::vec(filter(), 1..5))
            .prop_map(|(pkid, filters)| Packet::Unsubscribe(Unsubscribe { pkid, filters })),
        (1..=u16::MAX, prop::collection::vec(code, 1..5))
            .prop_map(|(pkid, codes)| Packet::Suback(Suback { pkid, codes })),
    ]
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![publish(), connect(), acks(), subscriptions()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_identity(packets in prop::collection::vec(packet(), 1..6)) {
        let mut wire = Vec::new();
        for p in &packets {
            encode(p, &mut wire).expect("generated packets fit");
        }
        let (whole, err) = decode_all(&wire, wire.len());
        prop_assert_eq!(err, None);
        prop_assert_eq!(&whole, &packets);
        // Split at every byte boundary: Ok(None) until each packet is complete, same packets.
        for cut in 0..=wire.len() {
            let mut dec = Decoder { max_packet_size: 1 << 16 };
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(p) = dec.decode(&mut buf).expect("valid") {
                got.push(p);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(p) = dec.decode(&mut buf).expect("valid") {
                got.push(p);
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(&got, &packets);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
        fuzz_decode(&data);
    }

    #[test]
    fn mutated_valid_packets_never_panic(p in packet(), at in any::<usize>(), byte in any::<u8>()) {
        let mut wire = Vec::new();
        encode(&p, &mut wire).expect("fits");
        let i = at % wire.len();
        wire[i] = byte;
        fuzz_decode(&wire);
    }
}

#[test]
fn non_minimal_remaining_length_decodes_2_2_3() {
    // 3.1.1 has no minimal-encoding rule (MQTT 5 added [MQTT-1.5.5-1]): PUBACK with a 2-byte length.
    assert_eq!(decode_one(b"\x40\x82\x00\x00\x05"), Ok(Packet::Puback(5)));
}
