//! Byte fixtures for the framing and field rules, smuggling defences first.

use super::*;
use crate::http::parse::tests::{get_with, head, refused};

fn post(fields: &str) -> Vec<u8> {
    format!("POST /upload HTTP/1.1\r\nHost: example.com\r\n{fields}\r\n").into_bytes()
}

fn value_of(buf: &[u8], range: Option<Range<usize>>) -> Option<&[u8]> {
    range.map(|r| &buf[r])
}

#[test]
fn content_length_gives_length_framing() {
    assert_eq!(
        head(&post("Content-Length: 5\r\n")).framing,
        Framing::Length(5)
    );
    assert_eq!(
        head(&post("content-length: 0\r\n")).framing,
        Framing::Length(0)
    );
    assert_eq!(
        head(&post("Content-Length:   007  \r\n")).framing,
        Framing::Length(7)
    );
    assert_eq!(
        head(&post("Content-Length: 18446744073709551615\r\n")).framing,
        Framing::Length(u64::MAX)
    );
}

#[test]
fn content_length_not_all_digits_is_400() {
    for v in [
        "", "+5", "-5", "5 5", "1 2", "5,5", "5, 5", "0x5", "5.0", "five", "5;x", "\t5\t,",
    ] {
        let buf = post(&format!("Content-Length: {v}\r\n"));
        assert_eq!(refused(&buf), 400, "{v:?}");
    }
}

#[test]
fn content_length_overflowing_u64_is_400() {
    assert_eq!(
        refused(&post("Content-Length: 18446744073709551616\r\n")),
        400
    );
    assert_eq!(
        refused(&post("Content-Length: 99999999999999999999999\r\n")),
        400
    );
}

#[test]
fn content_length_repeated_is_400_even_when_equal() {
    assert_eq!(
        refused(&post("Content-Length: 5\r\nContent-Length: 5\r\n")),
        400
    );
    assert_eq!(
        refused(&post("Content-Length: 5\r\nContent-Length: 6\r\n")),
        400
    );
    assert_eq!(
        refused(&post("content-length: 5\r\nCONTENT-LENGTH: 5\r\n")),
        400
    );
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    let both = "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n";
    assert_eq!(refused(&post(both)), 400);
    let reversed = "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n";
    assert_eq!(refused(&post(reversed)), 400);
}

#[test]
fn transfer_encoding_chunked_in_any_case_with_ows() {
    for v in [
        "chunked",
        "Chunked",
        "CHUNKED",
        "  chunked",
        "chunked \t",
        "\tchunked",
    ] {
        let buf = post(&format!("Transfer-Encoding:{v}\r\n"));
        assert_eq!(head(&buf).framing, Framing::Chunked, "{v:?}");
    }
}

#[test]
fn transfer_encoding_other_than_chunked_is_400() {
    for v in [
        "gzip",
        "gzip, chunked",
        "chunked, chunked",
        "chunked,",
        ",chunked",
        "chunked;q=1",
        "identity",
        "",
        "chunked gzip",
        "chnked",
        "\"chunked\"",
    ] {
        let buf = post(&format!("Transfer-Encoding: {v}\r\n"));
        assert_eq!(refused(&buf), 400, "{v:?}");
    }
}

#[test]
fn transfer_encoding_repeated_is_400() {
    let twice = "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n";
    assert_eq!(refused(&post(twice)), 400);
    let split = "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n";
    assert_eq!(refused(&post(split)), 400);
}

#[test]
fn transfer_encoding_in_http_1_0_is_400() {
    let buf = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(refused(buf), 400);
}

