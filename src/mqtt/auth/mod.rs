//! Who may connect, publish and subscribe: the [`Authority`] trait the MQTT layer asks, and the
//! file-backed authority in mosquitto's formats (`mqtt.password_file`, `mqtt.acl_file`). The
//! database-backed store of sensors and display tokens implements the same trait.

pub mod acl;
pub mod passwd;

pub use acl::{Acl, Op};
pub use passwd::Passwords;

/// Why a CONNECT is refused (CONNACK return codes 4 and 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 0x04: bad user name or password.
    BadCredentials,
    /// 0x05: not authorised.
    NotAuthorised,
}

/// What the MQTT layer asks before it lets a client in or acts for it.
pub trait Authority {
    /// Checks a CONNECT's credentials; `Ok` carries nothing yet (the identity is the username).
    fn connect(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<(), Refusal>;
    /// Whether the client may publish to `topic`, subscribe to a filter, or receive a message
    /// on `topic`.
    fn allows(&self, client_id: &str, username: Option<&str>, op: Op, topic: &str) -> bool;
    /// Whether deliveries must be checked one by one (`Op::Receive`); false lets the broker skip
    /// the check on its hot path.
    fn screens_delivery(&self) -> bool {
        false
    }
}

/// mosquitto's files: a password file (optional) and an ACL file (optional).
#[derive(Debug, Clone, Default)]
pub struct FileAuthority {
    pub allow_anonymous: bool,
    pub passwords: Option<Passwords>,
    pub acl: Option<Acl>,
}

impl Authority for FileAuthority {
    fn connect(
        &self,
        _client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<(), Refusal> {
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
        assert_eq!(a.connect("c", None, None), Err(Refusal::NotAuthorised));
        a.allow_anonymous = true;
        assert_eq!(a.connect("c", None, None), Ok(()));
    }

    #[test]
    fn a_password_file_checks_every_named_user() {
        let line = "u:$7$101$O43on3WTobOD7hor$iB9xuYY7XhO11yl+NpOhpn409FVPEExa0T2/nHqEVx5p0Dd8dx0kkDM+LXkeXSe/8V5Ma2DwCJvI/yMPAtjM0g==";
        let a = FileAuthority {
            allow_anonymous: true,
            passwords: Some(Passwords::parse(line).unwrap()),
            acl: None,
        };
        assert_eq!(a.connect("c", Some("u"), Some(b"s3cret")), Ok(()));
        assert_eq!(
            a.connect("c", Some("u"), Some(b"nope")),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            a.connect("c", Some("u"), None),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            a.connect("c", Some("x"), Some(b"s3cret")),
            Err(Refusal::BadCredentials)
        );
        assert!(
            a.allows("c", Some("u"), Op::Publish, "any/topic"),
            "no ACL file: everything"
        );
    }
}
