//! A parsed request as handlers see it: the head bytes it came in, offsets into them, the
//! normalised path, the body, and per-request state for modules.

use std::any::{Any, TypeId};
use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::http::location::Location;
use crate::http::parse::{self, Head, HeaderIdx, Method};

pub struct Request {
    /// The head as received; every range below points into it.
    pub raw: Bytes,
    pub head: Head,
    pub headers: Vec<HeaderIdx>,
    /// Percent-decoded, normalised path ("/a/b"); "*" for `OPTIONS *`.
    pub path: String,
    /// The query string's range in `raw`, without the '?'.
    pub query: Option<Range<usize>>,
    pub body: Bytes,
    pub peer: SocketAddr,
    /// Index of the virtual server in the runtime.
    pub server: usize,
    pub location: Option<Rc<Location>>,
    /// When the first byte of the request arrived (loop clock, ms) and the wall time then.
    pub start_ms: u64,
    pub time: SystemTime,
    /// Whether the connection stays open after the answer; handlers and filters may clear it.
    pub keep_alive: bool,
    ctx: Vec<(TypeId, Box<dyn Any>)>,
}

impl Request {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        raw: Bytes,
        head: Head,
        headers: Vec<HeaderIdx>,
        path: String,
        query: Option<Range<usize>>,
        body: Bytes,
        peer: SocketAddr,
        start_ms: u64,
    ) -> Request {
        let keep_alive = head.keep_alive;
        Request {
            raw,
            head,
            headers,
            path,
            query,
            body,
            peer,
            server: 0,
            location: None,
            start_ms,
            time: SystemTime::now(),
            keep_alive,
            ctx: Vec::new(),
        }
    }

    pub fn method(&self) -> Method {
        self.head.method
    }

    pub fn method_str(&self) -> &str {
        std::str::from_utf8(&self.raw[self.head.method_range.clone()]).unwrap_or("-")
    }

    /// The request-target as sent.
    pub fn target(&self) -> &[u8] {
        &self.raw[self.head.target.clone()]
    }

    pub fn query(&self) -> Option<&[u8]> {
        self.query.clone().map(|r| &self.raw[r])
    }

    pub fn http11(&self) -> bool {
        self.head.minor == 1
    }

    fn slice(&self, r: &Option<Range<usize>>) -> Option<&[u8]> {
        r.clone().map(|r| &self.raw[r])
    }

    /// The host the request is for: the authority of an absolute-form target, which replaces
    /// the Host field (RFC 9112 3.2.2), else the Host field.
    pub fn host(&self) -> Option<&[u8]> {
        absolute_authority(self.target()).or_else(|| self.slice(&self.head.host))
    }

    pub fn user_agent(&self) -> Option<&[u8]> {
        self.slice(&self.head.user_agent)
    }

    pub fn referer(&self) -> Option<&[u8]> {
        self.slice(&self.head.referer)
    }

    /// The first value of a header field, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| parse::header_name(&self.raw, h).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| parse::header_value(&self.raw, h))
    }

    /// Per-request state of a module, by type (nginx's `ngx_http_get_module_ctx`).
    pub fn ctx<T: 'static>(&self) -> Option<&T> {
        self.ctx
            .iter()
            .find(|(t, _)| *t == TypeId::of::<T>())
            .and_then(|(_, v)| v.downcast_ref())
    }

    pub fn ctx_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.ctx
            .iter_mut()
            .find(|(t, _)| *t == TypeId::of::<T>())
            .and_then(|(_, v)| v.downcast_mut())
    }

    pub fn set_ctx<T: 'static>(&mut self, v: T) {
        match self.ctx_mut::<T>() {
            Some(slot) => *slot = v,
            None => self.ctx.push((TypeId::of::<T>(), Box::new(v))),
        }
    }
}

/// The authority of an `http://` or `https://` target (any case), up to its path or query.
fn absolute_authority(target: &[u8]) -> Option<&[u8]> {
    let scheme = [&b"http://"[..], b"https://"].into_iter().find(|p| {
        target
            .get(..p.len())
            .is_some_and(|t| t.eq_ignore_ascii_case(p))
    })?;
    let rest = &target[scheme.len()..];
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::absolute_authority;

    #[test]
    fn authority_of_absolute_targets() {
        assert_eq!(absolute_authority(b"http://b.test/x"), Some(&b"b.test"[..]));
        assert_eq!(
            absolute_authority(b"HTTPS://b.test:8443?q"),
            Some(&b"b.test:8443"[..])
        );
        assert_eq!(absolute_authority(b"http://b.test"), Some(&b"b.test"[..]));
        assert_eq!(absolute_authority(b"/http://b.test/"), None);
        assert_eq!(absolute_authority(b"*"), None);
    }
}
