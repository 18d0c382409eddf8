//! Output filters: every response passes a header-filter chain and a body-filter chain before
//! the writer (nginx's filter modules). Filters run by `order()`, highest first; modules may add
//! their own. The built-in ones: not-modified (304), range (206/416), gzip, chunked.

use std::io::Write;
use std::rc::Rc;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::http::error::HttpError;
use crate::http::request::Request;
use crate::http::response::{Body, Response};

/// Per-response state the built-in filters keep between the head and the body.
#[derive(Default)]
pub struct FilterState {
    pub gzip: Option<GzEncoder<Vec<u8>>>,
    pub chunked: bool,
}

/// Filters run by `order()`, highest first (pingora's HttpModule).
pub trait Filter {
    fn order(&self) -> i16 {
        0
    }
    fn head(
        &self,
        _r: &Request,
        _h: &mut Response,
        _st: &mut FilterState,
    ) -> Result<(), HttpError> {
        Ok(())
    }
    /// `chain` holds the next pieces of the body; `last` says no more will follow.
    fn body(
        &self,
        _r: &Request,
        _chain: &mut Vec<Bytes>,
        _last: bool,
        _st: &mut FilterState,
    ) -> Result<(), HttpError> {
        Ok(())
    }
}

/// The chains of a cycle, built once from the registered filters.
#[derive(Clone, Default)]
pub struct Chains {
    filters: Vec<Rc<dyn Filter>>,
}

impl Chains {
    pub fn new(mut filters: Vec<Rc<dyn Filter>>) -> Chains {
        filters.sort_by_key(|f| std::cmp::Reverse(f.order()));
        Chains { filters }
    }

    pub fn head(
        &self,
        r: &Request,
        resp: &mut Response,
        st: &mut FilterState,
    ) -> Result<(), HttpError> {
        for f in &self.filters {
            f.head(r, resp, st)?;
        }
        Ok(())
    }

    pub fn body(
        &self,
        r: &Request,
        chain: &mut Vec<Bytes>,
        last: bool,
        st: &mut FilterState,
    ) -> Result<(), HttpError> {
        for f in &self.filters {
            f.body(r, chain, last, st)?;
        }
        Ok(())
    }
}

/// The built-in filters for a cycle.
pub fn builtin(gzip: GzipConf) -> Vec<Rc<dyn Filter>> {
    vec![
        Rc::new(NotModified),
        Rc::new(RangeFilter),
        Rc::new(Gzip(gzip)),
        Rc::new(Chunked),
    ]
}

/// If-None-Match / If-Modified-Since against the response's validators.
pub struct NotModified;

impl Filter for NotModified {
    fn order(&self) -> i16 {
        300
    }
    fn head(&self, r: &Request, h: &mut Response, _st: &mut FilterState) -> Result<(), HttpError> {
        if h.status != 200
            || !matches!(
                r.method(),
                crate::http::parse::Method::Get | crate::http::parse::Method::Head
            )
        {
            return Ok(());
        }
        let inm = r.head.if_none_match.clone().map(|x| &r.raw[x]);
        let fresh = match (inm, &h.etag) {
            (Some(list), Some(etag)) => etag_list_matches(list, etag),
            (Some(_), None) => false,
            (None, _) => match (r.head.if_modified_since.clone(), h.last_modified) {
                (Some(ims), Some(lm)) => not_modified_since(&r.raw[ims], lm),
                _ => false,
            },
        };
        if fresh {
            h.status = 304;
            h.body = Body::Empty;
            h.content_length = None;
            h.content_type = None;
        }
        Ok(())
    }
}

/// Weak comparison (RFC 9110 13.1.2): `W/` is ignored; `*` matches any current entity.
pub fn etag_list_matches(list: &[u8], etag: &str) -> bool {
    let want = etag.strip_prefix("W/").unwrap_or(etag).as_bytes();
    list.split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .any(|t| t == b"*" || t.strip_prefix(b"W/").unwrap_or(t) == want)
}

fn not_modified_since(ims: &[u8], lm: std::time::SystemTime) -> bool {
    let Some(ims) = std::str::from_utf8(ims)
        .ok()
        .and_then(|s| httpdate::parse_http_date(s).ok())
    else {
        return false;
    };
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    secs(lm) <= secs(ims)
}

