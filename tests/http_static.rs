//! `handler = "static"` through the real binary: index files, MIME types, validators and 304,
//! byte ranges, a large file over sendfile, directory redirects, escapes out of the root, and
//! the gzip filter.

mod common;
use common::*;

use std::io::{Read, Write};
use std::time::Duration;

/// Bytes that do not repeat in a short period, so a misplaced range shows.
fn pattern(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Text long enough to be compressed.
fn text(n: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!(
            "line {i}: the quick brown fox jumps over the lazy dog\n"
        ));
        i += 1;
    }
    s.truncate(n);
    s
}

/// A server whose `/` is a static root `html/site`, with `http_extra` in `[http]`; `files` are
/// written under the root before it starts.
fn start_with(http_extra: &str, files: &[(&str, &[u8])]) -> Server {
    let port = free_port();
    let loc = r#"
  [[http.server.location]]
  prefix = "/"
  handler = "static"
  root = "html/site"
  index = ["index.html", "index.htm"]
  expires = "1h"
"#;
    let s = Server::prepare(port, &basic_conf(port, "", http_extra, loc));
    write_file(&s.path("html/secret.txt"), b"outside the root");
    for (name, data) in files {
        write_file(&s.path(&format!("html/site/{name}")), data);
    }
    s.launch()
}

fn start(files: &[(&str, &[u8])]) -> Server {
    start_with("", files)
}

fn get_with(s: &Server, path: &str, extra: &str) -> Resp {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n");
    send(s.addr(), raw.as_bytes())
}

#[test]
fn index_files_and_types_by_extension() {
    let s = start_with(
        "[http.types]\ngeojson = \"application/x-test\"\nDAT = \"application/x-dat\"",
        &[
            ("index.html", b"<h1>home</h1>"),
            ("sub/index.htm", b"sub home"),
            ("a.css", b"body{}"),
            ("a.js", b"1"),
            ("a.json", b"{}"),
            ("a.PNG", b"png"),
            ("a.svg", b"<svg/>"),
            ("a.geojson", b"{}"),
            ("a.dat", b"d"),
            ("noext", b"n"),
            ("a.unknown", b"u"),
        ],
    );
    let r = get(s.addr(), "/");
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>home</h1>"));
    assert_eq!(r.header("Content-Type"), Some("text/html"));
    assert_eq!(r.header("Cache-Control"), Some("max-age=3600"));
    assert_eq!(
        get(s.addr(), "/sub/").text(),
        "sub home",
        "second index name"
    );
    for (path, ty) in [
        ("/index.html", "text/html"),
        ("/a.css", "text/css"),
        ("/a.js", "application/javascript"),
        ("/a.json", "application/json"),
        ("/a.PNG", "image/png"),
        ("/a.svg", "image/svg+xml"),
        ("/a.geojson", "application/x-test"),
        ("/a.dat", "application/x-dat"),
        ("/noext", "application/octet-stream"),
        ("/a.unknown", "application/octet-stream"),
    ] {
        let r = get(s.addr(), path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("Content-Type"), Some(ty), "{path}");
        assert_eq!(r.header("Accept-Ranges"), Some("bytes"), "{path}");
    }
}

#[test]
fn directories_missing_files_and_methods() {
    let s = start(&[("sub/inner/f.txt", b"f"), ("empty/.keep", b"")]);
    let r = get(s.addr(), "/sub");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/sub/"));
    let r = get(s.addr(), "/sub/inner?x=1");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/sub/inner/?x=1"));
    assert_eq!(get(s.addr(), "/sub/inner/f.txt").text(), "f");
    assert_eq!(get(s.addr(), "/missing.txt").status, 404);
    assert_eq!(get(s.addr(), "/sub/inner/f.txt/").status, 404);
    assert_eq!(get(s.addr(), "/missing/dir/").status, 404);
    assert_eq!(get(s.addr(), "/empty/").status, 403, "no index, no listing");
    for m in ["POST", "PUT", "DELETE"] {
        let raw = format!(
            "{m} /sub/inner/f.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let r = send(s.addr(), raw.as_bytes());
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.header("Allow"), Some("GET, HEAD"));
    }
    let raw = b"HEAD /sub/inner/f.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let r = send(s.addr(), raw);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("1"));
}

