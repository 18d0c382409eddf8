//! HTTP/1.1 as RFC 9112 and 9110 ask it of the real binary, over raw sockets: keep-alive and its
//! limits, pipelining, request bodies, 100-continue, HEAD, conditional GET, the status codes of
//! limits and timeouts, and the refusal (400 and a close) of everything that could desynchronise
//! a proxy in front of the server.

mod common;
use common::*;

use std::io::Write;
use std::time::{Duration, Instant};

/// `/p0` .. `/p9` answer their own name, so the order of answers can be checked.
fn numbered_locations() -> String {
    (0..10)
        .map(|i| {
            format!(
                "[[http.server.location]]\nexact = \"/p{i}\"\nreturn = {{ status = 200, body = \"p{i}\" }}\n"
            )
        })
        .collect()
}

fn start(http_extra: &str) -> Server {
    let port = free_port();
    Server::start(
        port,
        &basic_conf(port, "", http_extra, &numbered_locations()),
    )
}

fn req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n")
}

#[test]
fn keepalive_requests_closes_after_the_last_allowed() {
    let s = start("keepalive_requests = 3");
    let mut c = connect(s.addr());
    let mut buf = Vec::new();
    for i in 0..3 {
        c.write_all(req("/health").as_bytes()).unwrap();
        let r = next_response(&mut c, &mut buf);
        assert_eq!(r.status, 200);
        let close = r.header("Connection") == Some("close");
        assert_eq!(close, i == 2, "response {i}: {}", r.head);
    }
    assert!(closed(&mut c), "open after keepalive_requests answers");
}

#[test]
fn keepalive_timeout_closes_an_idle_connection() {
    let s = start("keepalive_timeout = \"1s\"");
    let mut c = open_with(s.addr(), req("/health").as_bytes());
    let mut buf = Vec::new();
    let r = next_response(&mut c, &mut buf);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), None);
    let t = Instant::now();
    c.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    assert!(closed(&mut c), "idle connection still open");
    let idle = t.elapsed();
    assert!(
        idle >= Duration::from_millis(800) && idle < Duration::from_millis(2500),
        "closed after {idle:?}"
    );
}

#[test]
fn keepalive_timeout_zero_disables_keep_alive() {
    let s = start("keepalive_timeout = \"0s\"");
    let mut c = open_with(s.addr(), req("/health").as_bytes());
    let mut buf = Vec::new();
    assert_eq!(
        next_response(&mut c, &mut buf).header("Connection"),
        Some("close")
    );
    assert!(closed(&mut c));
}

#[test]
fn http10_closes_unless_keep_alive_is_asked() {
    let s = start("");
    let mut c = open_with(s.addr(), b"GET /health HTTP/1.0\r\n\r\n");
    let mut buf = Vec::new();
    let r = next_response(&mut c, &mut buf);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(closed(&mut c));

    let ka = b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let mut c = open_with(s.addr(), ka);
    for _ in 0..2 {
        let r = next_response(&mut c, &mut buf);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), Some("keep-alive"));
        assert_eq!(r.header("Content-Length"), Some("3"));
        assert!(still_open(&mut c, Duration::from_millis(300)));
        c.write_all(ka).unwrap();
    }
}

#[test]
fn connection_close_from_an_http11_client_is_honoured() {
    let s = start("");
    let raw = b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let mut c = open_with(s.addr(), raw);
    let mut buf = Vec::new();
    let r = next_response(&mut c, &mut buf);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(closed(&mut c));
}

#[test]
fn ten_pipelined_requests_are_answered_in_order() {
    let s = start("");
    let all: String = (0..10).map(|i| req(&format!("/p{i}"))).collect();
    let mut c = open_with(s.addr(), all.as_bytes());
    let mut buf = Vec::new();
    for i in 0..10 {
        let r = next_response(&mut c, &mut buf);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("p{i}"));
    }
    assert!(still_open(&mut c, Duration::from_millis(200)));
}

