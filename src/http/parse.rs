//! Request head and body framing: the HTTP/1.1 parser glue.
//!
//! Owns the strict reading of what a client sends before the body: the request line, the header
//! fields and what they mean for framing ([`parse_head`]), the request-target ([`normalize_path`])
//! and chunked bodies ([`ChunkedDecoder`]). The connection state machine calls these on its read
//! buffer; nothing here does I/O, allocates per request on the hot path, or panics on input.
//!
//! `httparse` tokenises; this module adds what a server in front of (or behind) other HTTP
//! processors must refuse so that no two parsers can disagree on where a request ends
//! (request smuggling): see [`parse_head`] for the list. Every [`ParseError`] closes the
//! connection after its answer, so a refused request never desynchronises the stream.
//!
//! Parsed positions are byte ranges into the caller's buffer (as hyper's
//! `record_header_indices`), not borrows, so the buffer can keep growing while a request is alive.

mod chunked;
mod fields;
mod head;
mod path;

use std::fmt;
use std::ops::Range;

pub use chunked::ChunkedDecoder;
pub use head::parse_head;
pub use path::normalize_path;

/// Size limits on a request head, checked on partial input too so a slow client cannot grow the
/// read buffer past them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest request line, without its CRLF; longer gives 414.
    pub max_line: usize,
    /// The largest head, leading empty lines and the final CRLFCRLF included; larger gives 431.
    pub max_head: usize,
    /// The most header fields; more give 431.
    pub max_headers: usize,
}

impl Default for Limits {
    /// nginx's defaults, roughly: 8 KiB lines, 32 KiB heads, 100 fields (hyper's count).
    fn default() -> Self {
        Limits {
            max_line: 8 * 1024,
            max_head: 32 * 1024,
            max_headers: 100,
        }
    }
}

/// The request method. Comparison is case-sensitive (RFC 9110 9.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Trace,
    Connect,
    /// A valid token this server does not know: the caller answers 501.
    Other,
}

impl Method {
    /// Maps a method token (already checked to be a token) to a [`Method`].
    pub fn from_bytes(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }
}

/// Where one header field sits in the buffer given to [`parse_head`]. The value has no leading
/// or trailing whitespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderIdx {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// How the body of a request is delimited (RFC 9112 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No Content-Length and no Transfer-Encoding: no body.
    None,
    /// `Content-Length: n`; `Length(0)` when the client sent 0.
    Length(u64),
    /// `Transfer-Encoding: chunked`: read it with [`ChunkedDecoder`].
    Chunked,
}

/// A parsed request head. Every range points into the buffer given to [`parse_head`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    pub method_range: Range<usize>,
    /// The raw request-target; [`normalize_path`] splits and cleans it.
    pub target: Range<usize>,
    /// 0 or 1. `HTTP/1.2` to `HTTP/1.9` are read as 1.1 (RFC 9110 2.5) and give 1.
    pub minor: u8,
    /// Bytes of the head, leading empty lines and the final CRLFCRLF included: the body (or the
    /// next request) starts at `len`.
    pub len: usize,
    pub framing: Framing,
    /// The Host field value (possibly empty); `None` only in HTTP/1.0. With an absolute-form
    /// target the target's authority is the one to use (RFC 9112 3.2.2).
    pub host: Option<Range<usize>>,
    /// From the version and the `close` / `keep-alive` tokens of Connection.
    pub keep_alive: bool,
    /// `Expect: 100-continue` in an HTTP/1.1 request (RFC 9110 10.1.1 says to ignore it in 1.0).
    pub expect_continue: bool,
    pub if_none_match: Option<Range<usize>>,
    pub if_modified_since: Option<Range<usize>>,
    pub range: Option<Range<usize>>,
    /// Accept-Encoding allows gzip (or x-gzip, or `*`) with a non-zero qvalue.
    pub accept_gzip: bool,
    pub user_agent: Option<Range<usize>>,
    pub referer: Option<Range<usize>>,
}