#[test]
fn host_is_required_in_1_1_only() {
    assert_eq!(refused(b"GET / HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(refused(b"GET / HTTP/1.1\r\nX-Host: h\r\n\r\n"), 400);
    let h = head(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(h.host, None);
}

#[test]
fn host_repeated_is_400() {
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        400
    );
    assert_eq!(
        refused(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
        400
    );
}

#[test]
fn host_with_invalid_bytes_is_400() {
    for v in [
        "a b", "a/b", "user@h", "h\\x", "h\"", "h<", "h{}", "h\x7f", "h\u{e9}",
    ] {
        let buf = format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n");
        assert_eq!(refused(buf.as_bytes()), 400, "{v:?}");
    }
}

#[test]
fn host_forms_accepted() {
    for v in [
        "example.com",
        "example.com:8080",
        "[::1]:80",
        "127.0.0.1",
        "xn--d1a.b",
        "",
    ] {
        let buf = format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n");
        let h = head(buf.as_bytes());
        assert_eq!(value_of(buf.as_bytes(), h.host), Some(v.as_bytes()));
    }
}

#[test]
fn keep_alive_follows_version_and_connection_tokens() {
    let cases: [(&[u8], bool); 8] = [
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
            true,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n",
            true,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            false,
        ),
    ];
    for (buf, keep_alive) in cases {
        assert_eq!(
            head(buf).keep_alive,
            keep_alive,
            "{:?}",
            String::from_utf8_lossy(buf)
        );
    }
}

#[test]
fn expect_100_continue() {
    let buf = post("Expect: 100-continue\r\nContent-Length: 3\r\n");
    assert!(head(&buf).expect_continue);
    assert!(head(&post("Expect: 100-Continue\r\n")).expect_continue);
    assert!(!head(&post("X: y\r\n")).expect_continue);
    assert!(!head(&post("Expect:\r\n")).expect_continue);
}

#[test]
fn expect_100_continue_is_ignored_in_http_1_0() {
    let buf = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
    assert!(!head(buf).expect_continue);
}

#[test]
fn unknown_expectation_is_417() {
    assert_eq!(refused(&post("Expect: 200-ok\r\n")), 417);
    assert_eq!(refused(&post("Expect: 100-continue, foo\r\n")), 417);
    assert_eq!(refused(&post("Expect: 100-continue=1\r\n")), 417);
    assert_eq!(refused(b"GET / HTTP/1.0\r\nExpect: x\r\n\r\n"), 417);
}

#[test]
fn framing_errors_win_over_417() {
    let buf = post("Expect: foo\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n");
    assert_eq!(refused(&buf), 400);
}

#[test]
fn accept_encoding_gzip() {
    let cases = [
        ("gzip", true),
        ("GZip", true),
        ("x-gzip", true),
        ("deflate, gzip;q=0.5", true),
        ("gzip;q=1.0", true),
        ("gzip; q=0.001", true),
        ("gzip;q=0", false),
        ("gzip;Q=0.000", false),
        ("gzip ; q=0.0", false),
        ("br, gzip;q=0", false),
        ("*", true),
        ("*;q=0", false),
        ("*;q=0, gzip", true),
        ("gzip;q=0, *", false),
        ("identity", false),
        ("br", false),
        ("gzip;q=abc", false),
        ("gzip;q=1.5", false),
        ("gzip;q=0.0001", false),
        ("", false),
    ];
    for (v, gzip) in cases {
        let buf = get_with(&format!("Accept-Encoding: {v}\r\n"));
        assert_eq!(head(&buf).accept_gzip, gzip, "{v:?}");
    }
    let two_lines = get_with("Accept-Encoding: br\r\nAccept-Encoding: gzip\r\n");
    assert!(head(&two_lines).accept_gzip);
}

#[test]
fn conditional_and_informational_fields_are_recorded() {
    let buf = get_with(concat!(
        "If-None-Match: \"abc\"\r\n",
        "If-Modified-Since: Sat, 29 Oct 1994 19:43:31 GMT\r\n",
        "Range: bytes=0-99\r\n",
        "User-Agent: curl/8.0\r\n",
        "Referer: https://example.com/\r\n",
        "range: bytes=5-\r\n",
    ));
    let h = head(&buf);
    assert_eq!(value_of(&buf, h.if_none_match), Some(&b"\"abc\""[..]));
    assert_eq!(
        value_of(&buf, h.if_modified_since),
        Some(&b"Sat, 29 Oct 1994 19:43:31 GMT"[..])
    );
    assert_eq!(
        value_of(&buf, h.range),
        Some(&b"bytes=0-99"[..]),
        "first kept"
    );
    assert_eq!(value_of(&buf, h.user_agent), Some(&b"curl/8.0"[..]));
    assert_eq!(
        value_of(&buf, h.referer),
        Some(&b"https://example.com/"[..])
    );
    let bare = head(&get_with(""));
    assert_eq!(
        (bare.range, bare.user_agent, bare.referer),
        (None, None, None)
    );
}

#[test]
fn parse_decimal_edges() {
    assert_eq!(parse_decimal(b"0"), Some(0));
    assert_eq!(parse_decimal(b"00012"), Some(12));
    assert_eq!(parse_decimal(b""), None);
    assert_eq!(parse_decimal(b"1a"), None);
    assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
    assert_eq!(parse_decimal(b"18446744073709551616"), None);
}

#[test]
fn eq_fold_matches_eq_ignore_ascii_case_on_bytes_httparse_accepts() {
    let accepted = |b: u8| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80;
    for target in b"abcdefghijklmnopqrstuvwxyz0123456789-" {
        for b in (0..=255u8).filter(|&b| accepted(b)) {
            assert_eq!(
                eq_fold(&[b], &[*target]),
                b.eq_ignore_ascii_case(target),
                "{b:#x} vs {}",
                char::from(*target)
            );
        }
    }
    assert!(eq_fold(b"Keep-Alive", b"keep-alive"));
    assert!(!eq_fold(b"keep-alive ", b"keep-alive"));
    assert!(!eq_fold(b"", b"close"));
}