#[test]
fn a_pipelined_request_split_across_reads_is_kept() {
    let s = start("");
    let mut c = open_with(s.addr(), format!("{}GET /p2 HT", req("/p1")).as_bytes());
    let mut buf = Vec::new();
    assert_eq!(next_response(&mut c, &mut buf).text(), "p1");
    std::thread::sleep(Duration::from_millis(200));
    c.write_all(b"TP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let r = next_response(&mut c, &mut buf);
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.text(), "p2");
}

#[test]
fn a_partial_pipelined_head_times_out_with_408() {
    let s = start("client_header_timeout = \"1s\"");
    let mut c = open_with(s.addr(), format!("{}GET /p2 HT", req("/p1")).as_bytes());
    c.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    assert_eq!(next_response(&mut c, &mut buf).text(), "p1");
    let r = next_response(&mut c, &mut buf);
    assert_eq!(r.status, 408, "{}", r.head);
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_pipeline_whose_answers_exceed_the_output_high_water_is_answered_whole() {
    let port = free_port();
    let big = format!(
        "[[http.server.location]]\nexact = \"/big\"\nreturn = {{ status = 200, body = \"{}\" }}\n",
        "x".repeat(10_000)
    );
    let s = Server::start(port, &basic_conf(port, "", "", &big));
    let all: String = (0..60).map(|_| req("/big")).collect();
    let mut c = open_with(s.addr(), format!("{all}{}", req("/health")).as_bytes());
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = Vec::new();
    for i in 0..60 {
        let r = next_response(&mut c, &mut buf);
        assert_eq!((r.status, r.body.len()), (200, 10_000), "answer {i}");
    }
    assert_eq!(next_response(&mut c, &mut buf).text(), "ok\n");
}

#[test]
fn request_bodies_by_length_and_chunked_keep_the_stream_in_sync() {
    let s = start("");
    let raw = format!(
        "POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello{}\
         POST /p2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
         5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n{}",
        req("/p3"),
        req("/p4")
    );
    let mut c = open_with(s.addr(), raw.as_bytes());
    let mut buf = Vec::new();
    for want in ["p1", "p3", "p2", "p4"] {
        let r = next_response(&mut c, &mut buf);
        assert_eq!((r.status, r.text().as_str()), (200, want));
    }
}

#[test]
fn a_body_that_arrives_slowly_is_waited_for() {
    let s = start("");
    let head = "POST /p1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab";
    let mut c = open_with(s.addr(), head.as_bytes());
    assert!(still_open(&mut c, Duration::from_millis(200)));
    c.write_all(b"c\r\n0\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    assert_eq!(next_response(&mut c, &mut buf).text(), "p1");
}

#[test]
fn expect_100_continue_invites_the_body() {
    let s = start("");
    let head = "POST /p5 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n";
    let mut c = open_with(s.addr(), head.as_bytes());
    let mut buf = Vec::new();
    let r = next_response(&mut c, &mut buf);
    assert_eq!(r.status, 100, "{}", r.head);
    c.write_all(b"body").unwrap();
    let r = next_response(&mut c, &mut buf);
    assert_eq!((r.status, r.text().as_str()), (200, "p5"));

    let other = "POST /p5 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: magic\r\n\r\n";
    expect_refused(s.addr(), other.as_bytes(), 417);
}

#[test]
fn head_has_the_length_of_get_but_no_body() {
    let s = start("");
    let raw = format!("HEAD /p7 HTTP/1.1\r\nHost: a\r\n\r\n{}", req("/p8"));
    let mut c = open_with(s.addr(), raw.as_bytes());
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, true).expect("HEAD answer");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("2"));
    let r = next_response(&mut c, &mut buf);
    assert_eq!(r.text(), "p8", "bytes after a HEAD answer");
}

