//! Configuration errors, `file:line: key: message`, and how they find their line and key.
//!
//! Three kinds of error reach the operator: TOML syntax errors, serde errors (unknown keys, wrong
//! types, bad durations) and validation errors ([`Invalid`], built by each section's
//! `validate()` with a [`KeyPath`]). [`Source`] keeps the spanned TOML document so that a serde
//! error's byte span maps to the dotted key path and a validation error's key path maps to a
//! line. Only [`super::Conf::parse`] uses [`Source`]; nothing here panics on any input.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// A configuration error.
///
/// Displays as `conf/bizzy.toml:12: http.keepalive_timeout: "10x" is not a duration`: the file
/// as given, the 1-based line of the key or value, the dotted key path with array indices, then
/// the message. Without a known line (an I/O error) or key, those parts are left out:
/// `conf/bizzy.toml: cannot read: No such file or directory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    /// The configuration file, as given on the command line.
    pub file: PathBuf,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// The dotted key path, e.g. `http.server[0].location[2].root`; empty when not known.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfError {}

impl ConfError {
    /// An error with no line or key, e.g. the file cannot be read.
    pub(crate) fn whole_file(file: &Path, message: String) -> ConfError {
        ConfError {
            file: file.to_path_buf(),
            line: None,
            key: String::new(),
            message,
        }
    }

    /// `cannot read: No such file or directory`, without the `(os error 2)` suffix.
    pub(crate) fn io(file: &Path, what: &str, err: &io::Error) -> ConfError {
        let text = err.to_string();
        let text = match text.find(" (os error ") {
            Some(cut) => &text[..cut],
            None => &text,
        };
        ConfError::whole_file(file, format!("{what}: {text}"))
    }
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A dotted key path such as `http.server[0].location[2].root`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Seg>);

impl KeyPath {
    /// A path of one top-level key (a section name).
    pub fn root(key: &str) -> KeyPath {
        KeyPath(vec![Seg::Key(key.to_string())])
    }

    /// This path followed by `key`.
    pub fn key(&self, key: &str) -> KeyPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_string()));
        KeyPath(segs)
    }

    /// This path followed by `[index]`.
    pub fn index(&self, index: usize) -> KeyPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        KeyPath(segs)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    write_key(f, k)?;
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A bare key as it is; any other key quoted, as TOML would need it (`types.".geojson"`).
fn write_key(f: &mut fmt::Formatter<'_>, key: &str) -> fmt::Result {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        f.write_str(key)
    } else {
        write!(f, "{key:?}")
    }
}

/// A validation error: the key at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: KeyPath,
    pub message: String,
}

/// Fails validation at `path`.
pub fn fail<T>(path: &KeyPath, message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid {
        path: path.clone(),
        message: message.into(),
    })
}

/// Checks `lo <= value <= hi`.
pub fn between<T>(value: T, lo: T, hi: T, path: &KeyPath) -> Result<(), Invalid>
where
    T: PartialOrd + fmt::Display,
{
    if value < lo || value > hi {
        return fail(path, format!("must be between {lo} and {hi}, not {value}"));
    }
    Ok(())
}

/// Checks `value >= lo`.
pub fn at_least<T: PartialOrd + fmt::Display>(
    value: T,
    lo: T,
    path: &KeyPath,
) -> Result<(), Invalid> {
    if value < lo {
        return fail(path, format!("must be at least {lo}, not {value}"));
    }
    Ok(())
}

/// Checks that a string (or path) is not empty.
pub fn non_empty(value: &str, path: &KeyPath) -> Result<(), Invalid> {
    if value.is_empty() {
        return fail(path, "must not be empty");
    }
    Ok(())
}

/// An array without a value given twice.
pub fn check_no_repeats<T: PartialEq + fmt::Display>(
    items: &[T],
    at: &KeyPath,
) -> Result<(), Invalid> {
    for (i, item) in items.iter().enumerate() {
        if items[..i].contains(item) {
            return fail(&at.index(i), format!("{item} is given twice"));
        }
    }
    Ok(())
}

/// Separates a key from a message in errors raised inside serde (`TryFrom` conversions), which
/// cannot know their path: `"prefix\x1fcannot be combined with exact"` is reported at the
/// table's path followed by `prefix`.
const FIELD_SEP: char = '\u{1f}';

/// A serde error message about `key` of the table being deserialized.
pub fn field_error(key: &str, message: &str) -> String {
    format!("{key}{FIELD_SEP}{message}")
}

