//! The meaning of the header fields the server acts on, read in one pass over the fields as
//! [`super::head`] records them: framing (Content-Length, Transfer-Encoding), Host, Connection,
//! Expect, Accept-Encoding and the ranges of the fields handlers look at.
//!
//! Framing is where request smuggling lives, so anything two parsers could read differently is
//! refused with 400 (RFC 9112 6.3, 11.2; nginx's choices where the RFC leaves room): the list is
//! in the documentation of [`super::parse_head`].

use std::ops::Range;

use super::{Framing, Head, ParseError};

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

/// What the fields said so far, beyond the ranges that go straight into the [`Head`].
#[derive(Debug, Default)]
pub(super) struct Fields {
    content_length: Option<u64>,
    transfer_encoding: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    expect_other: bool,
    gzip: Option<bool>,
    any_coding: Option<bool>,
}

impl Fields {
    /// Takes one field; `range` is where `value` sits in the caller's buffer.
    #[inline]
    pub fn add(
        &mut self,
        head: &mut Head,
        name: &[u8],
        value: &[u8],
        range: &Range<usize>,
    ) -> Result<(), ParseError> {
        let first = |slot: &mut Option<Range<usize>>| {
            if slot.is_none() {
                *slot = Some(range.clone());
            }
        };
        match name.len() {
            4 if eq_fold(name, b"host") => return host(head, value, range),
            5 if eq_fold(name, b"range") => first(&mut head.range),
            6 if eq_fold(name, b"expect") => self.expect(value),
            7 if eq_fold(name, b"referer") => first(&mut head.referer),
            10 if eq_fold(name, b"connection") => self.connection(value),
            10 if eq_fold(name, b"user-agent") => first(&mut head.user_agent),
            13 if eq_fold(name, b"if-none-match") => first(&mut head.if_none_match),
            14 if eq_fold(name, b"content-length") => return self.content_length(value),
            15 if eq_fold(name, b"accept-encoding") => self.accept_encoding(value),
            17 if eq_fold(name, b"transfer-encoding") => return self.transfer_encoding(value),
            17 if eq_fold(name, b"if-modified-since") => first(&mut head.if_modified_since),
            _ => {}
        }
        Ok(())
    }

    // The handlers below are `inline(never)`: a request reaches few of them, and keeping them
    // out of the per-field loop keeps that loop small.

    #[inline(never)]
    fn content_length(&mut self, value: &[u8]) -> Result<(), ParseError> {
        if self.content_length.is_some() {
            return Err(ParseError::bad("repeated Content-Length"));
        }
        let n = parse_decimal(value).ok_or(ParseError::bad("invalid Content-Length"))?;
        self.content_length = Some(n);
        Ok(())
    }

    #[inline(never)]
    fn transfer_encoding(&mut self, value: &[u8]) -> Result<(), ParseError> {
        if self.transfer_encoding {
            return Err(ParseError::bad("repeated Transfer-Encoding"));
        }
        if !eq_fold(value, b"chunked") {
            return Err(ParseError::bad("unsupported Transfer-Encoding"));
        }
        self.transfer_encoding = true;
        Ok(())
    }

    #[inline(never)]
    fn connection(&mut self, value: &[u8]) {
        // The whole value is one of the two tokens in nearly every request.
        if eq_fold(value, b"keep-alive") {
            self.keep_alive = true;
            return;
        }
        for token in list(value) {
            if eq_fold(token, b"close") {
                self.close = true;
            } else if eq_fold(token, b"keep-alive") {
                self.keep_alive = true;
            }
        }
    }

    #[inline(never)]
    fn expect(&mut self, value: &[u8]) {
        for token in list(value) {
            if eq_fold(token, b"100-continue") {
                self.expect_continue = true;
            } else {
                self.expect_other = true;
            }
        }
    }

    /// Records the weight of `gzip` (or `x-gzip`, RFC 9110 8.4.1.3) and of `*`; members with a
    /// malformed qvalue are skipped. Other members are skipped on their first byte, so the usual
    /// `gzip, deflate, br` costs about one pass.
    #[inline(never)]
    fn accept_encoding(&mut self, value: &[u8]) {
        for member in value.split(|&b| b == b',') {
            let member = trim(member);
            if !matches!(member.first(), Some(b'g' | b'G' | b'x' | b'X' | b'*')) {
                continue;
            }
            let (coding, params) = match member.iter().position(|&b| b == b';') {
                Some(semi) => (trim(&member[..semi]), &member[semi + 1..]),
                None => (member, &b""[..]),
            };
            let slot = if eq_fold(coding, b"gzip") || eq_fold(coding, b"x-gzip") {
                &mut self.gzip
            } else if coding == b"*" {
                &mut self.any_coding
            } else {
                continue;
            };
            if let Some(allowed) = weight(params) {
                *slot = Some(allowed);
            }
        }
    }

    /// Checks what needs every field, and completes `head` (whose `minor` is set).
    #[inline]
    pub fn finish(self, head: &mut Head) -> Result<(), ParseError> {
        head.framing = match (self.transfer_encoding, self.content_length) {
            (true, Some(_)) => {
                return Err(ParseError::bad("both Content-Length and Transfer-Encoding"))
            }
            (true, None) if head.minor == 0 => {
                return Err(ParseError::bad("Transfer-Encoding in HTTP/1.0"))
            }
            (true, None) => Framing::Chunked,
            (false, Some(n)) => Framing::Length(n),
            (false, None) => Framing::None,
        };
        if head.minor == 1 && head.host.is_none() {
            return Err(ParseError::bad("missing Host"));
        }
        if self.expect_other {
            return Err(ParseError::expectation());
        }
        head.keep_alive = !self.close && (head.minor == 1 || self.keep_alive);
        head.expect_continue = self.expect_continue && head.minor == 1;
        head.accept_gzip = self.gzip.or(self.any_coding).unwrap_or(false);
        Ok(())
    }
}

/// Whether `s`, a header name or value as httparse accepted it, equals `lower` (lower-case
/// letters, digits and `-`) ignoring ASCII case. Setting bit 0x20 is an exact case fold for such
/// input: a lower-case letter comes only from itself or its capital, and a digit or `-` only from
/// itself or a control byte (0x10-0x19, CR), which httparse refuses; HTAB, the one control byte
/// it lets into values, becomes `)`. The length is a constant and there is no early exit, so
/// this compiles to a few wide compares.
#[inline]
fn eq_fold<const N: usize>(s: &[u8], lower: &[u8; N]) -> bool {
    let Ok(s) = <&[u8; N]>::try_from(s) else {
        return false;
    };
    let mut diff = 0;
    for i in 0..N {
        diff |= (s[i] | 0x20) ^ lower[i];
    }
    diff == 0
}

#[inline(never)]
fn host(head: &mut Head, value: &[u8], range: &Range<usize>) -> Result<(), ParseError> {
    if head.host.is_some() {
        return Err(ParseError::bad("repeated Host"));
    }
    if !value.iter().fold(true, |ok, &b| ok & is_host_byte(b)) {
        return Err(ParseError::bad("invalid Host"));
    }
    head.host = Some(range.clone());
    Ok(())
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

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether the parameters of a member (after its first `;`) leave it a non-zero weight
/// (RFC 9110 12.4.2): `None` if the qvalue is malformed.
fn weight(params: &[u8]) -> Option<bool> {
    for param in params.split(|&b| b == b';').map(trim) {
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