/// Single byte ranges of responses that allow them (`Accept-Ranges: bytes`); several ranges are
/// answered with the whole representation, which RFC 9110 14.2 allows.
pub struct RangeFilter;

impl Filter for RangeFilter {
    fn order(&self) -> i16 {
        200
    }
    fn head(&self, r: &Request, h: &mut Response, _st: &mut FilterState) -> Result<(), HttpError> {
        let Some(range) = r.head.range.clone().map(|x| &r.raw[x]) else {
            return Ok(());
        };
        if h.status != 200
            || h.get("Accept-Ranges") != Some("bytes")
            || r.method() != crate::http::parse::Method::Get
        {
            return Ok(());
        }
        let Some(len) = h.content_length else {
            return Ok(());
        };
        if let Some(ir) = r.header("If-Range") {
            if !if_range_holds(ir, h) {
                return Ok(());
            }
        }
        match parse_range(range, len) {
            RangeSpec::Ignore => {}
            RangeSpec::Unsatisfiable => {
                h.status = 416;
                h.header("Content-Range", format!("bytes */{len}"));
                h.body = Body::Empty;
                h.content_length = Some(0);
            }
            RangeSpec::Bytes(start, end) => {
                h.status = 206;
                h.header("Content-Range", format!("bytes {start}-{end}/{len}"));
                let n = end - start + 1;
                h.content_length = Some(n);
                h.body = slice_body(std::mem::take(&mut h.body), start, n);
            }
        }
        Ok(())
    }
}

fn slice_body(body: Body, start: u64, n: u64) -> Body {
    match body {
        Body::Bytes(b) => Body::Bytes(b.slice(start as usize..(start + n) as usize)),
        Body::File { file, offset, .. } => Body::File {
            file,
            offset: offset + start,
            len: n,
        },
        other => other,
    }
}

fn if_range_holds(ir: &[u8], h: &Response) -> bool {
    if ir.starts_with(b"\"") {
        return h.etag.as_deref().is_some_and(|e| e.as_bytes() == ir);
    }
    let Some(lm) = h.last_modified else {
        return false;
    };
    std::str::from_utf8(ir)
        .ok()
        .and_then(|s| httpdate::parse_http_date(s).ok())
        .is_some_and(|t| httpdate::fmt_http_date(t) == httpdate::fmt_http_date(lm))
}

