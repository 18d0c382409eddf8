//! The request line and the header block: `httparse` tokenises, this file enforces the limits,
//! the line endings and the version rules, then hands the fields to [`super::fields`].
//!
//! Called by the connection on every read until a head is complete; it re-parses from the start
//! each time (as hyper does), never allocates on the common path and never panics on input.

use std::mem::MaybeUninit;
use std::ops::Range;

use httparse::{Header, Status};

use super::fields::Fields;
use super::{Head, HeaderIdx, Limits, Method, ParseError};

/// Header slots kept on the stack; a larger `max_headers` costs one allocation per parse.
const STACK_HEADERS: usize = 128;

/// Empty lines (CRLF) skipped before a request line (RFC 9112 2.2 allows "at least one"); old
/// clients send one or two after a POST body. More is refused, so the skipping is bounded.
const MAX_EMPTY_LINES: usize = 4;

/// Parses a request head at the start of `buf`.
///
/// `Ok(None)` means the head is incomplete and within the limits: read more and call again with
/// the grown buffer. `headers` is cleared, then receives every field in order (its capacity is
/// reused across requests); on `Ok(None)` or an error its content is unspecified.
///
/// Refused with 400 (and so with a close), beyond what `httparse` refuses (bytes that are not
/// tokens, control bytes other than HTAB in values, bare CR, whitespace before a colon,
/// obs-fold, more than one SP between the request-line parts):
/// - bare LF line endings: RFC 9112 2.2 lets a recipient accept them, but a proxy that does not
///   would see a different message, so they are refused;
/// - more than four empty lines before the request line, or a bare LF there;
/// - a version that is not `HTTP/` DIGIT `.` DIGIT (case-sensitive), e.g. `http/1.1`;
///   a well-formed version with a major other than 1 gives 505, and `HTTP/1.2`..`HTTP/1.9` are
///   read as 1.1 as RFC 9110 2.5 says;
/// - the asterisk-form target `*` with a method other than OPTIONS;
/// - a Content-Length that is not 1*DIGIT (empty, `+5`, `1 2`, a list `5, 5`), over `u64`, or
///   repeated, even with equal values (nginx does the same);
/// - a Transfer-Encoding other than exactly `chunked` (case-insensitive, OWS around): a list
///   (`gzip, chunked`, `chunked, chunked`), an empty value, one repeated over two lines, or any
///   Transfer-Encoding in HTTP/1.0. RFC 9112 6.1 would allow 501 for an unknown coding; 400 and
///   a close is chosen for all, as a connection cannot be trusted past a body it cannot delimit;
/// - Content-Length and Transfer-Encoding together;
/// - Host missing in HTTP/1.1, repeated, or with bytes outside RFC 3986's `host [":" port]`
///   alphabet (space, `/`, `@`, controls).
///
/// An Expect other than `100-continue` gives 417 (RFC 9110 10.1.1), after those checks.
///
/// A request line longer than `max_line` gives 414 and a head larger than `max_head` or with
/// more than `max_headers` fields gives 431, as soon as the bytes received prove it.
pub fn parse_head(
    buf: &[u8],
    limits: &Limits,
    headers: &mut Vec<HeaderIdx>,
) -> Result<Option<Head>, ParseError> {
    headers.clear();
    let Some(start) = skip_empty_lines(buf)? else {
        return Ok(None);
    };
    parse_at(buf, start, limits, headers, true)
}

/// Finds where the request line starts, past at most [`MAX_EMPTY_LINES`] CRLFs.
/// `Ok(None)`: only empty lines (or part of one) so far.
fn skip_empty_lines(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut at = 0;
    loop {
        match buf.get(at..at + 2) {
            Some(b"\r\n") if at < 2 * MAX_EMPTY_LINES => at += 2,
            Some(b"\r\n") => return Err(ParseError::bad("too many empty lines before request")),
            _ => break,
        }
    }
    match buf.get(at) {
        None => Ok(None),
        Some(b'\r') if at + 1 == buf.len() => Ok(None),
        Some(b'\r' | b'\n') => Err(ParseError::bad("bare CR or LF before request line")),
        Some(_) => Ok(Some(at)),
    }
}

