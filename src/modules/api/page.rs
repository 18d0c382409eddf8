//! Cursor pagination of every list (DESIGN.md section 8): `?limit=` (1..=200, default 50) and
//! `?cursor=`, answered `{"items": [...], "next_cursor": "..." or null}`. The cursor is the
//! base64url of the last id shown, and a page is `WHERE id > $after ORDER BY id LIMIT limit + 1`
//! (keyset): rows inserted while a client pages never shift the pages it has not read yet.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::error::ApiError;

/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 50;
/// The most items a page may ask for.
pub const MAX_LIMIT: i64 = 200;

/// Which page a list call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    /// The last id of the page before (0 for the first page: ids start at 1).
    pub after: i64,
}

impl Page {
    /// From the raw query string (without '?'); other parameters are left to their call.
    pub fn parse(query: Option<&str>) -> Result<Page, ApiError> {
        let mut page = Page {
            limit: DEFAULT_LIMIT,
            after: 0,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "limit" => page.limit = limit(v)?,
                "cursor" => page.after = decode(v)?,
                _ => {}
            }
        }
        Ok(page)
    }

    /// The SQL LIMIT: one more row than the page shows, to know whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// The answer: the first `limit` of `rows` (each with its id) and the cursor to the next.
    pub fn answer(&self, mut rows: Vec<(i64, Value)>) -> Value {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(usize::try_from(self.limit).unwrap_or(0));
        let next = match rows.last() {
            Some((id, _)) if more => Value::String(encode(*id)),
            _ => Value::Null,
        };
        let items: Vec<Value> = rows.into_iter().map(|(_, v)| v).collect();
        json!({ "items": items, "next_cursor": next })
    }
}

fn limit(v: &str) -> Result<i64, ApiError> {
    match v.parse::<i64>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(
            "limit",
            format!("limit must be an integer from 1 to {MAX_LIMIT}"),
        )),
    }
}

/// The cursor after the row `id`.
pub fn encode(id: i64) -> String {
    B64.encode(id.to_string())
}

/// The id a cursor names.
pub fn decode(cursor: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::invalid("cursor", "cursor is not one this server gave");
    let bytes = B64.decode(cursor).map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    match text.parse::<i64>() {
        Ok(n) if n > 0 && text == n.to_string() => Ok(n),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_limits_and_cursors() {
        assert_eq!(
            Page::parse(None).unwrap(),
            Page {
                limit: 50,
                after: 0
            }
        );
        let q = format!("limit=2&cursor={}&x=1", encode(41));
        assert_eq!(
            Page::parse(Some(&q)).unwrap(),
            Page {
                limit: 2,
                after: 41
            }
        );
        for bad in ["limit=0", "limit=201", "limit=x", "limit="] {
            assert_eq!(
                Page::parse(Some(bad)).unwrap_err().field.as_deref(),
                Some("limit")
            );
        }
        for bad in ["cursor=!!", "cursor=", "cursor=LTE", "cursor=MDE"] {
            assert_eq!(
                Page::parse(Some(bad)).unwrap_err().field.as_deref(),
                Some("cursor"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_next_cursor_only_when_more_rows_follow() {
        let p = Page { limit: 2, after: 0 };
        let rows = |n: i64| (1..=n).map(|i| (i, json!(i))).collect::<Vec<_>>();
        let a = p.answer(rows(3));
        assert_eq!(a["items"], json!([1, 2]));
        assert_eq!(decode(a["next_cursor"].as_str().unwrap()).unwrap(), 2);
        assert!(p.answer(rows(2))["next_cursor"].is_null());
    }
}
