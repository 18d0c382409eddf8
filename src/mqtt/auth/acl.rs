//! `mqtt.acl_file`: mosquitto's acl_file syntax, so operators can bring their files along.
//!
//! ```text
//! # before the first `user` line: rules for anonymous clients
//! topic read public/#
//! user sensor-1
//! topic write sensors/sensor-1/#
//! pattern write sensors/%u/#        # every client, %u = username, %c = client id
//! pattern read commands/sensor/%c
//! topic deny secret/#               # deny wins over any grant
//! ```
//!
//! `topic [read|write|readwrite|deny] FILTER` (readwrite when the access is left out) applies to
//! the user named by the last `user` line; `pattern` lines apply to every client, with `%u` and
//! `%c` replaced (a rule is skipped for a client whose name would put a wildcard or a level
//! separator into it, as mosquitto does). A publish needs a write grant matching its topic; a
//! subscription needs a read grant covering every topic its filter can match, and is refused by
//! a deny rule covering all of them; a message is delivered to a subscriber only if no deny rule
//! matches its topic (mosquitto checks read access per message the same way, so `topic deny
//! secret` beside `topic readwrite #` lets a client subscribe to `#` and never see `secret`).
//! Errors name the line.

use std::collections::HashMap;
use std::path::Path;

use crate::mqtt::router::topic_matches;

/// Why an ACL file was refused: `path: cannot read: reason` or `path:line: what is wrong`.
pub type AclError = super::FileError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

#[derive(Debug, Clone)]
struct Rule {
    access: Access,
    filter: String,
}

/// A parsed ACL file.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

/// What a client asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Publish,
    Subscribe,
    /// Delivery of a message on this topic name to a subscriber.
    Receive,
}

impl Acl {
    pub fn load(path: &Path) -> Result<Acl, AclError> {
        let text = std::fs::read_to_string(path).map_err(|err| AclError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        Acl::parse(&text).map_err(|(line, message)| AclError::Line {
            path: path.to_path_buf(),
            line,
            message,
        })
    }

    /// Parses a file's text; errors carry the 1-based line.
    pub fn parse(text: &str) -> Result<Acl, (usize, String)> {
        let mut acl = Acl::default();
        let mut user: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match word {
                "user" if !rest.is_empty() => user = Some(rest.to_string()),
                "user" => return Err((i + 1, "`user` needs a name".into())),
                "topic" | "pattern" => {
                    let rule = parse_rule(rest).map_err(|e| (i + 1, e))?;
                    match (word, &user) {
                        ("pattern", _) => acl.patterns.push(rule),
                        (_, Some(u)) => acl.users.entry(u.clone()).or_default().push(rule),
                        (_, None) => acl.anonymous.push(rule),
                    }
                }
                other => {
                    return Err((
                        i + 1,
                        format!("unknown keyword \"{other}\" (user, topic or pattern)"),
                    ))
                }
            }
        }
        Ok(acl)
    }

    /// Whether the client may do `op` on `topic` (a topic name for Publish, a filter for
    /// Subscribe).
    pub fn allows(&self, client_id: &str, username: Option<&str>, op: Op, topic: &str) -> bool {
        let own = match username {
            Some(u) => self.users.get(u).map_or(&[][..], |v| v.as_slice()),
            None => self.anonymous.as_slice(),
        };
        let patterns = self
            .patterns
            .iter()
            .filter_map(|r| substitute(r, client_id, username));
        let rules: Vec<Rule> = own.iter().cloned().chain(patterns).collect();
        let hits = |r: &Rule| match op {
            Op::Publish | Op::Receive => topic_matches(&r.filter, topic),
            Op::Subscribe => filter_covers(&r.filter, topic),
        };
        if rules.iter().any(|r| r.access == Access::Deny && hits(r)) {
            return false;
        }
        rules.iter().any(|r| match (op, r.access) {
            (Op::Publish, Access::Write | Access::ReadWrite) => topic_matches(&r.filter, topic),
            (Op::Subscribe, Access::Read | Access::ReadWrite) => filter_covers(&r.filter, topic),
            (Op::Receive, Access::Read | Access::ReadWrite) => topic_matches(&r.filter, topic),
            _ => false,
        })
    }

    /// Whether some rule denies: only then is every delivery checked ([`Op::Receive`]).
    pub fn has_deny(&self) -> bool {
        self.anonymous
            .iter()
            .chain(self.users.values().flatten())
            .chain(&self.patterns)
            .any(|r| r.access == Access::Deny)
    }
}