#[derive(Debug, PartialEq, Eq)]
pub enum RangeSpec {
    Ignore,
    Unsatisfiable,
    /// Inclusive first and last byte.
    Bytes(u64, u64),
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` against a length.
pub fn parse_range(v: &[u8], len: u64) -> RangeSpec {
    let Some(spec) = v.trim_ascii().strip_prefix(b"bytes=") else {
        return RangeSpec::Ignore;
    };
    let Ok(spec) = std::str::from_utf8(spec) else {
        return RangeSpec::Ignore;
    };
    if spec.contains(',') {
        return RangeSpec::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Ignore;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeSpec::Ignore,
        (true, false) => match num(b) {
            None => RangeSpec::Ignore,
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if len == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Bytes(len.saturating_sub(n), len - 1),
        },
        (false, _) => {
            let Some(start) = num(a) else {
                return RangeSpec::Ignore;
            };
            let end = if b.is_empty() { Some(u64::MAX) } else { num(b) };
            match end {
                None => RangeSpec::Ignore,
                Some(end) if end < start => RangeSpec::Ignore,
                Some(_) if start >= len => RangeSpec::Unsatisfiable,
                Some(end) => RangeSpec::Bytes(start, end.min(len - 1)),
            }
        }
    }
}

/// The gzip settings of a cycle.
#[derive(Clone, Debug)]
pub struct GzipConf {
    pub types: Vec<String>,
    pub min_length: u64,
    pub level: u32,
    pub default_on: bool,
}

/// Compresses in-memory bodies of listed types for clients that accept gzip.
pub struct Gzip(pub GzipConf);

impl Filter for Gzip {
    fn order(&self) -> i16 {
        100
    }
    fn head(&self, r: &Request, h: &mut Response, st: &mut FilterState) -> Result<(), HttpError> {
        let on = r
            .location
            .as_ref()
            .and_then(|l| l.conf.gzip)
            .unwrap_or(self.0.default_on);
        let eligible = on
            && r.head.accept_gzip
            && matches!(h.status, 200 | 403 | 404)
            && matches!(h.body, Body::Bytes(_))
            && h.body.len() >= self.0.min_length
            && h.get("Content-Encoding").is_none()
            && h.content_type
                .as_deref()
                .is_some_and(|ct| self.type_listed(ct));
        if !eligible {
            return Ok(());
        }
        h.header("Content-Encoding", "gzip");
        h.header("Vary", "Accept-Encoding");
        if let Some(e) = h.etag.take() {
            h.etag = Some(if e.starts_with("W/") {
                e
            } else {
                format!("W/{}", &*e).into()
            });
        }
        h.content_length = None;
        st.gzip = Some(GzEncoder::new(Vec::new(), Compression::new(self.0.level)));
        Ok(())
    }
    fn body(
        &self,
        _r: &Request,
        chain: &mut Vec<Bytes>,
        last: bool,
        st: &mut FilterState,
    ) -> Result<(), HttpError> {
        let Some(enc) = st.gzip.as_mut() else {
            return Ok(());
        };
        let internal = |e: std::io::Error| HttpError::Internal(format!("gzip: {e}"));
        for b in chain.drain(..) {
            enc.write_all(&b).map_err(internal)?;
        }
        let out = if last {
            st.gzip
                .take()
                .expect("checked above")
                .finish()
                .map_err(internal)?
        } else {
            std::mem::take(enc.get_mut())
        };
        if !out.is_empty() {
            chain.push(Bytes::from(out));
        }
        Ok(())
    }
}

impl Gzip {
    fn type_listed(&self, ct: &str) -> bool {
        let media = ct.split(';').next().unwrap_or("").trim();
        self.0.types.iter().any(|t| t.eq_ignore_ascii_case(media))
    }
}

/// Frames bodies of unknown length for HTTP/1.1 clients; HTTP/1.0 clients get a close instead.
pub struct Chunked;

impl Filter for Chunked {
    fn order(&self) -> i16 {
        -100
    }
    fn head(&self, r: &Request, h: &mut Response, st: &mut FilterState) -> Result<(), HttpError> {
        if h.content_length.is_some() || !h.has_body_status() {
            return Ok(());
        }
        if r.http11() {
            st.chunked = true;
        } else {
            h.close = true;
        }
        Ok(())
    }
    fn body(
        &self,
        _r: &Request,
        chain: &mut Vec<Bytes>,
        last: bool,
        st: &mut FilterState,
    ) -> Result<(), HttpError> {
        if !st.chunked {
            return Ok(());
        }
        let mut out = Vec::with_capacity(chain.len() * 3 + 1);
        for b in chain.drain(..).filter(|b| !b.is_empty()) {
            out.push(Bytes::from(format!("{:x}\r\n", b.len())));
            out.push(b);
            out.push(Bytes::from_static(b"\r\n"));
        }
        if last {
            out.push(Bytes::from_static(b"0\r\n\r\n"));
        }
        *chain = out;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(b"bytes=0-499", 1000), RangeSpec::Bytes(0, 499));
        assert_eq!(parse_range(b"bytes=500-", 1000), RangeSpec::Bytes(500, 999));
        assert_eq!(parse_range(b"bytes=-100", 1000), RangeSpec::Bytes(900, 999));
        assert_eq!(parse_range(b"bytes=-2000", 1000), RangeSpec::Bytes(0, 999));
        assert_eq!(
            parse_range(b"bytes=990-2000", 1000),
            RangeSpec::Bytes(990, 999)
        );
        assert_eq!(parse_range(b"bytes=1000-", 1000), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=-0", 1000), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=5-1", 1000), RangeSpec::Ignore);
        assert_eq!(parse_range(b"bytes=0-1,5-6", 1000), RangeSpec::Ignore);
        assert_eq!(parse_range(b"items=0-1", 1000), RangeSpec::Ignore);
        assert_eq!(parse_range(b"bytes=+1-2", 1000), RangeSpec::Ignore);
    }

    #[test]
    fn etag_lists() {
        assert!(etag_list_matches(b"\"a\", \"b\"", "\"b\""));
        assert!(etag_list_matches(b"W/\"b\"", "\"b\""));
        assert!(etag_list_matches(b"*", "\"x\""));
        assert!(!etag_list_matches(b"\"a\"", "\"b\""));
    }
}
