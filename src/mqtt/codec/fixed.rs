//! The fixed header (2.2): packet type, the flags Table 2.2 allows for it, and the remaining
//! length. Checked byte by byte as it arrives, so a bad type or flags fails before the length.

use super::{CodecError, MAX_REMAINING_LENGTH};

/// A complete fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Type in the high nibble, flags in the low one.
    pub byte1: u8,
    /// Bytes of the fixed header itself: 2 to 5.
    pub len: usize,
    /// The remaining length: variable header plus payload.
    pub remaining: usize,
}

/// `Ok(None)` until the fixed header is complete.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<Header>, CodecError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    check_flags(byte1)?;
    let mut remaining = 0usize;
    // 2.2.3: seven bits per byte, least significant first, at most four bytes. 3.1.1 (unlike
    // MQTT 5's [MQTT-1.5.5-1]) does not require the shortest encoding, so longer ones are taken.
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some(Header {
                byte1,
                len: 2 + i,
                remaining,
            }));
        }
    }
    Err(CodecError::RemainingLength)
}

/// Table 2.2: PUBREL, SUBSCRIBE and UNSUBSCRIBE carry 0b0010 ([MQTT-3.6.1-1], [MQTT-3.8.1-1],
/// [MQTT-3.10.1-1]), PUBLISH its DUP/QoS/RETAIN, every other type 0 ([MQTT-2.2.2-1]).
fn check_flags(byte1: u8) -> Result<(), CodecError> {
    let flags = byte1 & 0x0f;
    let (packet, want) = match byte1 >> 4 {
        1 => ("CONNECT", 0),
        2 => ("CONNACK", 0),
        3 => return check_publish_flags(flags),
        4 => ("PUBACK", 0),
        5 => ("PUBREC", 0),
        6 => ("PUBREL", 2),
        7 => ("PUBCOMP", 0),
        8 => ("SUBSCRIBE", 2),
        9 => ("SUBACK", 0),
        10 => ("UNSUBSCRIBE", 2),
        11 => ("UNSUBACK", 0),
        12 => ("PINGREQ", 0),
        13 => ("PINGRESP", 0),
        14 => ("DISCONNECT", 0),
        t => return Err(CodecError::ReservedType(t)),
    };
    if flags == want {
        Ok(())
    } else {
        Err(CodecError::Flags { packet, flags })
    }
}

/// QoS 3 is malformed ([MQTT-3.3.1-4]); DUP must be 0 at QoS 0 ([MQTT-3.3.1-2]).
fn check_publish_flags(flags: u8) -> Result<(), CodecError> {
    let qos = (flags >> 1) & 3;
    let dup = flags & 8 != 0;
    if qos == 3 || (dup && qos == 0) {
        return Err(CodecError::Flags {
            packet: "PUBLISH",
            flags,
        });
    }
    Ok(())
}

/// Appends the fixed header: `byte1` then `remaining` in the shortest encoding.
pub(crate) fn write(byte1: u8, remaining: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if remaining > MAX_REMAINING_LENGTH {
        return Err(CodecError::TooLong {
            field: "remaining length",
        });
    }
    out.push(byte1);
    let mut rest = remaining;
    loop {
        let digit = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest == 0 {
            out.push(digit);
            return Ok(());
        }
        out.push(digit | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8]) -> Result<Option<Header>, CodecError> {
        parse(bytes)
    }

    #[test]
    fn remaining_length_boundaries_2_2_3() {
        let cases: &[(&[u8], usize)] = &[
            (&[0x00], 0),
            (&[0x7f], 127),
            (&[0x80, 0x01], 128),
            (&[0xff, 0x7f], 16_383),
            (&[0x80, 0x80, 0x01], 16_384),
            (&[0xff, 0xff, 0x7f], 2_097_151),
            (&[0x80, 0x80, 0x80, 0x01], 2_097_152),
            (&[0xff, 0xff, 0xff, 0x7f], MAX_REMAINING_LENGTH),
        ];
        for (rl, want) in cases {
            let mut bytes = vec![0xc0];
            bytes.extend_from_slice(rl);
            let h = header(&bytes).expect("valid").expect("complete");
            assert_eq!((h.len, h.remaining), (1 + rl.len(), *want));
            let mut out = Vec::new();
            write(0xc0, *want, &mut out).expect("fits");
            assert_eq!(out, bytes, "shortest encoding of {want}");
        }
    }

    #[test]
    fn fifth_length_byte_is_malformed_2_2_3() {
        assert_eq!(
            header(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(CodecError::RemainingLength)
        );
        assert_eq!(
            header(&[0x30, 0x80, 0x80, 0x80, 0x80]),
            Err(CodecError::RemainingLength)
        );
    }

    #[test]
    fn non_minimal_length_is_accepted_in_3_1_1() {
        let h = header(&[0xe0, 0x80, 0x80, 0x00])
            .expect("valid")
            .expect("complete");
        assert_eq!((h.len, h.remaining), (4, 0));
    }

    #[test]
    fn incomplete_header_needs_more() {
        assert_eq!(header(&[]), Ok(None));
        assert_eq!(header(&[0x30]), Ok(None));
        assert_eq!(header(&[0x30, 0x80, 0x80]), Ok(None));
    }

    #[test]
    fn reserved_types_0_and_15() {
        assert_eq!(header(&[0x00, 0x00]), Err(CodecError::ReservedType(0)));
        assert_eq!(header(&[0xf0]), Err(CodecError::ReservedType(15)));
    }

    #[test]
    fn reserved_flags_mqtt_2_2_2_1() {
        for byte1 in [0x11, 0x21, 0x48, 0x54, 0x72, 0x91, 0xb2, 0xc1, 0xd8, 0xe2] {
            assert!(
                matches!(header(&[byte1]), Err(CodecError::Flags { .. })),
                "{byte1:#x}"
            );
        }
        // [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1]: 0b0010 and nothing else.
        for byte1 in [0x60, 0x80, 0xa0, 0x63, 0x8a, 0xa6] {
            assert!(
                matches!(header(&[byte1]), Err(CodecError::Flags { .. })),
                "{byte1:#x}"
            );
        }
        for byte1 in [0x62, 0x82, 0xa2, 0x10, 0xe0] {
            assert_eq!(header(&[byte1]), Ok(None), "{byte1:#x}");
        }
    }

    #[test]
    fn publish_qos3_mqtt_3_3_1_4_and_dup_at_qos0_mqtt_3_3_1_2() {
        assert!(matches!(header(&[0x36]), Err(CodecError::Flags { .. })));
        assert!(matches!(header(&[0x37]), Err(CodecError::Flags { .. })));
        assert!(matches!(header(&[0x38]), Err(CodecError::Flags { .. })));
        for ok in [0x30, 0x31, 0x32, 0x33, 0x34, 0x3a, 0x3d] {
            assert_eq!(header(&[ok]), Ok(None), "{ok:#x}");
        }
    }
}
