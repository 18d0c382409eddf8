//! Request-head parsing cost: a small API GET, a full browser request, path normalisation and
//! chunked decoding. Run with `cargo bench --bench parse`.

use std::hint::black_box;
use std::mem::MaybeUninit;

use bizzy::http::parse::{normalize_path, parse_head, ChunkedDecoder, HeaderIdx, Limits};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// A typical keep-alive API call: 5 header fields.
const GET_5: &[u8] = b"GET /v1/hives/42/occupancy HTTP/1.1\r\n\
Host: api.bizzy.example\r\n\
User-Agent: bizzy-app/2.3 (iOS 17.4)\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\r\n";

/// A desktop browser loading a page: 20 header fields, long cookie and user agent.
const BROWSER_20: &[u8] = b"GET /v1/hives?q=gym&near=52.52,13.40&radius_m=1500 HTTP/1.1\r\n\
Host: www.bizzy.example\r\n\
Connection: keep-alive\r\n\
Cache-Control: max-age=0\r\n\
sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-User: ?1\r\n\
Sec-Fetch-Dest: document\r\n\
Referer: https://www.bizzy.example/v1/hives?q=gym\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-GB,en;q=0.9,de;q=0.8\r\n\
Cookie: session=3f2a9c1e7b5d4a6f8e0c2b4d6f8a0c2e; theme=dark; consent=1; _ga=GA1.1.123456789.1700000000\r\n\
If-None-Match: W/\"5f3c-18e4b2a1c9d\"\r\n\
If-Modified-Since: Tue, 14 May 2024 09:12:44 GMT\r\n\
Priority: u=0, i\r\n\r\n";

fn heads(c: &mut Criterion) {
    let limits = Limits::default();
    let mut headers: Vec<HeaderIdx> = Vec::with_capacity(limits.max_headers);
    let mut group = c.benchmark_group("parse_head");
    for (name, req) in [("get_5_headers", GET_5), ("browser_20_headers", BROWSER_20)] {
        group.throughput(Throughput::Bytes(req.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let head = parse_head(black_box(req), &limits, &mut headers);
                black_box(head.map(|h| h.map(|h| h.len)))
            })
        });
    }
    group.finish();
}

/// httparse alone on the same requests: what the checks above add is the difference.
fn baseline(c: &mut Criterion) {
    let mut group = c.benchmark_group("httparse_only");
    for (name, req) in [("get_5_headers", GET_5), ("browser_20_headers", BROWSER_20)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 100];
                let mut parsed = httparse::Request::new(&mut []);
                black_box(parsed.parse_with_uninit_headers(black_box(req), &mut slots))
                    .map(|s| s.is_complete())
            })
        });
    }
    group.finish();
}

fn paths(c: &mut Criterion) {
    let mut path = String::with_capacity(256);
    let mut group = c.benchmark_group("normalize_path");
    for (name, target) in [
        ("plain", &b"/v1/hives/42/occupancy?since=2024-05-14"[..]),
        (
            "dots_and_escapes",
            b"/static/./css/../img//caf%C3%A9%20logo.png",
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(normalize_path(black_box(target), &mut path)))
        });
    }
    group.finish();
}

fn chunked(c: &mut Criterion) {
    let mut body = Vec::new();
    for _ in 0..16 {
        body.extend_from_slice(b"400\r\n");
        body.extend_from_slice(&[b'x'; 1024]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut out = Vec::with_capacity(16 * 1024);
    let mut group = c.benchmark_group("chunked");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("16x1KiB", |b| {
        b.iter(|| {
            out.clear();
            let mut dec = ChunkedDecoder::new(0);
            black_box(dec.decode(black_box(&body), &mut out))
        })
    });
    group.finish();
}

criterion_group!(benches, heads, baseline, paths, chunked);
criterion_main!(benches);
