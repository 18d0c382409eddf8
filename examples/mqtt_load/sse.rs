//! The client side of `GET /v1/hives/{id}/live`, server-sent events: the request, and a parser
//! fed with whatever one read brought that hands back the stream's items.
//!
//! It checks the response head (200, `text/event-stream`), undoes the chunked transfer coding
//! (without it the body runs to the end of the connection), and splits the body into the
//! blocks of the event stream: `retry: <ms>`, heartbeats (comment lines only) and `occupancy`
//! events, whose data is the JSON of `GET /v1/hives/{id}/occupancy` on one line. Bytes in,
//! items out, no socket: the tests feed it fixtures cut at every byte. Anything else the server
//! sends is an error that names it, so a broken stream ends with a reason, never a panic.

use std::fmt;

use serde::Deserialize;

/// Most bytes a response head, a chunk-size line or an event block may take before its end is
/// seen: a server that sends more is broken, and the generator must not grow without bound.
const MAX_PENDING: usize = 64 * 1024;

/// The request of one stream, HTTP/1.1 so that the answer may be chunked.
pub fn request(hive_id: i64) -> Vec<u8> {
    format!(
        "GET /v1/hives/{hive_id}/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Accept: text/event-stream\r\n\r\n"
    )
    .into_bytes()
}

/// One block of the event stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `retry: <ms>`, the reconnection delay the server asks for.
    Retry(u64),
    /// A block of comment lines only: the server's sign of life on a quiet stream.
    Heartbeat,
    /// An `occupancy` event.
    Occupancy(Occupancy),
}

/// What the generator reads from an event's data; the other fields are not checked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Occupancy {
    pub hive_id: i64,
    pub occupancy: i64,
}

/// Why a stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// The response head does not parse.
    Head(String),
    /// Not `200`.
    Status(u16),
    /// Not `text/event-stream` (the header's value, or `none`).
    ContentType(String),
    /// Broken chunked framing.
    Chunk(&'static str),
    /// A head, chunk-size line or block longer than `MAX_PENDING` without its end.
    TooLong(&'static str),
    /// The server ended the body (the last chunk, or the connection closed).
    Ended,
    /// A block that is neither `retry`, a heartbeat nor an occupancy event: why.
    Block(String),
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::Head(e) => write!(f, "the response head does not parse: {e}"),
            SseError::Status(code) => write!(f, "the server answered {code}, not 200"),
            SseError::ContentType(v) => write!(f, "Content-Type {v}, not text/event-stream"),
            SseError::Chunk(what) => write!(f, "bad chunked framing: {what}"),
            SseError::TooLong(what) => write!(f, "{what} longer than {MAX_PENDING} bytes"),
            SseError::Ended => write!(f, "the server ended the stream"),
            SseError::Block(why) => write!(f, "bad event stream block: {why}"),
        }
    }
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(usize),
    /// After a chunk's data, before its CRLF.
    DataEnd,
}

/// One stream's parser.
#[derive(Debug)]
pub struct Parser {
    /// `None` until the head is read; then whether the body is chunked.
    chunked: Option<bool>,
    chunk: Chunk,
    /// Received bytes not decoded yet (the head, chunk framing).
    raw: Vec<u8>,
    /// Decoded body not yet split into blocks.
    body: Vec<u8>,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser {
            chunked: None,
            chunk: Chunk::Size,
            raw: Vec::new(),
            body: Vec::new(),
        }
    }
}

