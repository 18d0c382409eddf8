//! Shared fixtures for the parser's tests, and the property tests across its parts.

use proptest::prelude::*;

use super::*;

/// `parse_head` with the default limits.
pub(super) fn try_parse(buf: &[u8]) -> Result<Option<Head>, ParseError> {
    parse_head(buf, &Limits::default(), &mut Vec::new())
}

/// A complete head, or a panic naming the fixture.
pub(super) fn head(buf: &[u8]) -> Head {
    match try_parse(buf) {
        Ok(Some(h)) => h,
        other => panic!(
            "{:?}: expected a head, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

/// The status a fixture is refused with, or a panic naming it.
pub(super) fn refused(buf: &[u8]) -> u16 {
    match try_parse(buf) {
        Err(e) => e.status,
        other => panic!(
            "{:?}: expected an error, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

/// A GET with a Host and the given extra field lines (each ending in CRLF).
pub(super) fn get_with(fields: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: example.com\r\n{fields}\r\n").into_bytes()
}

#[test]
fn header_helpers_read_the_recorded_ranges() {
    let buf = b"GET /a HTTP/1.1\r\nHost: h\r\nX-Long:  v a l  \r\n\r\n";
    let mut headers = vec![HeaderIdx::default(); 3];
    let h = parse_head(buf, &Limits::default(), &mut headers)
        .expect("valid")
        .expect("complete");
    assert_eq!(&buf[h.target], b"/a");
    let pairs: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|i| (header_name(buf, i), header_value(buf, i)))
        .collect();
    assert_eq!(pairs, [(&b"Host"[..], &b"h"[..]), (b"X-Long", b"v a l")]);
    let stale = HeaderIdx {
        name: 90..95,
        value: 3..1000,
    };
    assert_eq!(header_name(buf, &stale), b"");
    assert_eq!(header_value(buf, &stale), b"");
}

#[test]
fn fuzz_entry_survives_fixtures() {
    fuzz_head(b"");
    fuzz_head(
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    fuzz_head(b"5\r\nhello\r\n0\r\nT: v\r\n\r\nrest");
    fuzz_head(b"GET http://h/%2e%2e/x?q HTTP/1.2\r\nHost: h\r\n\r\n");
}

/// Request bytes made of pieces that often matter to the parser, to reach deeper than uniform
/// random bytes do.
fn request_soup() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(&b"GET "[..]),
        Just(&b"POST /a/../b%2F?q HTTP/1.1\r\n"[..]),
        Just(&b"HTTP/1.1\r\n"[..]),
        Just(&b"HTTP/1.2\r\n"[..]),
        Just(&b"Host: h\r\n"[..]),
        Just(&b"Transfer-Encoding: chunked\r\n"[..]),
        Just(&b"Content-Length: 3\r\n"[..]),
        Just(&b"Expect: 100-continue\r\n"[..]),
        Just(&b"\r\n"[..]),
        Just(&b"\n"[..]),
        Just(&b"\r"[..]),
        Just(&b" "[..]),
        Just(&b"5;x=y\r\nhello\r\n"[..]),
        Just(&b"0\r\n\r\n"[..]),
        Just(&b"%00"[..]),
        Just(&b"/.."[..]),
    ];
    prop::collection::vec(
        prop_oneof![
            piece.prop_map(<[u8]>::to_vec),
            prop::collection::vec(any::<u8>(), 0..4)
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

/// A valid request: method, target, extra field lines (names prefixed `X-` so no framing rule
/// applies, values without edge whitespace, which httparse trims).
fn valid_request() -> impl Strategy<Value = (String, String, Vec<(String, String)>)> {
    let method = prop_oneof![
        Just("GET"),
        Just("HEAD"),
        Just("POST"),
        Just("DELETE"),
        Just("PURGE")
    ];
    let target = "/[a-zA-Z0-9._~%/-]{0,40}(\\?[a-z0-9=&]{0,20})?";
    let field = ("X-[A-Za-z0-9-]{1,20}", "([!-~]([ -~\t]{0,40}[!-~])?)?");
    (
        method.prop_map(String::from),
        target,
        prop::collection::vec(field, 0..20),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..1024)) {
        fuzz_head(&data);
    }

    #[test]
    fn request_soup_never_panics(data in request_soup()) {
        fuzz_head(&data);
    }

    #[test]
    fn valid_requests_parse_the_same_at_every_split(req in valid_request()) {
        let (method, target, fields) = req;
        let mut text = format!("{method} {target} HTTP/1.1\r\nHost: example.com\r\n");
        for (name, value) in &fields {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        let head_len = text.len();
        text.push_str("next bytes");
        let buf = text.as_bytes();

        let mut headers = Vec::new();
        let h = parse_head(buf, &Limits::default(), &mut headers)
            .expect("valid request")
            .expect("complete");
        prop_assert_eq!(h.len, head_len);
        prop_assert_eq!(&buf[h.method_range.clone()], method.as_bytes());
        prop_assert_eq!(&buf[h.target.clone()], target.as_bytes());
        prop_assert_eq!(headers.len(), fields.len() + 1);
        for (idx, (name, value)) in headers[1..].iter().zip(&fields) {
            prop_assert_eq!(header_name(buf, idx), name.as_bytes());
            prop_assert_eq!(header_value(buf, idx), value.as_bytes());
        }
        for cut in 0..head_len {
            let partial = parse_head(&buf[..cut], &Limits::default(), &mut headers);
            prop_assert_eq!(partial, Ok(None), "cut at {}", cut);
        }
    }
}
