//! UTF-8 encoded strings (1.5.3): a two-byte length, then well-formed UTF-8 ([MQTT-1.5.3-1],
//! which also rules out the surrogates U+D800..U+DFFF) without U+0000 ([MQTT-1.5.3-2]). A BOM
//! (U+FEFF) is kept as it is ([MQTT-1.5.3-3]). Control characters and non-characters are allowed:
//! the standard lets a server refuse them but does not require it.

use super::reader::{put_binary, Reader};
use super::CodecError;

/// Reads one length-prefixed string.
pub(crate) fn read(r: &mut Reader<'_>, field: &'static str) -> Result<String, CodecError> {
    let n = usize::from(r.u16(field)?);
    let raw = r.take(n, field)?;
    check(raw, field).map(str::to_owned)
}

/// Checks raw string bytes against 1.5.3.
pub(crate) fn check<'a>(raw: &'a [u8], field: &'static str) -> Result<&'a str, CodecError> {
    let s = std::str::from_utf8(raw).map_err(|_| CodecError::Utf8 { field })?;
    if raw.contains(&0) {
        return Err(CodecError::NullChar { field });
    }
    Ok(s)
}

/// Appends one length-prefixed string.
pub(crate) fn put(s: &str, field: &'static str, out: &mut Vec<u8>) -> Result<(), CodecError> {
    put_binary(s.as_bytes(), field, out)
}

/// Wire size of a string field.
pub(crate) fn wire_len(s: &str) -> usize {
    2 + s.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn read_one(bytes: &'static [u8]) -> Result<String, CodecError> {
        let body = Bytes::from_static(bytes);
        read(&mut Reader::new(&body), "s")
    }

    #[test]
    fn well_formed_strings() {
        assert_eq!(read_one(b"\x00\x00").as_deref(), Ok(""));
        assert_eq!(read_one(b"\x00\x04MQTT").as_deref(), Ok("MQTT"));
        // 1.5.3's example U+2A6D4, then U+FEFF, which is kept ([MQTT-1.5.3-3]).
        assert_eq!(
            read_one(b"\x00\x08A\xf0\xaa\x9b\x94\xef\xbb\xbf").as_deref(),
            Ok("A\u{2a6d4}\u{feff}")
        );
        assert_eq!(read_one(b"\x00\x03\xef\xbb\xbf").as_deref(), Ok("\u{feff}"));
    }

    #[test]
    fn ill_formed_utf8_mqtt_1_5_3_1() {
        // A surrogate (U+D800 as CESU-8), an overlong '/', a lone continuation byte.
        for bad in [
            &b"\x00\x03\xed\xa0\x80"[..],
            b"\x00\x02\xc0\xaf",
            b"\x00\x01\x80",
        ] {
            let body = Bytes::copy_from_slice(bad);
            assert_eq!(
                read(&mut Reader::new(&body), "s"),
                Err(CodecError::Utf8 { field: "s" })
            );
        }
    }

    #[test]
    fn null_character_mqtt_1_5_3_2() {
        assert_eq!(
            read_one(b"\x00\x03a\x00b"),
            Err(CodecError::NullChar { field: "s" })
        );
    }

    #[test]
    fn length_past_the_body_is_truncated() {
        assert_eq!(
            read_one(b"\x00\x05abc"),
            Err(CodecError::Truncated { field: "s" })
        );
        assert_eq!(read_one(b"\x00"), Err(CodecError::Truncated { field: "s" }));
    }

    #[test]
    fn longest_string_is_65535_bytes() {
        let mut out = Vec::new();
        assert!(put(&"a".repeat(65_535), "s", &mut out).is_ok());
        assert_eq!(
            put(&"a".repeat(65_536), "s", &mut Vec::new()),
            Err(CodecError::TooLong { field: "s" })
        );
        let body = Bytes::from(out);
        assert_eq!(
            read(&mut Reader::new(&body), "s").map(|s| s.len()),
            Ok(65_535)
        );
    }
}