#[test]
fn validators_give_304() {
    let s = start(&[("v.txt", b"validated")]);
    let r = get(s.addr(), "/v.txt");
    let etag = r.header("ETag").expect("ETag").to_string();
    let lm = r
        .header("Last-Modified")
        .expect("Last-Modified")
        .to_string();
    httpdate::parse_http_date(&lm).expect("an HTTP date");

    let r = get_with(&s, "/v.txt", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("ETag"), Some(etag.as_str()));
    assert_eq!(
        get_with(&s, "/v.txt", "If-None-Match: *\r\n").status,
        304,
        "* matches any current file"
    );
    let r = get_with(&s, "/v.txt", "If-None-Match: \"other\"\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "validated"));

    let r = get_with(&s, "/v.txt", &format!("If-Modified-Since: {lm}\r\n"));
    assert_eq!(r.status, 304);
    let old = "If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT\r\n";
    assert_eq!(get_with(&s, "/v.txt", old).status, 200);
    let both = format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {lm}\r\n");
    assert_eq!(
        get_with(&s, "/v.txt", &both).status,
        200,
        "If-None-Match wins over If-Modified-Since (RFC 9110 13.1.3)"
    );
}

#[test]
fn single_ranges_206_unsatisfiable_416_and_if_range() {
    let data = pattern(1000);
    let s = start(&[("r.bin", &data)]);
    let etag = get(s.addr(), "/r.bin").header("ETag").unwrap().to_string();

    let r = get_with(&s, "/r.bin", "Range: bytes=10-19\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("Content-Range"), Some("bytes 10-19/1000"));
    assert_eq!(r.header("Content-Length"), Some("10"));
    assert_eq!(r.body, &data[10..20]);

    let r = get_with(&s, "/r.bin", "Range: bytes=-5\r\n");
    assert_eq!(r.header("Content-Range"), Some("bytes 995-999/1000"));
    assert_eq!(r.body, &data[995..]);
    let r = get_with(&s, "/r.bin", "Range: bytes=990-5000\r\n");
    assert_eq!(r.header("Content-Range"), Some("bytes 990-999/1000"));
    assert_eq!(r.body, &data[990..]);

    let r = get_with(&s, "/r.bin", "Range: bytes=1000-\r\n");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("Content-Range"), Some("bytes */1000"));

    let r = get_with(&s, "/r.bin", "Range: bytes=0-1,5-6\r\n");
    assert_eq!(
        (r.status, r.body.len()),
        (200, 1000),
        "several ranges: whole"
    );

    let r = get_with(&s, "/r.bin", "Range: bytes=0-3\r\nIf-Range: \"not-it\"\r\n");
    assert_eq!((r.status, r.body.len()), (200, 1000), "If-Range mismatch");
    let r = get_with(
        &s,
        "/r.bin",
        &format!("Range: bytes=0-3\r\nIf-Range: {etag}\r\n"),
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &data[..4]));
}

#[test]
fn a_large_file_arrives_whole_and_exact() {
    let data = pattern(5 * 1024 * 1024 + 7);
    let s = start(&[("big.bin", &data)]);
    let mut c = connect(s.addr());
    let mut buf = Vec::new();
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let r = next_response(&mut c, &mut buf);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Length"),
        Some(data.len().to_string().as_str())
    );
    assert!(r.body == data, "body differs from the file");

    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=3000000-3000099\r\n\r\n")
        .unwrap();
    let r = next_response(&mut c, &mut buf);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[3_000_000..3_000_100]);

    c.write_all(b"HEAD /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c, &mut buf, true).unwrap();
    assert_eq!(
        r.header("Content-Length"),
        Some(data.len().to_string().as_str())
    );
    c.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(next_response(&mut c, &mut buf).text(), "ok\n");
}

#[test]
fn a_slow_reader_still_gets_the_large_file_exactly() {
    let data = pattern(3 * 1024 * 1024);
    let s = start(&[("big.bin", &data)]);
    let mut c = open_with(s.addr(), b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    let want = data.len();
    while got.len() < want + 100 {
        match c.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(e) => panic!("read: {e}"),
        }
        if find(&got, b"\r\n\r\n").is_some_and(|h| got.len() >= h + 4 + want) {
            break;
        }
    }
    let h = find(&got, b"\r\n\r\n").unwrap() + 4;
    assert!(got[h..] == data[..], "slow read differs");
}

