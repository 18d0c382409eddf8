//! Who may connect, publish and subscribe: the [`Authority`] trait the MQTT layer asks, and the
//! file-backed authority in mosquitto's formats (`mqtt.password_file`, `mqtt.acl_file`). The
//! database-backed store of sensors (`modules::ingest::login`) and display tokens implements the
//! same trait; [`secret`] holds the hashes of the sensors' secrets.
//!
//! A CONNECT may be answered later ([`Verdict::Later`]): an authority that must ask another
//! thread (a database) answers the CONNECT's ticket through its [`Verdicts`] handle. Meanwhile
//! the connection is parked: nothing else is read from it, its CONNECT deadline still runs, and
//! the CONNACK goes out when the answer comes. Topic rights ([`Authority::allows`]) are asked on
//! every packet and must answer at once.
//!
//! A login may stop holding while its client is connected (a sensor deleted, a token revoked):
//! the authority then cuts the client off through the same handle ([`Verdicts::cut_off`]).
//! The broker closes the connections it serves under that login at its next turn, without
//! publishing their wills (as mosquitto's dynamic security plugin kicks a client whose rights
//! changed: `mosquitto_kick_client_by_username(username, false)`), and discards their sessions,
//! persistent or not: what they held was granted under rights that are gone.

pub mod acl;
pub mod passwd;
pub mod secret;

use std::cell::RefCell;
use std::rc::Rc;

pub use acl::{Acl, Op};
pub use passwd::Passwords;

/// Why a mosquitto file (password or ACL) was refused: `path: cannot read: reason` or
/// `path:line: what is wrong`.
#[derive(Debug)]
pub enum FileError {
    /// The file cannot be read.
    Read {
        path: std::path::PathBuf,
        err: std::io::Error,
    },
    /// A line of the file is wrong (1-based).
    Line {
        path: std::path::PathBuf,
        line: usize,
        message: String,
    },
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Read { path, err } => write!(f, "{}: cannot read: {err}", path.display()),
            FileError::Line {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
        }
    }
}

impl std::error::Error for FileError {}

/// Why a CONNECT is refused (CONNACK return codes 2, 4 and 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 0x02: the client identifier is not one this client may use.
    IdentifierRejected,
    /// 0x04: bad user name or password.
    BadCredentials,
    /// 0x05: not authorised.
    NotAuthorised,
}

/// A CONNECT's credentials.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
}

/// An authority's answer to a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Refuse(Refusal),
    /// The answer comes later, through [`Verdicts::answer`] with the CONNECT's ticket.
    Later,
}

impl From<Result<(), Refusal>> for Verdict {
    fn from(r: Result<(), Refusal>) -> Verdict {
        match r {
            Ok(()) => Verdict::Allow,
            Err(r) => Verdict::Refuse(r),
        }
    }
}

/// What the MQTT layer asks before it lets a client in or acts for it. Called on the worker's
/// event-loop thread: must not block.
pub trait Authority {
    /// Checks a CONNECT's credentials; `ticket` names the CONNECT for a later answer.
    fn connect(&self, login: &Login<'_>, ticket: u64) -> Verdict;
    /// Whether the client may publish to `topic`, subscribe to a filter, or receive a message
    /// on `topic`.
    fn allows(&self, client_id: &str, username: Option<&str>, op: Op, topic: &str) -> bool;
    /// Whether deliveries must be checked one by one (`Op::Receive`); false lets the broker skip
    /// the check on its hot path.
    fn screens_delivery(&self) -> bool {
        false
    }
}

/// The answers of an authority that said [`Verdict::Later`], and its cut-offs, from the loop
/// thread. Cheap to clone; the broker collects them once per loop turn, wakes the parked
/// connections and closes the cut ones.
#[derive(Debug, Clone, Default)]
pub struct Verdicts(Rc<RefCell<Given>>);

#[derive(Debug, Default)]
struct Given {
    answers: Vec<Answer>,
    cuts: Vec<Cut>,
}

/// A CONNECT's ticket and the authority's late answer to it.
pub type Answer = (u64, Result<(), Refusal>);

/// Whose login no longer holds: the clients to cut off, on this worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    /// The client of this identifier, whoever it logged in as.
    Client(String),
    /// Every client that logged in with this user name.
    User(String),
}