/// The text of the configuration with its spanned TOML document.
pub struct Source<'a> {
    text: &'a str,
    doc: Spanned<DeTable<'a>>,
}

impl<'a> Source<'a> {
    /// Parses the TOML syntax; a syntax error names its line.
    pub fn parse(text: &'a str, file: &Path) -> Result<Source<'a>, ConfError> {
        match DeTable::parse(text) {
            Ok(doc) => Ok(Source { text, doc }),
            Err(err) => Err(ConfError {
                file: file.to_path_buf(),
                line: err.span().map(|s| line_at(text, s.start)),
                key: String::new(),
                message: err.message().to_string(),
            }),
        }
    }

    /// The top-level table as parsed, for reading each section from it.
    pub fn table(&self) -> DeTable<'a> {
        self.doc.get_ref().clone()
    }

    /// Maps a serde error (its message and the span it was raised at) to its line and key path.
    pub fn serde_error(&self, file: &Path, span: Option<Range<usize>>, message: &str) -> ConfError {
        let mut path = span.clone().map(|s| self.path_at(s)).unwrap_or_default();
        let (mut line, mut message) =
            (span.map(|s| line_at(self.text, s.start)), humanize(message));
        if let Some((key, rest)) = message.split_once(FIELD_SEP) {
            path = self.element_with(path, key, &quoted(rest)).key(key);
            line = self.line_of(&path).or(line);
            message = rest.to_string();
        } else if let Some(missing) = missing_field(&message) {
            path = path.key(&missing);
            message = "is required".to_string();
        }
        ConfError {
            file: file.to_path_buf(),
            line,
            key: path.to_string(),
            message,
        }
    }

    /// Maps a validation error to the line of its key (or of the nearest enclosing table when
    /// the key is not written in the file).
    pub fn invalid(&self, file: &Path, invalid: Invalid) -> ConfError {
        ConfError {
            file: file.to_path_buf(),
            line: self.line_of(&invalid.path),
            key: invalid.path.to_string(),
            message: invalid.message,
        }
    }

    /// The line of `path`, or of its longest prefix present in the document.
    fn line_of(&self, path: &KeyPath) -> Option<usize> {
        self.lookup(path).0.map(|s| line_at(self.text, s.start))
    }

    /// Follows `path` as far as the document goes: the span of the last key or element found,
    /// and its value if the whole path was found.
    fn lookup(&self, path: &KeyPath) -> (Option<Range<usize>>, Option<&DeValue<'a>>) {
        let mut span = None;
        let mut value: Option<&DeValue<'a>> = None;
        let root = self.doc.get_ref();
        for seg in &path.0 {
            let found = match (seg, value) {
                (Seg::Key(k), None) => find_key(root, k),
                (Seg::Key(k), Some(DeValue::Table(t))) => find_key(t, k),
                (Seg::Index(n), Some(DeValue::Array(a))) => a.get(*n).map(|e| (e.span(), e)),
                _ => None,
            };
            let Some((found_span, found_value)) = found else {
                return (span, None);
            };
            span = Some(found_span);
            value = Some(found_value.get_ref());
        }
        (span, value)
    }

    /// When `path` is an array (toml reports an inline array's span for an error in one of its
    /// tables), the path of its first table holding `key` and every one of `others`.
    fn element_with(&self, path: KeyPath, key: &str, others: &[&str]) -> KeyPath {
        let Some(DeValue::Array(items)) = self.lookup(&path).1 else {
            return path;
        };
        let holds = |item: &Spanned<DeValue<'_>>| match item.get_ref() {
            DeValue::Table(t) => std::iter::once(&key)
                .chain(others)
                .all(|k| find_key(t, k).is_some()),
            _ => false,
        };
        match items.iter().position(holds) {
            Some(i) => path.index(i),
            None => path,
        }
    }

    /// The key path of the smallest key or value whose span contains `span`.
    fn path_at(&self, span: Range<usize>) -> KeyPath {
        let mut best = (usize::MAX, KeyPath::default());
        walk_table(self.doc.get_ref(), &KeyPath::default(), &span, &mut best);
        best.1
    }
}

/// A key of a table: its span and its value.
fn find_key<'t, 'a>(
    table: &'t DeTable<'a>,
    key: &str,
) -> Option<(Range<usize>, &'t Spanned<DeValue<'a>>)> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(k, v)| (k.span(), v))
}

