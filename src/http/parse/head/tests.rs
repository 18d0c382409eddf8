//! Byte fixtures for the request line, line endings, limits and versions.

use super::*;
use crate::http::parse::tests::{get_with, head, refused, try_parse};
use crate::http::parse::Framing;

fn small() -> Limits {
    Limits {
        max_line: 32,
        max_head: 128,
        max_headers: 4,
    }
}

fn parse_small(buf: &[u8]) -> Result<Option<Head>, ParseError> {
    parse_head(buf, &small(), &mut Vec::new())
}

#[test]
fn simple_get() {
    let buf = b"GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\nBODY";
    let mut headers = Vec::new();
    let h = parse_head(buf, &Limits::default(), &mut headers)
        .expect("valid")
        .expect("complete");
    assert_eq!(h.method, Method::Get);
    assert_eq!(&buf[h.method_range], b"GET");
    assert_eq!(&buf[h.target], b"/index.html?x=1");
    assert_eq!(h.minor, 1);
    assert_eq!(&buf[h.len..], b"BODY");
    assert_eq!(h.framing, Framing::None);
    assert_eq!(h.host.map(|r| &buf[r]), Some(&b"example.com"[..]));
    assert!(h.keep_alive);
    assert!(!h.expect_continue);
    assert_eq!(headers.len(), 2);
    assert_eq!(&buf[headers[1].name.clone()], b"Accept");
    assert_eq!(&buf[headers[1].value.clone()], b"*/*");
}

#[test]
fn every_prefix_is_incomplete() {
    let buf = b"\r\nPOST /p HTTP/1.0\r\nContent-Length: 2\r\n\r\n";
    for cut in 0..buf.len() {
        assert_eq!(try_parse(&buf[..cut]), Ok(None), "cut at {cut}");
    }
    assert_eq!(head(buf).framing, Framing::Length(2));
}