/// Targets that try to leave the root; none may give the file outside it.
const ESCAPES: &[&str] = &[
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/.%2e/secret.txt",
    "/..%2fsecret.txt",
    "/%2e%2e%2fsecret.txt",
    "/sub/../../secret.txt",
    "/sub/%2e%2e/%2e%2e/secret.txt",
    "/sub/..%2F..%2Fsecret.txt",
    "/./../secret.txt",
    "//../secret.txt",
    "http://a/../secret.txt",
];

#[test]
fn escapes_out_of_the_root_are_refused() {
    let s = start(&[("sub/f.txt", b"inside")]);
    for target in ESCAPES {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut c = open_with(s.addr(), raw.as_bytes());
        let mut buf = Vec::new();
        let r = next_response(&mut c, &mut buf);
        assert_ne!(r.text(), "outside the root", "{target} escaped");
        assert_eq!(r.status, 400, "{target}");
        assert!(closed(&mut c), "{target}: left open");
    }
    for target in ["/sub/..%5c..%5csecret.txt", "/sub/..\\..\\secret.txt"] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let r = send(s.addr(), raw.as_bytes());
        assert_ne!(r.text(), "outside the root", "{target} escaped");
        assert_eq!(r.status, 404, "{target}: backslash is an ordinary byte");
    }
    let r = get(s.addr(), "/sub/x/../f.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "inside"));
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("a gzip stream");
    out
}

#[test]
fn gzip_compresses_listed_types_for_clients_that_accept_it() {
    let page = text(20_000);
    let small = text(100);
    let img = pattern(20_000);
    let s = start(&[
        ("page.html", page.as_bytes()),
        ("small.txt", small.as_bytes()),
        ("img.png", &img),
    ]);
    let gz = "Accept-Encoding: gzip, deflate\r\n";
    let r = get_with(&s, "/page.html", gz);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(r.header("Content-Length"), None);
    assert!(r
        .header("Vary")
        .is_some_and(|v| v.contains("Accept-Encoding")));
    assert!(
        r.body.len() < page.len() / 2,
        "compressed to {}",
        r.body.len()
    );
    assert_eq!(gunzip(&r.body), page.as_bytes());
    assert!(r.header("ETag").is_some_and(|e| e.starts_with("W/")));

    let r = get(s.addr(), "/page.html");
    assert_eq!(r.header("Content-Encoding"), None, "no Accept-Encoding");
    assert_eq!(r.body, page.as_bytes());
    let r = get_with(&s, "/page.html", "Accept-Encoding: gzip;q=0\r\n");
    assert_eq!(r.header("Content-Encoding"), None, "q=0 refuses gzip");
    let r = get_with(&s, "/img.png", gz);
    assert_eq!(
        r.header("Content-Encoding"),
        None,
        "images are not compressed"
    );
    assert_eq!(r.body, img);
    let r = get_with(&s, "/small.txt", gz);
    assert_eq!(r.header("Content-Encoding"), None, "below gzip_min_length");
    assert_eq!(r.body, small.as_bytes());

    let r = send(
        s.addr(),
        b"GET /page.html HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n",
    );
    assert_eq!(
        gunzip(&r.body),
        page.as_bytes(),
        "HTTP/1.0: framed by the close"
    );
}

#[test]
fn gzip_off_in_http_leaves_bodies_alone() {
    let page = text(5_000);
    let s = start_with("gzip = false", &[("page.html", page.as_bytes())]);
    let r = get_with(&s, "/page.html", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(r.body, page.as_bytes());
}

#[test]
fn a_compressed_answer_keeps_the_connection_in_sync() {
    let page = text(30_000);
    let s = start(&[("page.txt", page.as_bytes())]);
    let one = "GET /page.txt HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n";
    let mut c = open_with(
        s.addr(),
        format!("{one}{one}GET /health HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
    );
    let mut buf = Vec::new();
    for _ in 0..2 {
        let r = next_response(&mut c, &mut buf);
        assert_eq!(gunzip(&r.body), page.as_bytes());
    }
    assert_eq!(next_response(&mut c, &mut buf).text(), "ok\n");
}

#[test]
fn head_of_a_compressible_file_sends_no_body() {
    let page = text(5_000);
    let s = start(&[("page.html", page.as_bytes())]);
    let head = "HEAD /page.html HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n";
    let mut c = open_with(
        s.addr(),
        format!("{head}GET /health HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
    );
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, true).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert_eq!(
        next_response(&mut c, &mut buf).text(),
        "ok\n",
        "bytes after a HEAD answer"
    );
}
