//! The meaning of the header fields the server acts on, read in one pass over the fields as
//! [`super::head`] records them: framing (Content-Length, Transfer-Encoding), Host, Connection,
//! Expect, Accept-Encoding and the ranges of the fields handlers look at.
//!
//! Framing is where request smuggling lives, so anything two parsers could read differently is
//! refused with 400 (RFC 9112 6.3, 11.2; nginx's choices where the RFC leaves room):
//! - Content-Length: not 1*DIGIT (empty, `+5`, `1 2`, a list `5, 5`), over `u64`, or repeated,
//!   even with equal values;
//! - Transfer-Encoding: anything but exactly `chunked` (case-insensitive, OWS around), so also a
//!   list (`gzip, chunked`, `chunked, chunked`), an empty value, a field repeated over two lines,
//!   and any Transfer-Encoding in an HTTP/1.0 request. RFC 9112 6.1 would allow 501 for an
//!   unknown coding; 400 and a close is chosen for all of them because the connection cannot be
//!   trusted past a body it cannot delimit;
//! - Content-Length and Transfer-Encoding together;
//! - Host missing in HTTP/1.1, repeated, or with bytes outside RFC 3986's `host [":" port]`
//!   alphabet (space, `/`, `@`, controls).
//!
//! An Expect other than `100-continue` gives 417 (RFC 9110 10.1.1), after the 400 checks.

use std::ops::Range;

use super::{Framing, Head, Method, ParseError};

/// Bytes allowed in a Host value: unreserved, sub-delims, `:` (port), `[` `]` (IP-literal) and
/// `%` (pct-encoded).
static HOST_CHARS: [bool; 256] = {
    let mut map = [false; 256];
    let allowed =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:[]%";
    let mut i = 0;
    while i < allowed.len() {
        map[allowed[i] as usize] = true;
        i += 1;
    }
    map
};

/// Whether `b` may appear in a Host value or an absolute-form authority.
pub(super) fn is_host_byte(b: u8) -> bool {
    HOST_CHARS[usize::from(b)]
}

/// What the fields said so far.
#[derive(Debug, Default)]
pub(super) struct Fields {
    minor: u8,
    content_length: Option<u64>,
    transfer_encoding: bool,
    host: Option<Range<usize>>,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    expect_other: bool,
    gzip: Option<bool>,
    any_coding: Option<bool>,
    if_none_match: Option<Range<usize>>,
    if_modified_since: Option<Range<usize>>,
    range: Option<Range<usize>>,
    user_agent: Option<Range<usize>>,
    referer: Option<Range<usize>>,
}

/// The request line, as [`super::head`] found it.
pub(super) struct Line {
    pub method: Method,
    pub method_range: Range<usize>,
    pub target: Range<usize>,
    pub minor: u8,
}

impl Fields {
    pub fn new(minor: u8) -> Self {
        Fields {
            minor,
            ..Fields::default()
        }
    }

    /// Takes one field; `range` is where `value` sits in the caller's buffer.
    pub fn add(
        &mut self,
        name: &[u8],
        value: &[u8],
        range: &Range<usize>,
    ) -> Result<(), ParseError> {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        match name.len() {
            4 if is(b"host") => return self.host(value, range),
            5 if is(b"range") => first(&mut self.range, range),
            6 if is(b"expect") => self.expect(value),
            7 if is(b"referer") => first(&mut self.referer, range),
            10 if is(b"connection") => self.connection(value),
            10 if is(b"user-agent") => first(&mut self.user_agent, range),
            13 if is(b"if-none-match") => first(&mut self.if_none_match, range),
            14 if is(b"content-length") => return self.content_length(value),
            15 if is(b"accept-encoding") => self.accept_encoding(value),
            17 if is(b"transfer-encoding") => return self.transfer_encoding(value),
            17 if is(b"if-modified-since") => first(&mut self.if_modified_since, range),
            _ => {}
        }
        Ok(())
    }

    fn host(&mut self, value: &[u8], range: &Range<usize>) -> Result<(), ParseError> {
        if self.host.is_some() {
            return Err(ParseError::bad("repeated Host"));
        }
        if !value.iter().all(|&b| is_host_byte(b)) {
            return Err(ParseError::bad("invalid Host"));
        }
        self.host = Some(range.clone());
        Ok(())
    }