/// Runs `httparse` on `buf[start..]` with header slots on the stack, or on the heap when the
/// configured count does not fit there.
fn parse_at(
    buf: &[u8],
    start: usize,
    limits: &Limits,
    headers: &mut Vec<HeaderIdx>,
    may_rewrite: bool,
) -> Result<Option<Head>, ParseError> {
    if limits.max_headers <= STACK_HEADERS {
        let mut slots = [const { MaybeUninit::<Header<'_>>::uninit() }; STACK_HEADERS];
        let slots = &mut slots[..limits.max_headers];
        parse_with(buf, start, limits, slots, headers, may_rewrite)
    } else {
        let mut slots = Vec::with_capacity(limits.max_headers);
        let slots = &mut slots.spare_capacity_mut()[..limits.max_headers];
        parse_with(buf, start, limits, slots, headers, may_rewrite)
    }
}

/// Tokenises with `httparse` and sorts its verdict. `may_rewrite` is false on the copy that
/// [`reparse_as_11`] makes, so a rewrite happens at most once.
#[inline]
fn parse_with<'b>(
    buf: &'b [u8],
    start: usize,
    limits: &Limits,
    slots: &mut [MaybeUninit<Header<'b>>],
    headers: &mut Vec<HeaderIdx>,
    may_rewrite: bool,
) -> Result<Option<Head>, ParseError> {
    let rest = &buf[start..];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(rest, slots) {
        Ok(Status::Complete(n)) => start + n,
        Ok(Status::Partial) => return check_partial(buf, start, limits).map(|()| None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ParseError::fields_too_large("too many header fields"))
        }
        Err(httparse::Error::Version) => {
            return version_error(buf, start, limits, headers, may_rewrite)
        }
        Err(e) => return Err(syntax_error(rest, limits, e)),
    };
    let mut head = request_line(buf, start, len, &req, limits)?;
    read_fields(buf, &mut head, req.headers, headers)?;
    Ok(Some(head))
}

/// Checks the request line of a complete head and the limits, and starts the [`Head`].
#[inline]
fn request_line(
    buf: &[u8],
    start: usize,
    len: usize,
    req: &httparse::Request<'_, '_>,
    limits: &Limits,
) -> Result<Head, ParseError> {
    let method = req
        .method
        .expect("httparse sets the method of a complete request");
    let target = req
        .path
        .expect("httparse sets the target of a complete request");
    let minor = req
        .version
        .expect("httparse sets the version of a complete request");
    let target = offset(buf, target.as_bytes());
    // method SP target SP HTTP/1.x: the line without its CRLF.
    if target.end + 9 - start > limits.max_line {
        return Err(ParseError::line_too_long());
    }
    if len > limits.max_head {
        return Err(ParseError::fields_too_large("request head too large"));
    }
    let method_range = offset(buf, method.as_bytes());
    let method = Method::from_bytes(method.as_bytes());
    if buf[target.clone()] == *b"*" && method != Method::Options {
        return Err(ParseError::bad("asterisk-form target without OPTIONS"));
    }
    if buf[len - 4..len] != *b"\r\n\r\n" {
        return Err(ParseError::bad("bare LF line ending"));
    }
    Ok(Head::new(method, method_range, target, minor, len))
}

/// Records every field in `headers` and reads the ones that matter into `head`.
#[inline]
fn read_fields(
    buf: &[u8],
    head: &mut Head,
    fields: &[Header<'_>],
    headers: &mut Vec<HeaderIdx>,
) -> Result<(), ParseError> {
    let mut seen = Fields::default();
    for h in fields {
        let idx = HeaderIdx {
            name: offset(buf, h.name.as_bytes()),
            value: offset(buf, h.value),
        };
        // httparse refuses bare CR and obs-fold, so the byte before a field line is LF and the
        // one before that is CR unless the previous line ended in a bare LF.
        if buf[idx.name.start - 2] != b'\r' {
            return Err(ParseError::bad("bare LF line ending"));
        }
        seen.add(head, h.name.as_bytes(), h.value, &idx.value)?;
        headers.push(idx);
    }
    seen.finish(head)
}

/// The range of `part`, a sub-slice of `buf`, within `buf`.
fn offset(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    debug_assert!(
        start + part.len() <= buf.len(),
        "httparse returned a foreign slice"
    );
    start..start + part.len()
}

/// An incomplete head: refuses it once the bytes so far prove a limit is exceeded.
fn check_partial(buf: &[u8], start: usize, limits: &Limits) -> Result<(), ParseError> {
    if line_too_long(&buf[start..], limits.max_line) {
        return Err(ParseError::line_too_long());
    }
    if buf.len() > limits.max_head {
        return Err(ParseError::fields_too_large("request head too large"));
    }
    Ok(())
}

/// Whether the request line at the start of `rest`, complete or not, is longer than `max_line`
/// bytes without its CRLF. Looks at no more than `max_line + 2` bytes.
fn line_too_long(rest: &[u8], max_line: usize) -> bool {
    let window = &rest[..rest.len().min(max_line.saturating_add(2))];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => lf - usize::from(lf > 0 && window[lf - 1] == b'\r') > max_line,
        // No LF yet: max_line + 1 bytes could still be the line plus its CR.
        None => window.len() > max_line.saturating_add(1),
    }
}

/// Maps an `httparse` syntax error to a status; a request line that is too long anyway is
/// reported as 414.
fn syntax_error(rest: &[u8], limits: &Limits, e: httparse::Error) -> ParseError {
    if line_too_long(rest, limits.max_line) {
        return ParseError::line_too_long();
    }
    ParseError::bad(match e {
        httparse::Error::Token => "malformed request line",
        httparse::Error::HeaderName => "invalid header name, space before colon or obs-fold",
        httparse::Error::HeaderValue => "invalid byte in header value",
        httparse::Error::NewLine => "malformed line ending",
        _ => "malformed request head",
    })
}

/// What the version part of a request line looks like.
#[derive(Debug, PartialEq, Eq)]
enum Version {
    /// So far a prefix of `HTTP/` DIGIT `.` DIGIT: wait for more.
    Prefix,
    /// A complete `HTTP/major.minor`.
    Number(u8, u8),
    Garbage,
}

/// Classifies the version part; `complete` when the line end has been seen after it.
fn classify_version(v: &[u8], complete: bool) -> Version {
    const SHAPE: &[u8; 8] = b"HTTP/0.0";
    let fits = v.len() <= 8
        && v.iter().zip(SHAPE).all(|(&b, &s)| match s {
            b'0' => b.is_ascii_digit(),
            _ => b == s,
        });
    match (fits, v.len(), complete) {
        (false, _, _) => Version::Garbage,
        (true, 8, true) => Version::Number(v[5] - b'0', v[7] - b'0'),
        (true, _, true) => Version::Garbage,
        (true, _, false) => Version::Prefix,
    }
}

/// `httparse` accepts only `HTTP/1.0` and `HTTP/1.1`; this sorts the rest into 505, 400, "wait",
/// or an `HTTP/1.x` to re-parse as 1.1.
fn version_error(
    buf: &[u8],
    start: usize,
    limits: &Limits,
    headers: &mut Vec<HeaderIdx>,
    may_rewrite: bool,
) -> Result<Option<Head>, ParseError> {
    let rest = &buf[start..];
    if line_too_long(rest, limits.max_line) {
        return Err(ParseError::line_too_long());
    }
    // httparse checked the method and the target, so two single spaces precede the version.
    let mut spaces = rest.iter().enumerate().filter(|(_, &b)| b == b' ');
    let Some((at, _)) = spaces.nth(1) else {
        return Err(ParseError::bad("malformed request line"));
    };
    let tail = &rest[at + 1..];
    let end = tail.iter().position(|&b| b == b'\r' || b == b'\n');
    match classify_version(&tail[..end.unwrap_or(tail.len())], end.is_some()) {
        Version::Prefix => check_partial(buf, start, limits).map(|()| None),
        Version::Number(1, _) if may_rewrite => {
            reparse_as_11(buf, start + at + 1 + 7, start, limits, headers)
        }
        Version::Number(1, _) | Version::Garbage => Err(ParseError::bad("malformed HTTP version")),
        Version::Number(..) => Err(ParseError::version()),
    }
}

/// Parses `HTTP/1.x` (x > 1) as `HTTP/1.1` (RFC 9110 2.5): in a copy whose minor digit at
/// `digit` reads 1. The copy has the same layout, so its ranges hold for `buf`. This path is rare
/// enough to allocate; the copy stops one byte past `max_head`, which keeps the 431 check.
fn reparse_as_11(
    buf: &[u8],
    digit: usize,
    start: usize,
    limits: &Limits,
    headers: &mut Vec<HeaderIdx>,
) -> Result<Option<Head>, ParseError> {
    let keep = buf.len().min(limits.max_head.saturating_add(1));
    if digit >= keep {
        return Err(ParseError::fields_too_large("request head too large"));
    }
    let mut copy = buf[..keep].to_vec();
    copy[digit] = b'1';
    parse_at(&copy, start, limits, headers, false)
}

#[cfg(test)]
mod tests;