impl Parser {
    /// Takes the bytes of one read; appends to `out` every block they completed.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Item>) -> Result<(), SseError> {
        self.raw.extend_from_slice(bytes);
        let chunked = match self.chunked {
            Some(c) => c,
            None => match self.head()? {
                Some(c) => c,
                None => return Ok(()),
            },
        };
        if chunked {
            self.dechunk()?;
        } else {
            self.body.append(&mut self.raw);
        }
        self.blocks(out)
    }

    /// Reads the response head once it is whole: whether the body is chunked.
    fn head(&mut self) -> Result<Option<bool>, SseError> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let used = match resp.parse(&self.raw) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if self.raw.len() > MAX_PENDING => {
                return Err(SseError::TooLong("the response head"))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(SseError::Head(e.to_string())),
        };
        let code = resp.code.unwrap_or(0);
        if code != 200 {
            return Err(SseError::Status(code));
        }
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
        };
        match header("content-type") {
            Some(t) if t.starts_with("text/event-stream") => {}
            other => return Err(SseError::ContentType(other.unwrap_or("none".into()))),
        }
        let chunked = header("transfer-encoding").is_some_and(|t| t.contains("chunked"));
        self.raw.drain(..used);
        self.chunked = Some(chunked);
        Ok(Some(chunked))
    }

    /// Moves the data of every whole chunk part from `raw` to `body`.
    fn dechunk(&mut self) -> Result<(), SseError> {
        let mut at = 0;
        loop {
            let rest = &self.raw[at..];
            match self.chunk {
                Chunk::Size => {
                    let Some(end) = find(rest, b"\r\n") else {
                        if rest.len() > MAX_PENDING {
                            return Err(SseError::TooLong("a chunk-size line"));
                        }
                        break;
                    };
                    let line = &rest[..end];
                    let digits = line.split(|&b| b == b';').next().unwrap_or(line);
                    let size = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| usize::from_str_radix(d.trim(), 16).ok())
                        .ok_or(SseError::Chunk("a chunk size that is not a hex number"))?;
                    if size == 0 {
                        return Err(SseError::Ended);
                    }
                    at += end + 2;
                    self.chunk = Chunk::Data(size);
                }
                Chunk::Data(left) => {
                    let take = left.min(rest.len());
                    if take == 0 {
                        break;
                    }
                    self.body.extend_from_slice(&rest[..take]);
                    at += take;
                    self.chunk = match left - take {
                        0 => Chunk::DataEnd,
                        n => Chunk::Data(n),
                    };
                }
                Chunk::DataEnd => {
                    if rest.len() < 2 {
                        break;
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(SseError::Chunk("chunk data not followed by CRLF"));
                    }
                    at += 2;
                    self.chunk = Chunk::Size;
                }
            }
        }
        self.raw.drain(..at);
        Ok(())
    }

    /// Splits every whole block (ended by a blank line) off `body`.
    fn blocks(&mut self, out: &mut Vec<Item>) -> Result<(), SseError> {
        let mut at = 0;
        while let Some(end) = find(&self.body[at..], b"\n\n") {
            out.push(block(&self.body[at..at + end])?);
            at += end + 2;
        }
        self.body.drain(..at);
        if self.body.len() > MAX_PENDING {
            return Err(SseError::TooLong("an event block"));
        }
        Ok(())
    }
}