    fn content_length(&mut self, value: &[u8]) -> Result<(), ParseError> {
        if self.content_length.is_some() {
            return Err(ParseError::bad("repeated Content-Length"));
        }
        let n = parse_decimal(value).ok_or(ParseError::bad("invalid Content-Length"))?;
        self.content_length = Some(n);
        Ok(())
    }

    fn transfer_encoding(&mut self, value: &[u8]) -> Result<(), ParseError> {
        if self.transfer_encoding {
            return Err(ParseError::bad("repeated Transfer-Encoding"));
        }
        if !value.eq_ignore_ascii_case(b"chunked") {
            return Err(ParseError::bad("unsupported Transfer-Encoding"));
        }
        self.transfer_encoding = true;
        Ok(())
    }

    fn connection(&mut self, value: &[u8]) {
        for token in list(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            }
        }
    }

    fn expect(&mut self, value: &[u8]) {
        for token in list(value) {
            if token.eq_ignore_ascii_case(b"100-continue") {
                self.expect_continue = true;
            } else {
                self.expect_other = true;
            }
        }
    }

    /// Records the weight of `gzip` (or `x-gzip`, RFC 9110 8.4.1.3) and of `*`; members with a
    /// malformed qvalue are skipped.
    fn accept_encoding(&mut self, value: &[u8]) {
        for member in list(value) {
            let mut parts = member.split(|&b| b == b';');
            let coding = trim(parts.next().unwrap_or_default());
            let Some(allowed) = weight(parts) else {
                continue;
            };
            if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                self.gzip = Some(allowed);
            } else if coding == b"*" {
                self.any_coding = Some(allowed);
            }
        }
    }

    /// Checks what needs every field, and builds the head.
    pub fn finish(self, line: Line, len: usize) -> Result<Head, ParseError> {
        let framing = match (self.transfer_encoding, self.content_length) {
            (true, Some(_)) => {
                return Err(ParseError::bad("both Content-Length and Transfer-Encoding"))
            }
            (true, None) if self.minor == 0 => {
                return Err(ParseError::bad("Transfer-Encoding in HTTP/1.0"))
            }
            (true, None) => Framing::Chunked,
            (false, Some(n)) => Framing::Length(n),
            (false, None) => Framing::None,
        };
        if self.minor == 1 && self.host.is_none() {
            return Err(ParseError::bad("missing Host"));
        }
        if self.expect_other {
            return Err(ParseError::expectation());
        }
        Ok(Head {
            method: line.method,
            method_range: line.method_range,
            target: line.target,
            minor: line.minor,
            len,
            framing,
            host: self.host,
            keep_alive: !self.close && (self.minor == 1 || self.keep_alive),
            expect_continue: self.expect_continue && self.minor == 1,
            if_none_match: self.if_none_match,
            if_modified_since: self.if_modified_since,
            range: self.range,
            accept_gzip: self.gzip.or(self.any_coding).unwrap_or(false),
            user_agent: self.user_agent,
            referer: self.referer,
        })
    }
}

/// Keeps the first occurrence of a field.
fn first(slot: &mut Option<Range<usize>>, range: &Range<usize>) {
    if slot.is_none() {
        *slot = Some(range.clone());
    }
}

/// `1*DIGIT` as a `u64`; `None` if empty, not all digits, or too large.
pub(super) fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// The non-empty members of a comma-separated list, OWS trimmed (RFC 9110 5.6.1).
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|m| !m.is_empty())
}

fn trim(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

/// Whether the parameters of a member leave it a non-zero weight (RFC 9110 12.4.2): `None` if
/// the qvalue is malformed.
fn weight<'a>(params: impl Iterator<Item = &'a [u8]>) -> Option<bool> {
    for param in params.map(trim) {
        let Some(q) = param
            .strip_prefix(b"q=")
            .or_else(|| param.strip_prefix(b"Q="))
        else {
            continue;
        };
        return match q {
            [b'0'] => Some(false),
            [b'0', b'.', rest @ ..] if rest.len() <= 3 && rest.iter().all(u8::is_ascii_digit) => {
                Some(rest.iter().any(|&d| d != b'0'))
            }
            [b'1'] => Some(true),
            [b'1', b'.', rest @ ..] if rest.len() <= 3 && rest.iter().all(|&d| d == b'0') => {
                Some(true)
            }
            _ => None,
        };
    }
    Some(true)
}

#[cfg(test)]
mod tests;