impl Head {
    /// A head with what the request line says and every field-derived member unset.
    fn new(
        method: Method,
        method_range: Range<usize>,
        target: Range<usize>,
        minor: u8,
        len: usize,
    ) -> Self {
        Head {
            method,
            method_range,
            target,
            minor,
            len,
            framing: Framing::None,
            host: None,
            keep_alive: false,
            expect_continue: false,
            if_none_match: None,
            if_modified_since: None,
            range: None,
            accept_gzip: false,
            user_agent: None,
            referer: None,
        }
    }
}

/// A request that must be refused; the connection is closed after the answer.
///
/// `status` is one of 400, 413 (chunked body over its limit), 414, 417, 431, 505.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub status: u16,
    pub reason: &'static str,
}

impl ParseError {
    /// 400 Bad Request.
    pub const fn bad(reason: &'static str) -> Self {
        ParseError {
            status: 400,
            reason,
        }
    }

    /// 413 Content Too Large.
    pub const fn body_too_large() -> Self {
        ParseError {
            status: 413,
            reason: "request body too large",
        }
    }

    /// 414 URI Too Long.
    pub const fn line_too_long() -> Self {
        ParseError {
            status: 414,
            reason: "request line too long",
        }
    }

    /// 417 Expectation Failed.
    pub const fn expectation() -> Self {
        ParseError {
            status: 417,
            reason: "unsupported expectation",
        }
    }

    /// 431 Request Header Fields Too Large.
    pub const fn fields_too_large(reason: &'static str) -> Self {
        ParseError {
            status: 431,
            reason,
        }
    }

    /// 505 HTTP Version Not Supported.
    pub const fn version() -> Self {
        ParseError {
            status: 505,
            reason: "HTTP major version not supported",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// The name of a header recorded by [`parse_head`] in `buf`. Empty if the range is stale.
pub fn header_name<'a>(buf: &'a [u8], h: &HeaderIdx) -> &'a [u8] {
    buf.get(h.name.clone()).unwrap_or_default()
}

/// The value of a header recorded by [`parse_head`] in `buf`. Empty if the range is stale.
pub fn header_value<'a>(buf: &'a [u8], h: &HeaderIdx) -> &'a [u8] {
    buf.get(h.value.clone()).unwrap_or_default()
}

/// The value of a hex digit, either case.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The fuzzing entry point (`fuzz/fuzz_targets/http_head.rs`, and a proptest): feeds `data`
/// through [`parse_head`], [`normalize_path`] and [`ChunkedDecoder`]. It panics only when an
/// invariant of theirs breaks: a range outside the buffer, or a chunked result that depends on
/// how the input was split.
#[doc(hidden)]
pub fn fuzz_head(data: &[u8]) {
    let limits = Limits {
        max_line: 512,
        max_head: 2048,
        max_headers: 16,
    };
    let mut headers = Vec::new();
    let mut path = String::new();
    if let Ok(Some(head)) = parse_head(data, &limits, &mut headers) {
        assert!(head.len <= data.len(), "head longer than input");
        for h in &headers {
            assert!(h.name.end <= head.len && h.value.end <= head.len);
        }
        let target = &data[head.target.clone()];
        if let Ok(Some(q)) = normalize_path(target, &mut path) {
            assert!(q.end <= target.len(), "query outside the target");
        }
        if head.framing == Framing::Chunked {
            fuzz_chunked(&data[head.len..]);
        }
    }
    let _ = normalize_path(data, &mut path);
    fuzz_chunked(data);
}

/// Decodes `data` whole and in two halves and checks both agree.
fn fuzz_chunked(data: &[u8]) {
    let mut whole = Vec::new();
    let a = ChunkedDecoder::new(1 << 20).decode(data, &mut whole);
    let mut split = Vec::new();
    let mut dec = ChunkedDecoder::new(1 << 20);
    let mid = data.len() / 2;
    let b = dec.decode(&data[..mid], &mut split).and_then(|(n, done)| {
        if done {
            return Ok((n, done));
        }
        let (m, done) = dec.decode(&data[mid..], &mut split)?;
        Ok((n + m, done))
    });
    assert_eq!(a, b, "chunked result depends on the split");
    if a.is_ok() {
        assert_eq!(whole, split, "chunked data depends on the split");
    }
}

#[cfg(test)]
mod tests;