fn walk_table(table: &DeTable<'_>, at: &KeyPath, span: &Range<usize>, best: &mut (usize, KeyPath)) {
    for (key, value) in table.iter() {
        let path = if at.0.is_empty() {
            KeyPath::root(key.get_ref())
        } else {
            at.key(key.get_ref())
        };
        consider(key.span(), &path, span, best);
        walk_value(value, &path, span, best);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    at: &KeyPath,
    span: &Range<usize>,
    best: &mut (usize, KeyPath),
) {
    consider(value.span(), at, span, best);
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, at, span, best),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                walk_value(item, &at.index(i), span, best);
            }
        }
        _ => {}
    }
}

/// Keeps `at` if `candidate` contains `span` and is no larger than the best so far (on a tie
/// the later, deeper candidate wins: an array of tables and its element share a span).
fn consider(
    candidate: Range<usize>,
    at: &KeyPath,
    span: &Range<usize>,
    best: &mut (usize, KeyPath),
) {
    if candidate.start <= span.start && span.end <= candidate.end && !candidate.is_empty() {
        let len = candidate.len();
        if len <= best.0 {
            *best = (len, at.clone());
        }
    }
}

/// The 1-based line of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The backquoted words of a serde message: "unknown field `a`, expected `b` or `c`" gives
/// a, b, c.
fn quoted(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

/// `missing field `rate`` gives `rate`.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field ")?;
    quoted(rest).first().map(|k| k.to_string())
}

/// Rewrites serde's messages in the configuration's terms.
fn humanize(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let words = quoted(rest);
        let hint = words
            .split_first()
            .and_then(|(unknown, known)| closest(unknown, known))
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        return format!("unknown key{hint}");
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let words = quoted(rest);
        if let Some((given, known)) = words.split_first() {
            let known: Vec<String> = known.iter().map(|k| format!("{k:?}")).collect();
            return format!("{given:?} is not one of {}", known.join(", "));
        }
    }
    let Some(cut) = message.rfind("expected ") else {
        return message.to_string();
    };
    let (head, expected) = message.split_at(cut + "expected ".len());
    format!("{head}{}", type_name(expected))
}

/// serde's Rust type names as TOML types.
fn type_name(expected: &str) -> &str {
    match expected {
        "u16" => "an integer from 0 to 65535",
        "u32" => "an integer from 0 to 4294967295",
        "u64" | "usize" => "a non-negative integer",
        "i32" | "i64" => "an integer",
        "a sequence" => "an array",
        "a map" => "a table",
        other if other.starts_with("struct ") => "a table",
        other => other,
    }
}

/// The known key closest to a misspelt one, if it is close enough to be the likely intent.
fn closest<'k>(unknown: &str, known: &[&'k str]) -> Option<&'k str> {
    let limit = (unknown.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(unknown, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_line() {
        let e = ConfError {
            file: "conf/bizzy.toml".into(),
            line: Some(12),
            key: "http.keepalive_timeout".into(),
            message: "\"10x\" is not a duration".into(),
        };
        let want = "conf/bizzy.toml:12: http.keepalive_timeout: \"10x\" is not a duration";
        assert_eq!(e.to_string(), want);
        let io = io::Error::from_raw_os_error(2);
        let e = ConfError::io(Path::new("conf/bizzy.toml"), "cannot read", &io);
        let want = "conf/bizzy.toml: cannot read: No such file or directory";
        assert_eq!(e.to_string(), want);
    }

    #[test]
    fn key_paths() {
        let p = KeyPath::root("http")
            .key("server")
            .index(0)
            .key("location")
            .index(2)
            .key("root");
        assert_eq!(p.to_string(), "http.server[0].location[2].root");
        let p = KeyPath::root("http").key("types").key(".geojson");
        assert_eq!(p.to_string(), "http.types.\".geojson\"");
    }

    #[test]
    fn suggestions() {
        let known = ["keepalive_timeout", "keepalive_requests", "send_timeout"];
        assert_eq!(
            closest("keepalive_timout", &known),
            Some("keepalive_timeout")
        );
        assert_eq!(closest("xyz", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn humanized_messages() {
        let m = humanize("unknown field `prefx`, expected one of `exact`, `prefix`, `regex`");
        assert_eq!(m, "unknown key (did you mean `prefix`?)");
        let m = humanize("unknown field `zzz`, expected `status`");
        assert_eq!(m, "unknown key");
        let m = humanize("unknown variant `apii`, expected one of `api`, `status`");
        assert_eq!(m, "\"apii\" is not one of \"api\", \"status\"");
        let m = humanize("invalid type: string \"x\", expected u64");
        assert_eq!(
            m,
            "invalid type: string \"x\", expected a non-negative integer"
        );
    }
}