impl Verdicts {
    /// The answer to the CONNECT of `ticket`.
    pub fn answer(&self, ticket: u64, verdict: Result<(), Refusal>) {
        self.0.borrow_mut().answers.push((ticket, verdict));
    }

    /// Cuts off the clients `cut` names, at the broker's next turn: their connections close
    /// (no will) and their sessions are discarded. Clients this worker does not hold are left
    /// alone (each worker hears of a login's change and cuts its own).
    pub fn cut_off(&self, cut: Cut) {
        self.0.borrow_mut().cuts.push(cut);
    }

    /// The answers given since the last call.
    pub(crate) fn take(&self) -> Vec<Answer> {
        std::mem::take(&mut self.0.borrow_mut().answers)
    }

    /// The cut-offs asked since the last call.
    pub(crate) fn take_cuts(&self) -> Vec<Cut> {
        std::mem::take(&mut self.0.borrow_mut().cuts)
    }

    /// Whether answers or cut-offs wait to be collected.
    pub(crate) fn pending(&self) -> bool {
        let g = self.0.borrow();
        !g.answers.is_empty() || !g.cuts.is_empty()
    }
}

/// mosquitto's files: a password file (optional) and an ACL file (optional).
#[derive(Debug, Clone, Default)]
pub struct FileAuthority {
    pub allow_anonymous: bool,
    pub passwords: Option<Passwords>,
    pub acl: Option<Acl>,
}

impl FileAuthority {
    /// Whether the password file names `username`: such a user is the files' to check.
    pub fn knows(&self, username: &str) -> bool {
        self.passwords
            .as_ref()
            .is_some_and(|p| p.contains(username))
    }

    /// The password file's answer, and `allow_anonymous`'s.
    pub fn check(&self, username: Option<&str>, password: Option<&[u8]>) -> Result<(), Refusal> {
        match (username, &self.passwords) {
            (None, _) if self.allow_anonymous => Ok(()),
            (None, _) => Err(Refusal::NotAuthorised),
            (Some(u), Some(p)) => match password {
                Some(pw) if p.verify(u, pw) => Ok(()),
                _ => Err(Refusal::BadCredentials),
            },
            (Some(_), None) if self.allow_anonymous => Ok(()),
            (Some(_), None) => Err(Refusal::NotAuthorised),
        }
    }
}

impl Authority for FileAuthority {
    fn connect(&self, login: &Login<'_>, _ticket: u64) -> Verdict {
        self.check(login.username, login.password).into()
    }

    fn allows(&self, client_id: &str, username: Option<&str>, op: Op, topic: &str) -> bool {
        match &self.acl {
            Some(acl) => acl.allows(client_id, username, op, topic),
            None => true,
        }
    }

    fn screens_delivery(&self) -> bool {
        self.acl.as_ref().is_some_and(Acl::has_deny)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_only_when_allowed() {
        let mut a = FileAuthority::default();
        assert_eq!(a.check(None, None), Err(Refusal::NotAuthorised));
        a.allow_anonymous = true;
        assert_eq!(a.check(None, None), Ok(()));
    }

    #[test]
    fn a_password_file_checks_every_named_user() {
        let line = "u:$7$101$O43on3WTobOD7hor$iB9xuYY7XhO11yl+NpOhpn409FVPEExa0T2/nHqEVx5p0Dd8dx0kkDM+LXkeXSe/8V5Ma2DwCJvI/yMPAtjM0g==";
        let a = FileAuthority {
            allow_anonymous: true,
            passwords: Some(Passwords::parse(line).unwrap()),
            acl: None,
        };
        assert_eq!(a.check(Some("u"), Some(b"s3cret")), Ok(()));
        assert_eq!(
            a.check(Some("u"), Some(b"nope")),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(a.check(Some("u"), None), Err(Refusal::BadCredentials));
        assert_eq!(
            a.check(Some("x"), Some(b"s3cret")),
            Err(Refusal::BadCredentials)
        );
        assert!(
            a.allows("c", Some("u"), Op::Publish, "any/topic"),
            "no ACL file: everything"
        );
    }
}
