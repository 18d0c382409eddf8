//! `[[http.server.location]]`: how a request path is matched and what answers it.
//!
//! A location has exactly one matcher (`exact`, `prefix` or `regex`, matched as nginx does:
//! exact first, then the longest prefix, then regexes in order) and exactly one answer (a fixed
//! `return` or a `handler`, one of the names modules registered). The HTTP modules read these
//! values; this file only parses and checks them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::core::config::{between, fail, field_error, non_empty, resolve, Dur, Invalid, KeyPath};

/// One location of a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawLocation", into = "RawLocation")]
pub struct LocationConf {
    /// From exactly one of the keys `exact`, `prefix`, `regex`.
    pub matcher: LocationMatch,
    /// Key `return`: a fixed response.
    pub return_: Option<ReturnConf>,
    /// Key `handler`: the name of the content handler that answers, as a module registered it.
    pub handler: Option<String>,
    /// The directory served by `handler = "static"` (resolved against the prefix).
    pub root: Option<PathBuf>,
    /// Files tried, in order, for a request naming a directory.
    pub index: Vec<String>,
    /// The `http.limit_req_zone` that limits this location.
    pub limit_req: Option<String>,
    /// Overrides `http.gzip`.
    pub gzip: Option<bool>,
    /// `false` turns the access log off for this location.
    pub access_log: Option<bool>,
    /// `Cache-Control: max-age` of static responses.
    pub expires: Option<Dur>,
}

/// How a location matches the request path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LocationMatch {
    /// The path equals this string.
    Exact(String),
    /// The path starts with this string (the longest matching prefix wins).
    Prefix(String),
    /// The path matches this regular expression (`(?i)` for case-insensitive).
    Regex(String),
}

impl LocationMatch {
    /// The configuration key of this kind of matcher.
    pub fn key(&self) -> &'static str {
        match self {
            LocationMatch::Exact(_) => "exact",
            LocationMatch::Prefix(_) => "prefix",
            LocationMatch::Regex(_) => "regex",
        }
    }

    /// The string or pattern matched.
    pub fn pattern(&self) -> &str {
        match self {
            LocationMatch::Exact(s) | LocationMatch::Prefix(s) | LocationMatch::Regex(s) => s,
        }
    }
}

impl fmt::Display for LocationMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.key(), self.pattern())
    }
}

/// A fixed response: `return = { status = 200, body = "ok\n" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReturnConf {
    /// 100..=599, default 200.
    pub status: u16,
    /// The response body, default empty.
    pub body: String,
    /// The `Content-Type` of the body, default `text/plain`.
    pub content_type: String,
    /// The `Location` header of a redirect (301, 302, 303, 307, 308), required there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Default for ReturnConf {
    fn default() -> ReturnConf {
        ReturnConf {
            status: 200,
            body: String::new(),
            content_type: "text/plain".to_string(),
            location: None,
        }
    }
}

/// The name of the handler that serves files under `root`.
pub const STATIC_HANDLER: &str = "static";

thread_local! {
    /// The content handler names modules registered, while the HTTP section is being read
    /// (serde's derived code passes no context down to a location).
    static HANDLERS: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
}

/// Runs `read` with `names` as the handler names a location may give.
pub(super) fn with_handlers<R>(names: &[&'static str], read: impl FnOnce() -> R) -> R {
    HANDLERS.with(|h| *h.borrow_mut() = names.to_vec());
    let out = read();
    HANDLERS.with(|h| h.borrow_mut().clear());
    out
}

/// Reads `handler`: one of the registered names, else serde's "unknown variant" error, which
/// names the known ones.
fn known_handler<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(d)?;
    HANDLERS.with(|h| {
        let known = h.borrow();
        if known.contains(&name.as_str()) {
            return Ok(Some(name));
        }
        let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
        Err(de::Error::custom(format!(
            "unknown variant `{name}`, expected one of {}",
            expected.join(", ")
        )))
    })
}

/// A location as written: the three matcher keys side by side.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLocation {
    #[serde(skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
    #[serde(
        deserialize_with = "known_handler",
        skip_serializing_if = "Option::is_none"
    )]
    handler: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    root: Option<PathBuf>,
    index: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit_req: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gzip: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_log: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<Dur>,
    #[serde(rename = "return", skip_serializing_if = "Option::is_none")]
    return_: Option<ReturnConf>,
}

impl Default for RawLocation {
    fn default() -> RawLocation {
        RawLocation {
            exact: None,
            prefix: None,
            regex: None,
            handler: None,
            root: None,
            index: vec!["index.html".to_string()],
            limit_req: None,
            gzip: None,
            access_log: None,
            expires: None,
            return_: None,
        }
    }
}

impl TryFrom<RawLocation> for LocationConf {
    type Error = String;

    /// Picks the one matcher; zero or several are an error naming the key at fault.
    fn try_from(raw: RawLocation) -> Result<LocationConf, String> {
        let mut given = [
            raw.exact.map(LocationMatch::Exact),
            raw.prefix.map(LocationMatch::Prefix),
            raw.regex.map(LocationMatch::Regex),
        ]
        .into_iter()
        .flatten();
        let Some(matcher) = given.next() else {
            return Err("needs one of `exact`, `prefix` or `regex`".to_string());
        };
        if let Some(second) = given.next() {
            let message = format!(
                "cannot be combined with `{}` (a location has exactly one of exact, prefix, regex)",
                matcher.key()
            );
            return Err(field_error(second.key(), &message));
        }
        Ok(LocationConf {
            matcher,
            return_: raw.return_,
            handler: raw.handler,
            root: raw.root,
            index: raw.index,
            limit_req: raw.limit_req,
            gzip: raw.gzip,
            access_log: raw.access_log,
            expires: raw.expires,
        })
    }
}