fn parse_rule(rest: &str) -> Result<Rule, String> {
    let (first, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let (access, filter) = match first {
        "read" => (Access::Read, tail.trim()),
        "write" => (Access::Write, tail.trim()),
        "readwrite" => (Access::ReadWrite, tail.trim()),
        "deny" => (Access::Deny, tail.trim()),
        _ => (Access::ReadWrite, rest),
    };
    if filter.is_empty() {
        return Err("a rule needs a topic filter".into());
    }
    if !valid_filter(filter) {
        return Err(format!("\"{filter}\" is not a valid topic filter"));
    }
    Ok(Rule {
        access,
        filter: filter.to_string(),
    })
}

fn valid_filter(f: &str) -> bool {
    let levels: Vec<&str> = f.split('/').collect();
    levels.iter().enumerate().all(|(i, l)| match *l {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains(['#', '+']),
    })
}

/// A pattern with `%c` and `%u` replaced, or None when the client's names cannot be put in.
fn substitute(r: &Rule, client_id: &str, username: Option<&str>) -> Option<Rule> {
    let unsafe_name = |s: &str| s.is_empty() || s.contains(['+', '#', '/']);
    let mut f = r.filter.clone();
    if f.contains("%c") {
        if unsafe_name(client_id) {
            return None;
        }
        f = f.replace("%c", client_id);
    }
    if f.contains("%u") {
        let u = username.filter(|u| !unsafe_name(u))?;
        f = f.replace("%u", u);
    }
    Some(Rule {
        access: r.access,
        filter: f,
    })
}

/// Whether every topic `sub` can match is matched by `rule`.
fn filter_covers(rule: &str, sub: &str) -> bool {
    if sub.starts_with(['+', '#']) && rule.starts_with('$') {
        return false;
    }
    let mut r = rule.split('/');
    let mut s = sub.split('/');
    loop {
        match (r.next(), s.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(x)) if x != "#" => {}
            (Some(a), Some(b)) if a == b && a != "+" && a != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# anonymous
topic read public/#

user sensor-1
topic write sensors/sensor-1/#
topic deny sensors/sensor-1/secret

user display
topic read hives/+/occupancy

pattern read commands/sensor/%c
pattern write status/%u
";

    #[test]
    fn grants_and_denies_like_mosquitto() {
        let a = Acl::parse(FILE).unwrap();
        let s = Some("sensor-1");
        assert!(a.allows("sensor-1", s, Op::Publish, "sensors/sensor-1/counter"));
        assert!(!a.allows("sensor-1", s, Op::Publish, "sensors/sensor-2/counter"));
        assert!(
            !a.allows("sensor-1", s, Op::Publish, "sensors/sensor-1/secret"),
            "deny wins"
        );
        assert!(
            !a.allows("sensor-1", s, Op::Subscribe, "sensors/sensor-1/counter"),
            "write only"
        );
        assert!(
            a.allows("dev-9", s, Op::Subscribe, "commands/sensor/dev-9"),
            "%c"
        );
        assert!(!a.allows("dev-9", s, Op::Subscribe, "commands/sensor/dev-8"));
        assert!(a.allows("x", s, Op::Publish, "status/sensor-1"), "%u");
        assert!(
            !a.allows("x", None, Op::Publish, "status/sensor-1"),
            "no %u for anonymous"
        );
        assert!(
            a.allows("x", None, Op::Subscribe, "public/a/b"),
            "anonymous rules"
        );
        assert!(
            !a.allows("x", Some("display"), Op::Subscribe, "public/a"),
            "not the anonymous rules"
        );
        assert!(a.allows("x", Some("display"), Op::Subscribe, "hives/7/occupancy"));
        assert!(a.allows("x", Some("display"), Op::Subscribe, "hives/+/occupancy"));
        assert!(
            !a.allows("x", Some("display"), Op::Subscribe, "hives/#"),
            "wider than the grant"
        );
        assert!(
            !a.allows("x", Some("nobody"), Op::Publish, "public/a"),
            "no rule, no access"
        );
    }

    #[test]
    fn wildcards_in_names_are_not_substituted() {
        let a = Acl::parse("pattern read commands/sensor/%c\n").unwrap();
        assert!(!a.allows("#", None, Op::Subscribe, "commands/sensor/#"));
        assert!(!a.allows("a/b", None, Op::Subscribe, "commands/sensor/a/b"));
    }

    #[test]
    fn a_deny_refuses_what_it_covers_and_screens_delivery() {
        let a = Acl::parse("topic deny a/secret\ntopic readwrite a/#\n").unwrap();
        assert!(a.has_deny());
        assert!(a.allows("c", None, Op::Subscribe, "a/open"));
        assert!(
            !a.allows("c", None, Op::Subscribe, "a/secret"),
            "SUBACK 0x80"
        );
        assert!(a.allows("c", None, Op::Subscribe, "a/#"), "as mosquitto");
        assert!(a.allows("c", None, Op::Receive, "a/open"));
        assert!(
            !a.allows("c", None, Op::Receive, "a/secret"),
            "never delivered"
        );
        assert!(!Acl::parse("topic read a/#\n").unwrap().has_deny());
    }

    #[test]
    fn errors_name_the_line() {
        let e = |t: &str| Acl::parse(t).unwrap_err();
        assert_eq!(
            e("topic read a\nbogus x\n"),
            (
                2,
                "unknown keyword \"bogus\" (user, topic or pattern)".into()
            )
        );
        assert_eq!(e("user\n").0, 1);
        assert!(e("topic read\n").1.contains("needs a topic filter"));
        assert!(e("topic read a/#/b\n")
            .1
            .contains("not a valid topic filter"));
    }
}
