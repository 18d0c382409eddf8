//! The `Date` header value, formatted once per second per worker.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Default)]
pub struct DateCache {
    inner: RefCell<(u64, Vec<u8>)>,
}

impl DateCache {
    /// Calls `f` with the current IMF-fixdate.
    pub fn with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let now = SystemTime::now();
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut c = self.inner.borrow_mut();
        if c.0 != secs || c.1.is_empty() {
            c.0 = secs;
            c.1 = httpdate::fmt_http_date(now).into_bytes();
        }
        f(&c.1)
    }
}