/// One block, its lines without the blank line that ended it.
fn block(bytes: &[u8]) -> Result<Item, SseError> {
    let text = std::str::from_utf8(bytes).map_err(|_| SseError::Block("not UTF-8".into()))?;
    let (mut retry, mut event, mut id, mut data) = (None, None, None, None::<String>);
    let mut comments = false;
    for line in text.split('\n') {
        if line.starts_with(':') {
            comments = true;
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "retry" => {
                let ms = value.parse::<u64>();
                retry = Some(ms.map_err(|_| SseError::Block(format!("retry: {value:?}")))?);
            }
            "event" => event = Some(value),
            "id" => id = Some(value),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            other => return Err(SseError::Block(format!("unknown field {other:?}"))),
        }
    }
    match (retry, event, id, data) {
        (Some(ms), None, None, None) => Ok(Item::Retry(ms)),
        (None, None, None, None) if comments => Ok(Item::Heartbeat),
        (None, Some("occupancy"), Some(_), Some(data)) => serde_json::from_str(&data)
            .map(Item::Occupancy)
            .map_err(|e| SseError::Block(format!("data is not the occupancy JSON: {e}"))),
        (None, Some(other), _, _) if other != "occupancy" => {
            Err(SseError::Block(format!("event {other:?}, not occupancy")))
        }
        _ => Err(SseError::Block(format!("{text:?}"))),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                        Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
    const EVENT: &str = "id: 7-42\nevent: occupancy\ndata: {\"hive_id\":7,\"occupancy\":42,\
                         \"capacity\":120,\"percent\":35.0,\"updated_at\":\"2026-12-03T12:00:00Z\",\
                         \"stale\":false,\"degraded\":false}\n\n";

    fn chunk(s: &str) -> String {
        format!("{:x}\r\n{s}\r\n", s.len())
    }

    fn stream() -> String {
        let second = EVENT.replace("\"occupancy\":42", "\"occupancy\":43");
        let body = [
            chunk("retry: 3000\n\n"),
            chunk(EVENT),
            chunk(": \n\n"),
            // One event cut over two chunks, the second with a chunk extension.
            chunk(&second[..20]),
            format!("{:x};x=1\r\n{}\r\n", second.len() - 20, &second[20..]),
        ];
        format!("{HEAD}{}", body.concat())
    }

    fn expected() -> Vec<Item> {
        let occ = |n| {
            Item::Occupancy(Occupancy {
                hive_id: 7,
                occupancy: n,
            })
        };
        vec![Item::Retry(3000), occ(42), Item::Heartbeat, occ(43)]
    }

    #[test]
    fn a_stream_parses_whole() {
        let mut p = Parser::default();
        let mut out = Vec::new();
        p.feed(stream().as_bytes(), &mut out).expect("valid");
        assert_eq!(out, expected());
    }

    #[test]
    fn a_stream_parses_cut_at_every_byte() {
        let bytes = stream().into_bytes();
        for cut in 0..bytes.len() {
            let mut p = Parser::default();
            let mut out = Vec::new();
            p.feed(&bytes[..cut], &mut out).expect("valid prefix");
            p.feed(&bytes[cut..], &mut out).expect("valid rest");
            assert_eq!(out, expected(), "cut at {cut}");
        }
        let mut p = Parser::default();
        let mut out = Vec::new();
        for b in &bytes {
            p.feed(std::slice::from_ref(b), &mut out)
                .expect("valid byte");
        }
        assert_eq!(out, expected());
    }

    #[test]
    fn a_body_without_chunks_runs_to_the_end() {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\r\n";
        let mut p = Parser::default();
        let mut out = Vec::new();
        p.feed(format!("{head}retry: 10\n\n{EVENT}").as_bytes(), &mut out)
            .expect("valid");
        assert_eq!(out.len(), 2);
    }

    fn error_of(bytes: &str) -> SseError {
        let mut out = Vec::new();
        Parser::default()
            .feed(bytes.as_bytes(), &mut out)
            .expect_err("invalid")
    }

    #[test]
    fn what_is_not_a_stream_is_named() {
        assert_eq!(
            error_of("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            SseError::Status(404)
        );
        assert_eq!(
            error_of("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}"),
            SseError::ContentType("application/json".into())
        );
        assert_eq!(
            error_of("HTTP/1.1 200 OK\r\n\r\n"),
            SseError::ContentType("none".into())
        );
        assert!(matches!(error_of("HTTP/1.1 2x\r\n\r\n"), SseError::Head(_)));
        assert_eq!(
            error_of(&format!("{HEAD}zz\r\n")),
            SseError::Chunk("a chunk size that is not a hex number")
        );
        assert_eq!(
            error_of(&format!("{HEAD}2\r\nabXY")),
            SseError::Chunk("chunk data not followed by CRLF")
        );
        assert_eq!(error_of(&format!("{HEAD}0\r\n\r\n")), SseError::Ended);
    }

    #[test]
    fn bad_blocks_are_named() {
        let bad = |block: &str| error_of(&format!("{HEAD}{}", chunk(block)));
        assert!(matches!(bad("retry: soon\n\n"), SseError::Block(_)));
        assert!(matches!(bad("colour: red\n\n"), SseError::Block(_)));
        assert!(matches!(
            bad("id: 1\nevent: closed\ndata: {}\n\n"),
            SseError::Block(m) if m.contains("closed")
        ));
        assert!(matches!(
            bad("id: 1\nevent: occupancy\ndata: {\"hive_id\":1}\n\n"),
            SseError::Block(m) if m.contains("occupancy JSON")
        ));
        assert!(matches!(
            bad("event: occupancy\ndata: {}\n\n"),
            SseError::Block(_)
        ));
        assert!(matches!(bad("\n\n"), SseError::Block(_)));
    }

    #[test]
    fn an_endless_block_is_refused() {
        let mut p = Parser::default();
        let mut out = Vec::new();
        p.feed(HEAD.as_bytes(), &mut out).expect("head");
        let big = chunk(&": ".repeat(MAX_PENDING));
        assert_eq!(
            p.feed(big.as_bytes(), &mut out),
            Err(SseError::TooLong("an event block"))
        );
    }
}