impl From<LocationConf> for RawLocation {
    fn from(loc: LocationConf) -> RawLocation {
        let (mut exact, mut prefix, mut regex) = (None, None, None);
        match loc.matcher {
            LocationMatch::Exact(s) => exact = Some(s),
            LocationMatch::Prefix(s) => prefix = Some(s),
            LocationMatch::Regex(s) => regex = Some(s),
        }
        RawLocation {
            exact,
            prefix,
            regex,
            handler: loc.handler,
            root: loc.root,
            index: loc.index,
            limit_req: loc.limit_req,
            gzip: loc.gzip,
            access_log: loc.access_log,
            expires: loc.expires,
            return_: loc.return_,
        }
    }
}

impl LocationConf {
    /// Checks the matcher, the answer (exactly one of `return` and `handler`), `root`, `index`,
    /// `expires` and that `limit_req` names a zone of `zones`.
    pub fn validate<Z>(&self, at: &KeyPath, zones: &BTreeMap<String, Z>) -> Result<(), Invalid> {
        self.check_matcher(at)?;
        match (&self.return_, &self.handler) {
            (Some(_), Some(_)) => {
                return fail(&at.key("handler"), "cannot be combined with `return`")
            }
            (None, None) => return fail(at, "needs `return` or `handler`"),
            (Some(ret), None) => ret.validate(&at.key("return"))?,
            (None, Some(_)) => {}
        }
        self.check_static(at)?;
        for (i, name) in self.index.iter().enumerate() {
            if name.is_empty() || name.contains('/') {
                return fail(
                    &at.key("index").index(i),
                    format!("{name:?} is not a file name"),
                );
            }
        }
        if let Some(zone) = &self.limit_req {
            if !zones.contains_key(zone) {
                let msg = format!("no zone {zone:?} is defined in [http.limit_req_zone]");
                return fail(&at.key("limit_req"), msg);
            }
        }
        Ok(())
    }

    fn check_matcher(&self, at: &KeyPath) -> Result<(), Invalid> {
        let key = at.key(self.matcher.key());
        match &self.matcher {
            LocationMatch::Exact(p) | LocationMatch::Prefix(p) if !p.starts_with('/') => {
                fail(&key, format!("{p:?} must start with \"/\""))
            }
            LocationMatch::Regex(p) => match regex::Regex::new(p) {
                Ok(_) => Ok(()),
                Err(e) => fail(
                    &key,
                    format!("{p:?} is not a valid regex: {}", regex_reason(&e)),
                ),
            },
            _ => Ok(()),
        }
    }

    /// `root` and `expires` go with `handler = "static"` only, and `root` is required there.
    fn check_static(&self, at: &KeyPath) -> Result<(), Invalid> {
        let is_static = self.handler.as_deref() == Some(STATIC_HANDLER);
        match &self.root {
            None if is_static => fail(&at.key("root"), "is required with handler = \"static\""),
            Some(_) if !is_static => {
                fail(&at.key("root"), "is only allowed with handler = \"static\"")
            }
            Some(root) => non_empty(&root.to_string_lossy(), &at.key("root")),
            None => Ok(()),
        }?;
        if self.expires.is_some() && !is_static {
            return fail(
                &at.key("expires"),
                "is only allowed with handler = \"static\"",
            );
        }
        Ok(())
    }

    /// Resolves `root` against the prefix.
    pub fn resolve(&mut self, prefix: &Path) {
        if let Some(root) = &self.root {
            self.root = Some(resolve(prefix, root));
        }
    }
}

/// The one line of a regex error that says what is wrong (its `Display` draws a caret diagram).
fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    let reason = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .or_else(|| text.lines().next())
        .unwrap_or("");
    reason.to_string()
}

impl ReturnConf {
    /// Checks the status, the redirect `location` and the content type.
    pub fn validate(&self, at: &KeyPath) -> Result<(), Invalid> {
        between(self.status, 100, 599, &at.key("status"))?;
        let redirect = matches!(self.status, 301 | 302 | 303 | 307 | 308);
        match &self.location {
            Some(_) if !redirect => fail(
                &at.key("location"),
                "is only allowed with status 301, 302, 303, 307 or 308",
            ),
            Some(l) => non_empty(l, &at.key("location")),
            None if redirect => fail(
                &at.key("location"),
                format!("is required with status {}", self.status),
            ),
            None => Ok(()),
        }?;
        check_mime_type(&self.content_type, &at.key("content_type"))
    }
}

/// A MIME type is `type/subtype`, without blanks.
pub fn check_mime_type(value: &str, at: &KeyPath) -> Result<(), Invalid> {
    let ok = value
        .split_once('/')
        .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty() && !s.contains('/'))
        && !value.contains(char::is_whitespace);
    if !ok {
        return fail(at, format!("{value:?} is not a MIME type"));
    }
    Ok(())
}
