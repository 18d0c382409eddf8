//! Responses: status, header fields, body, and the serialisation of the head.

use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::rc::Rc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::http::stream::Stream;

/// A header value that is static, shared by every answer of a cycle (`Rc<str>`, no allocation
/// per answer), or made for one answer.
#[derive(Debug, Clone)]
pub enum Text {
    Static(&'static str),
    Shared(Rc<str>),
    Owned(String),
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Shared(s) => s,
            Text::Owned(s) => s,
        }
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text::Static(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::Owned(s)
    }
}

impl From<Rc<str>> for Text {
    fn from(s: Rc<str>) -> Text {
        Text::Shared(s)
    }
}

/// A header field of a response. Names are written as given.
pub type Field = (Cow<'static, str>, Cow<'static, str>);

/// What follows the head.
#[derive(Default)]
pub enum Body {
    #[default]
    Empty,
    /// In memory, shared without copying.
    Bytes(Bytes),
    /// A region of an open file, sent with sendfile(2).
    File {
        file: Rc<File>,
        offset: u64,
        len: u64,
    },
    /// Fed over time by its stream ([`crate::http::stream`]); never of a known length.
    Stream(Box<dyn Stream>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Bytes(b) => f.debug_tuple("Bytes").field(&b.len()).finish(),
            Body::File { offset, len, .. } => f
                .debug_struct("File")
                .field("offset", offset)
                .field("len", len)
                .finish(),
            Body::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl Body {
    /// Its length when known (a stream's is not: 0).
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty | Body::Stream(_) => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Default)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<Text>,
    /// Set by the content handler for a whole body; a filter that changes the body's length
    /// (gzip) clears it, and then the chunked filter frames the body.
    pub content_length: Option<u64>,
    pub etag: Option<Text>,
    pub last_modified: Option<SystemTime>,
    pub headers: Vec<Field>,
    pub body: Body,
    /// Close the connection after this response.
    pub close: bool,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            ..Response::default()
        }
    }

    /// A response with an in-memory body of a type.
    pub fn with_body(status: u16, content_type: impl Into<Text>, body: Bytes) -> Response {
        Response {
            status,
            content_type: Some(content_type.into()),
            content_length: Some(body.len() as u64),
            body: Body::Bytes(body),
            ..Response::default()
        }
    }

    /// The JSON error shape of the API: `{"error": {"code", "message"}}`.
    pub fn error_json(status: u16, code: &str, message: &str) -> Response {
        let body = format!(
            "{{\"error\":{{\"code\":{},\"message\":{}}}}}\n",
            json_string(code),
            json_string(message)
        );
        Response::with_body(status, "application/json", Bytes::from(body))
    }

    /// nginx-style HTML error page for `status`.
    pub fn error_page(status: u16) -> Response {
        let reason = reason(status);
        let body = format!(
            "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>bizzy</center>\r\n</body>\r\n</html>\r\n"
        );
        Response::with_body(status, "text/html", Bytes::from(body))
    }

    pub fn header(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) {
        self.headers.push((name.into(), value.into()));
    }

    /// The first value of a header set by a handler, by case-insensitive name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    /// Whether a response with this status may carry a body (RFC 9110 6.4.1).
    pub fn has_body_status(&self) -> bool {
        !(self.status < 200 || self.status == 204 || self.status == 304)
    }
}

/// A JSON string literal with the escapes RFC 8259 requires.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The reason phrase of a status.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// What the writer needs besides the response to write a head.
pub struct HeadCtx<'a> {
    pub server: &'a str,
    pub date: &'a [u8],
    pub keep_alive: bool,
    /// The client speaks HTTP/1.1 (else 1.0: no chunked framing).
    pub http11: bool,
    pub chunked: bool,
}

/// Serialises the status line and header fields into `out`.
pub fn write_head(r: &Response, cx: &HeadCtx<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(num.format(r.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(r.status).as_bytes());
    out.extend_from_slice(b"\r\nServer: ");
    out.extend_from_slice(cx.server.as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(cx.date);
    if let Some(ct) = &r.content_type {
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(ct.as_bytes());
    }
    if cx.chunked {
        out.extend_from_slice(b"\r\nTransfer-Encoding: chunked");
    } else if let (Some(n), true) = (r.content_length, r.has_body_status()) {
        out.extend_from_slice(b"\r\nContent-Length: ");
        out.extend_from_slice(num.format(n).as_bytes());
    }
    if let Some(t) = r.last_modified {
        out.extend_from_slice(b"\r\nLast-Modified: ");
        let _ = write!(out, "{}", httpdate::fmt_http_date(t));
    }
    if let Some(e) = &r.etag {
        out.extend_from_slice(b"\r\nETag: ");
        out.extend_from_slice(e.as_bytes());
    }
    for (n, v) in &r.headers {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
    }
    if !cx.keep_alive {
        out.extend_from_slice(b"\r\nConnection: close");
    } else if !cx.http11 {
        out.extend_from_slice(b"\r\nConnection: keep-alive");
    }
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_has_length_and_close() {
        let r = Response::with_body(200, "text/plain", Bytes::from_static(b"ok\n"));
        let mut out = Vec::new();
        let cx = HeadCtx {
            server: "bizzy",
            date: b"Sun, 22 Nov 2026 18:30:05 GMT",
            keep_alive: false,
            http11: true,
            chunked: false,
        };
        write_head(&r, &cx, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with(
            "HTTP/1.1 200 OK\r\nServer: bizzy\r\nDate: Sun, 22 Nov 2026 18:30:05 GMT\r\n"
        ));
        assert!(s.contains("\r\nContent-Length: 3\r\n"));
        assert!(s.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn not_modified_has_no_length() {
        let mut r = Response::new(304);
        r.content_length = Some(10);
        let mut out = Vec::new();
        let cx = HeadCtx {
            server: "bizzy",
            date: b"x",
            keep_alive: true,
            http11: true,
            chunked: false,
        };
        write_head(&r, &cx, &mut out);
        assert!(!String::from_utf8(out).unwrap().contains("Content-Length"));
    }

    #[test]
    fn json_escapes_controls() {
        assert_eq!(json_string("a\"b\\\n\u{1}"), "\"a\\\"b\\\\\\n\\u0001\"");
    }
}