#[test]
fn conditional_get_by_etag_gives_304() {
    let s = start("");
    let r = get(s.addr(), "/p3");
    let etag = r.header("ETag").expect("an ETag").to_string();
    let raw = format!(
        "GET /p3 HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"nope\", {etag}\r\n\r\n{}",
        req("/p4")
    );
    let mut c = open_with(s.addr(), raw.as_bytes());
    let mut buf = Vec::new();
    let r = next_response(&mut c, &mut buf);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("ETag"), Some(etag.as_str()));
    assert_eq!(r.header("Content-Length"), None);
    assert_eq!(next_response(&mut c, &mut buf).text(), "p4");

    let other =
        "GET /p3 HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"other\"\r\nConnection: close\r\n\r\n";
    assert_eq!(send(s.addr(), other.as_bytes()).status, 200);
}

#[test]
fn every_answer_has_date_and_server() {
    let s = start("");
    for r in [
        get(s.addr(), "/p1"),
        get(s.addr(), "/nowhere"),
        send(s.addr(), b"GET / HTTP/1.1\r\n\r\n"),
    ] {
        let date = r.header("Date").expect("Date");
        let t = httpdate::parse_http_date(date).expect("an IMF-fixdate");
        let skew = t
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_else(|e| e.duration());
        assert!(skew < Duration::from_secs(5), "Date is {date}");
        let server = r.header("Server").expect("Server");
        assert_eq!(server, concat!("bizzy/", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn server_tokens_off_hides_the_version() {
    let s = start("server_tokens = false");
    assert_eq!(get(s.addr(), "/p1").header("Server"), Some("bizzy"));
}

#[test]
fn bodies_over_client_max_body_size_get_413() {
    let s = start("client_max_body_size = \"16\"");
    let ok = "POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 16\r\nConnection: close\r\n\r\n0123456789abcdef";
    assert_eq!(send(s.addr(), ok.as_bytes()).status, 200);
    let by_length = "POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n";
    expect_refused(s.addr(), by_length.as_bytes(), 413);
    let chunked = "POST /p1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                   10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n";
    expect_refused(s.addr(), chunked.as_bytes(), 413);
}

#[test]
fn an_expected_body_over_the_limit_gets_413_without_100() {
    let s = start("client_max_body_size = \"16\"");
    let head =
        "POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n";
    expect_refused(s.addr(), head.as_bytes(), 413);
}

#[test]
fn slowloris_gets_408_at_client_header_timeout_from_the_first_byte() {
    let s = start("client_header_timeout = \"1s\"");
    let mut c = connect(s.addr());
    let mut w = c.try_clone().unwrap();
    let t = Instant::now();
    let writer = std::thread::spawn(move || {
        let line =
            b"GET /p1 HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for b in line {
            if w.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut buf = Vec::new();
    c.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    let r = next_response(&mut c, &mut buf);
    let took = t.elapsed();
    assert_eq!(r.status, 408);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2000),
        "408 after {took:?}"
    );
    assert!(closed(&mut c));
    writer.join().unwrap();
}

#[test]
fn a_stalled_body_gets_408_at_client_body_timeout() {
    let s = start("client_body_timeout = \"1s\"");
    let raw = "POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab";
    let mut c = open_with(s.addr(), raw.as_bytes());
    c.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let r = next_response(&mut c, &mut buf);
    assert_eq!(r.status, 408);
    assert!(t.elapsed() < Duration::from_millis(2500));
    assert!(closed(&mut c));
}

#[test]
fn limits_give_414_431_and_versions_505_methods_501() {
    let s = start("large_client_header_buffers = \"1k\"\nmax_headers = 8");
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(2000));
    expect_refused(s.addr(), long.as_bytes(), 414);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(1500)
    );
    expect_refused(s.addr(), big.as_bytes(), 431);
    let many: String = (0..9).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    expect_refused(s.addr(), many.as_bytes(), 431);
    expect_refused(s.addr(), b"GET /p1 HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    expect_refused(s.addr(), b"GET /p1 HTTP/3.1\r\nHost: a\r\n\r\n", 505);

    let r = send(
        s.addr(),
        b"BREW /p1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 501);
    let r = send(
        s.addr(),
        b"GET /p1 HTTP/1.2\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "p1"),
        "1.2 reads as 1.1"
    );
}

/// Requests a proxy and this server could frame differently: each must get 400 and a close.
const SMUGGLING: &[(&str, &[u8])] = &[
    (
        "length and chunked",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "conflicting lengths",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    ),
    (
        "repeated length",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    ),
    (
        "length list",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
    ),
    (
        "signed length",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
    ),
    (
        "hex length",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc",
    ),
    (
        "empty length",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
    ),
    (
        "overflowing length",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
    ),
    (
        "unknown coding",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    ),
    (
        "coding list",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "chunked twice",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "coding repeated on two lines",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "chunked in HTTP/1.0",
        b"POST /p1 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "bad chunk size",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ),
    (
        "chunk size with 0x",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "overflowing chunk size",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000001\r\n",
    ),
    (
        "chunk without CRLF",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n",
    ),
    (
        "bare LF in chunk line",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n",
    ),
    (
        "obs-fold",
        b"GET /p1 HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n b\r\n\r\n",
    ),
    (
        "obs-fold of Content-Length",
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 3\r\n\r\nabc",
    ),
    ("bare CR", b"GET /p1 HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n"),
    ("bare LF", b"GET /p1 HTTP/1.1\nHost: a\n\n"),
    ("NUL in a value", b"GET /p1 HTTP/1.1\r\nHost: a\r\nX-A: a\0b\r\n\r\n"),
    ("NUL in the target", b"GET /p1\0 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("control byte", b"GET /p1 HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n"),
    ("DEL in a name", b"GET /p1 HTTP/1.1\r\nHost: a\r\nX\x7fA: b\r\n\r\n"),
    (
        "space before colon",
        b"GET /p1 HTTP/1.1\r\nHost: a\r\nContent-Length : 0\r\n\r\n",
    ),
    ("missing Host", b"GET /p1 HTTP/1.1\r\n\r\n"),
    ("duplicate Host", b"GET /p1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("bad Host", b"GET /p1 HTTP/1.1\r\nHost: a b\r\n\r\n"),
    ("lowercase version", b"GET /p1 http/1.1\r\nHost: a\r\n\r\n"),
    ("two spaces", b"GET  /p1 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("fragment", b"GET /p1#x HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("bad escape", b"GET /p%zz HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("encoded NUL", b"GET /p1%00 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("encoded LF", b"GET /p1%0aX HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("climbing path", b"GET /../p1 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("encoded climb", b"GET /a/%2e%2e/%2E%2E/p1 HTTP/1.1\r\nHost: a\r\n\r\n"),
];

#[test]
fn anything_that_could_desynchronise_a_proxy_gets_400_and_a_close() {
    let s = start("");
    for (what, raw) in SMUGGLING {
        let mut c = open_with(s.addr(), raw);
        let mut buf = Vec::new();
        let r =
            read_response(&mut c, &mut buf, false).unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(r.status, 400, "{what}: {}", r.head);
        assert_eq!(r.header("Connection"), Some("close"), "{what}");
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(closed(&mut c), "{what}: left open");
    }
}

#[test]
fn a_refused_request_does_not_answer_what_follows_it() {
    let s = start("");
    let raw = format!(
        "POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{}",
        req("/p2")
    );
    let mut c = open_with(s.addr(), raw.as_bytes());
    let mut buf = Vec::new();
    assert_eq!(next_response(&mut c, &mut buf).status, 400);
    assert!(
        read_response(&mut c, &mut buf, false).is_none(),
        "answered the smuggled request"
    );
}

#[test]
fn dot_segments_and_escapes_inside_the_root_are_resolved() {
    let s = start("");
    for target in [
        "/x/../p1",
        "/./p1",
        "//p1",
        "/%70%31",
        "http://a/p1",
        "/p1?q=/../..",
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let r = send(s.addr(), raw.as_bytes());
        assert_eq!((r.status, r.text().as_str()), (200, "p1"), "{target}");
    }
}
