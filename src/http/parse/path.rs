//! The request-target: its path percent-decoded and cleaned of `.`, `..` and empty segments,
//! and its raw query. Called once per request by the request code before any routing, so
//! handlers and file lookups only ever see a path that cannot climb out of `/`.

use std::ops::Range;

use super::fields::is_host_byte;
use super::{hex_value, ParseError};

/// Splits a raw request-target into path and query, writes the clean path into `path_out`
/// (cleared first, its capacity reused) and returns the raw query range within `target`
/// (without the `?`; `None` when there is no `?`).
///
/// Accepted forms (RFC 9112 3.2): origin-form `/path?query`; absolute-form
/// `http://host/path?query` (or `https`, any case), whose path is taken (`/` when empty); and
/// the asterisk-form `*`, given back as `*` with no query ([`super::parse_head`] refuses it for
/// methods other than OPTIONS). Authority-form (CONNECT) gives 400.
///
/// The path is decoded first, as nginx does: `%2F` becomes a separator and `%2e%2e` a `..`.
/// Then empty segments are merged, `.` dropped and `..` removes the segment before it; a path
/// ending in `/`, `/.` or `/..` keeps a trailing `/`. Backslash is an ordinary byte.
///
/// 400 when: the form is none of the above; a `#` appears; `%` is not followed by two hex
/// digits; the decoded path holds a control byte (`%00`, but also `%0A` and the like, which
/// could otherwise split a `Location` or log line) or is not UTF-8; or `..` climbs above `/`.
pub fn normalize_path(
    target: &[u8],
    path_out: &mut String,
) -> Result<Option<Range<usize>>, ParseError> {
    path_out.clear();
    if target == b"*" {
        path_out.push('*');
        return Ok(None);
    }
    if target.contains(&b'#') {
        return Err(ParseError::bad("fragment in request-target"));
    }
    let path_start = path_start(target)?;
    let (path_end, query) = match target[path_start..].iter().position(|&b| b == b'?') {
        Some(q) => (path_start + q, Some(path_start + q + 1..target.len())),
        None => (target.len(), None),
    };
    let mut bytes = std::mem::take(path_out).into_bytes();
    let cleaned =
        decode(&target[path_start..path_end], &mut bytes).and_then(|()| resolve_dots(&mut bytes));
    if let Err(e) = cleaned {
        restore(path_out, bytes);
        return Err(e);
    }
    match String::from_utf8(bytes) {
        Ok(path) => {
            *path_out = path;
            Ok(query)
        }
        Err(e) => {
            restore(path_out, e.into_bytes());
            Err(ParseError::bad("path is not UTF-8"))
        }
    }
}

/// Gives `path_out` its buffer back, empty.
fn restore(path_out: &mut String, mut bytes: Vec<u8>) {
    bytes.clear();
    *path_out = String::from_utf8(bytes).expect("an empty vector is UTF-8");
}

/// Where the path starts: 0 in origin-form, after the authority in absolute-form.
fn path_start(target: &[u8]) -> Result<usize, ParseError> {
    if target.first() == Some(&b'/') {
        return Ok(0);
    }
    let scheme = if starts_with_ignore_case(target, b"http://") {
        7
    } else if starts_with_ignore_case(target, b"https://") {
        8
    } else {
        return Err(ParseError::bad(
            "request-target not in origin or absolute form",
        ));
    };
    let rest = &target[scheme..];
    let authority = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    // RFC 9110 4.2.4: userinfo (`@`) in an http(s) URI is to be treated as an error.
    if authority == 0 || !rest[..authority].iter().all(|&b| is_host_byte(b)) {
        return Err(ParseError::bad("invalid authority in absolute-form target"));
    }
    Ok(scheme + authority)
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// Percent-decodes `raw` into `out`, refusing malformed escapes and control bytes. Runs
/// between escapes are copied whole.
fn decode(raw: &[u8], out: &mut Vec<u8>) -> Result<(), ParseError> {
    out.reserve(raw.len() + 1);
    let mut rest = raw;
    while let Some(pct) = rest.iter().position(|&b| b == b'%') {
        out.extend_from_slice(&rest[..pct]);
        let hi = rest.get(pct + 1).and_then(|&h| hex_value(h));
        let lo = rest.get(pct + 2).and_then(|&l| hex_value(l));
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(ParseError::bad("malformed percent-encoding in path"));
        };
        out.push(hi << 4 | lo);
        rest = &rest[pct + 3..];
    }
    out.extend_from_slice(rest);
    if out
        .iter()
        .fold(false, |bad, &b| bad | (b < 0x20) | (b == 0x7f))
    {
        return Err(ParseError::bad("control byte in path"));
    }
    Ok(())
}

/// Resolves dot segments and merges empty ones in place (RFC 3986 5.2.4, with `//` merged as
/// nginx does). `path` is empty or starts with `/`; the result is at least `/`. Writing never
/// overtakes reading, so the compaction happens within the same buffer.
fn resolve_dots(path: &mut Vec<u8>) -> Result<(), ParseError> {
    let len = path.len();
    let (mut read, mut write) = (0, 0);
    let mut trailing_slash = true;
    while read < len {
        let seg_start = read + 1;
        let seg_end = path[seg_start..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(len, |p| seg_start + p);
        match &path[seg_start..seg_end] {
            b"" | b"." => trailing_slash = true,
            b".." => {
                if write == 0 {
                    return Err(ParseError::bad("path climbs above the root"));
                }
                write = path[..write]
                    .iter()
                    .rposition(|&b| b == b'/')
                    .expect("every kept segment starts with '/'");
                trailing_slash = true;
            }
            _ => {
                if write != read {
                    path.copy_within(read..seg_end, write);
                }
                write += seg_end - read;
                trailing_slash = false;
            }
        }
        read = seg_end;
    }
    path.truncate(write);
    if trailing_slash {
        path.push(b'/');
    }
    Ok(())
}

#[cfg(test)]
mod tests;