#[test]
fn methods_map_and_unknown_tokens_are_other() {
    let cases: [(&str, Method); 11] = [
        ("GET", Method::Get),
        ("HEAD", Method::Head),
        ("POST", Method::Post),
        ("PUT", Method::Put),
        ("DELETE", Method::Delete),
        ("OPTIONS", Method::Options),
        ("PATCH", Method::Patch),
        ("TRACE", Method::Trace),
        ("CONNECT", Method::Connect),
        ("PURGE", Method::Other),
        ("get", Method::Other),
    ];
    for (token, method) in cases {
        let buf = format!("{token} / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(head(buf.as_bytes()).method, method, "{token}");
    }
}

#[test]
fn method_that_is_not_a_token_is_400() {
    assert_eq!(refused(b"G@T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(refused(b"GE(T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(refused(b"\x00GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(refused(b" GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

#[test]
fn request_line_parts_need_exactly_one_space() {
    assert_eq!(refused(b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(refused(b"GET /  HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(refused(b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(refused(b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400);
    assert_eq!(refused(b"GET /\r\nHost: h\r\n\r\n"), 400);
}

#[test]
fn target_with_space_or_control_is_400() {
    assert_eq!(refused(b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(refused(b"GET /a\x00b HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(refused(b"GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(refused(b"GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

#[test]
fn asterisk_form_only_with_options() {
    assert_eq!(
        head(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").method,
        Method::Options
    );
    assert_eq!(refused(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

#[test]
fn leading_empty_lines_are_skipped_up_to_four() {
    let four = b"\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let h = head(four);
    assert_eq!(h.len, four.len());
    assert_eq!(h.method_range, 8..11);
    assert_eq!(
        refused(b"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
        400
    );
    assert_eq!(try_parse(b"\r\n\r\n\r"), Ok(None));
}

#[test]
fn bare_lf_or_cr_before_request_line_is_400() {
    assert_eq!(refused(b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(refused(b"\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(refused(b"\rGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

#[test]
fn bare_lf_line_endings_are_400() {
    assert_eq!(refused(b"GET / HTTP/1.1\nHost: h\r\n\r\n"), 400);
    assert_eq!(refused(b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n"), 400);
    assert_eq!(refused(b"GET / HTTP/1.1\r\nHost: h\n\r\n"), 400);
    assert_eq!(refused(b"GET / HTTP/1.1\r\nHost: h\r\n\n"), 400);
    assert_eq!(refused(b"GET / HTTP/1.1\nHost: h\n\n"), 400);
    assert_eq!(refused(b"GET / HTTP/1.0\n\n"), 400);
}

#[test]
fn bare_cr_anywhere_is_400() {
    assert_eq!(refused(b"GET / HTTP/1.1\rHost: h\r\n\r\n"), 400);
    assert_eq!(refused(b"GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(refused(&get_with("X: a\rb\r\n")), 400);
    assert_eq!(refused(&get_with("X\r: a\r\n")), 400);
    assert_eq!(refused(&get_with("X: a\r\r\n")), 400);
    assert_eq!(refused(b"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n"), 400);
}

#[test]
fn control_bytes_in_fields_are_400_but_htab_is_fine() {
    assert_eq!(refused(&get_with("X: a\x00b\r\n")), 400);
    assert_eq!(refused(&get_with("X: a\x01b\r\n")), 400);
    assert_eq!(refused(&get_with("X: a\x7fb\r\n")), 400);
    assert_eq!(refused(&get_with("X: a\x1bb\r\n")), 400);
    assert_eq!(refused(&get_with("X\x00Y: a\r\n")), 400);
    assert_eq!(refused(&get_with("X\tY: a\r\n")), 400);
    let buf = get_with("X: a\tb\r\n");
    let mut headers = Vec::new();
    parse_head(&buf, &Limits::default(), &mut headers)
        .expect("valid")
        .expect("complete");
    assert_eq!(&buf[headers[1].value.clone()], b"a\tb");
}

#[test]
fn obs_fold_is_400() {
    assert_eq!(refused(&get_with("X: a\r\n b\r\n")), 400);
    assert_eq!(refused(&get_with("X: a\r\n\tb\r\n")), 400);
    assert_eq!(refused(b"GET / HTTP/1.1\r\n Host: h\r\n\r\n"), 400);
}

#[test]
fn whitespace_before_colon_is_400() {
    assert_eq!(refused(&get_with("X : a\r\n")), 400);
    assert_eq!(refused(&get_with("X\t: a\r\n")), 400);
    assert_eq!(refused(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"), 400);
    assert_eq!(
        refused(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\n"),
        400
    );
}

#[test]
fn empty_name_or_missing_colon_is_400() {
    assert_eq!(refused(&get_with(": a\r\n")), 400);
    assert_eq!(refused(&get_with("NoColon\r\n")), 400);
}

#[test]
fn versions_1_0_and_1_1() {
    assert_eq!(head(b"GET / HTTP/1.0\r\n\r\n").minor, 0);
    assert_eq!(head(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").minor, 1);
}

#[test]
fn other_major_versions_are_505() {
    assert_eq!(refused(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
    assert_eq!(refused(b"GET / HTTP/3.0\r\nHost: h\r\n\r\n"), 505);
    assert_eq!(refused(b"GET / HTTP/0.9\r\n\r\n"), 505);
    assert_eq!(refused(b"GET / HTTP/9.9\r\n"), 505);
}

#[test]
fn higher_minor_versions_are_read_as_1_1() {
    let buf = b"POST /x HTTP/1.2\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let mut headers = Vec::new();
    let h = parse_head(buf, &Limits::default(), &mut headers)
        .expect("valid")
        .expect("complete");
    assert_eq!(h.minor, 1);
    assert_eq!(h.framing, Framing::Chunked);
    assert_eq!(&buf[h.target], b"/x");
    assert_eq!(&buf[h.len..], b"0\r\n\r\n");
    assert_eq!(&buf[headers[1].value.clone()], b"chunked");
    assert_eq!(head(b"GET / HTTP/1.9\r\nHost: h\r\n\r\n").minor, 1);
    assert_eq!(try_parse(b"GET / HTTP/1.2\r\nHost:"), Ok(None));
    assert_eq!(refused(b"GET / HTTP/1.2\r\n\r\n"), 400, "still needs Host");
    assert_eq!(refused(b"GET / HTTP/1.2\nHost: h\r\n\r\n"), 400, "bare LF");
}

#[test]
fn malformed_versions_are_400() {
    for v in [
        "http/1.1",
        "HTTP/1.10",
        "HTTP/11",
        "HTTP/1",
        "HTTP/1.",
        "HTTP/1.x",
        "HTTP/a.1",
        "HTTPS/1.1",
        "HTTP 1.1",
        "HTTP/1.1a",
        "HTTP/01.1",
    ] {
        let buf = format!("GET / {v}\r\nHost: h\r\n\r\n");
        assert_eq!(refused(buf.as_bytes()), 400, "{v}");
    }
}

#[test]
fn version_prefixes_wait_and_garbage_fails_early() {
    assert_eq!(try_parse(b"GET / HTTP/2"), Ok(None));
    assert_eq!(try_parse(b"GET / HTTP/2.0"), Ok(None));
    assert_eq!(try_parse(b"GET / HTTP/1.2"), Ok(None));
    assert_eq!(refused(b"GET / XTTP"), 400);
    assert_eq!(refused(b"GET / HTTP/2x"), 400);
}

#[test]
fn long_request_line_is_414_even_when_incomplete() {
    let exact = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(18));
    assert_eq!(exact.find('\r'), Some(32));
    assert!(matches!(parse_small(exact.as_bytes()), Ok(Some(_))));
    let long = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(19));
    assert_eq!(parse_small(long.as_bytes()).map_err(|e| e.status), Err(414));
    for cut in 0..long.len() {
        let got = parse_small(&long.as_bytes()[..cut]);
        if cut <= 33 {
            assert_eq!(got, Ok(None), "cut at {cut}");
        } else {
            assert_eq!(got.map_err(|e| e.status), Err(414), "cut at {cut}");
        }
    }
    let huge = format!("GET /{}", "a".repeat(100));
    assert_eq!(parse_small(huge.as_bytes()).map_err(|e| e.status), Err(414));
}

#[test]
fn long_line_with_bad_version_is_414() {
    let long = format!("GET /{} HTTP/2.0\r\n\r\n", "a".repeat(40));
    assert_eq!(parse_small(long.as_bytes()).map_err(|e| e.status), Err(414));
}

#[test]
fn large_head_is_431_even_when_incomplete() {
    let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
    buf.resize(128, b'v');
    assert_eq!(parse_small(&buf), Ok(None));
    buf.push(b'v');
    assert_eq!(parse_small(&buf).map_err(|e| e.status), Err(431));
    let mut complete = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
    complete.resize(125, b'v');
    complete.extend_from_slice(b"\r\n\r\n");
    assert_eq!(parse_small(&complete).map_err(|e| e.status), Err(431));
    complete.truncate(124);
    complete.extend_from_slice(b"\r\n\r\n");
    assert!(matches!(parse_small(&complete), Ok(Some(_))));
}

#[test]
fn too_many_headers_is_431_even_when_incomplete() {
    let four = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert!(matches!(parse_small(four), Ok(Some(_))));
    let five = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n";
    assert_eq!(parse_small(five).map_err(|e| e.status), Err(431));
    let none = Limits {
        max_headers: 0,
        ..Limits::default()
    };
    let got = parse_head(b"GET / HTTP/1.0\r\nA: 1\r\n\r\n", &none, &mut Vec::new());
    assert_eq!(got.map_err(|e| e.status), Err(431));
}

#[test]
fn many_header_slots_live_on_the_heap() {
    let limits = Limits {
        max_headers: 300,
        ..Limits::default()
    };
    let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..299 {
        buf.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    let mut headers = Vec::new();
    let got = parse_head(&buf, &limits, &mut headers);
    assert!(matches!(got, Ok(Some(_))), "{got:?}");
    assert_eq!(headers.len(), 300);
    let last = &headers[299];
    assert_eq!(&buf[last.value.clone()], b"298");
}

#[test]
fn higher_minor_copy_keeps_the_431_check() {
    let mut buf = b"GET / HTTP/1.3\r\nHost: h\r\nX: ".to_vec();
    buf.resize(200, b'v');
    assert_eq!(parse_small(&buf).map_err(|e| e.status), Err(431));
    let tiny = Limits {
        max_head: 10,
        ..Limits::default()
    };
    let got = parse_head(b"GET / HTTP/1.3\r\n", &tiny, &mut Vec::new());
    assert_eq!(got.map_err(|e| e.status), Err(431));
}

#[test]
fn headers_vec_is_cleared_between_requests() {
    let mut headers = vec![HeaderIdx::default(); 5];
    let got = parse_head(b"GET / HTTP/1.0\r\n\r\n", &Limits::default(), &mut headers);
    assert!(matches!(got, Ok(Some(_))));
    assert!(headers.is_empty());
}

#[test]
fn classify_version_shapes() {
    assert_eq!(classify_version(b"HTTP/1.1", true), Version::Number(1, 1));
    assert_eq!(classify_version(b"HTTP/2.0", true), Version::Number(2, 0));
    assert_eq!(classify_version(b"HTTP/2.0", false), Version::Prefix);
    assert_eq!(classify_version(b"HTT", false), Version::Prefix);
    assert_eq!(classify_version(b"HTT", true), Version::Garbage);
    assert_eq!(classify_version(b"HTTP/2.0 ", false), Version::Garbage);
    assert_eq!(classify_version(b"", true), Version::Garbage);
}

#[test]
fn pipelined_requests_parse_one_after_another() {
    let buf = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhiGET /c";
    let first = head(buf);
    assert_eq!(&buf[first.target.clone()], b"/a");
    let rest = &buf[first.len..];
    let second = head(rest);
    assert_eq!(&rest[second.target.clone()], b"/b");
    assert_eq!(second.framing, Framing::Length(2));
    let third = &rest[second.len + 2..];
    assert_eq!(try_parse(third), Ok(None));
}

#[test]
fn connect_with_authority_form_is_left_to_the_caller() {
    let buf = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let h = head(buf);
    assert_eq!(h.method, Method::Connect);
    assert_eq!(&buf[h.target], b"example.com:443");
}
