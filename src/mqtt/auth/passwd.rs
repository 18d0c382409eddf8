//! `mqtt.password_file`: mosquitto_passwd's format, so operators can bring their files along.
//!
//! One `username:hash` per line; `#` comments and blank lines are skipped. Hashes are
//! `$7$ITERATIONS$SALT$HASH` (PBKDF2-HMAC-SHA512, mosquitto 2) or `$6$SALT$HASH` (salted
//! SHA-512, mosquitto 1.x), salt and hash in standard base64. Verification compares in constant
//! time. Errors name the file and line.

use std::collections::HashMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha512};

/// Why a password file was refused: `path: cannot read: reason` or `path:line: what is wrong`.
pub type PasswdError = super::FileError;

/// The most iterations accepted from a file (a typo must not make every login take minutes).
const MAX_ITERATIONS: u32 = 10_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hash {
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Sha512 {
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

/// The users of a password file.
#[derive(Debug, Clone, Default)]
pub struct Passwords {
    users: HashMap<String, Hash>,
}

impl Passwords {
    pub fn load(path: &Path) -> Result<Passwords, PasswdError> {
        let text = std::fs::read_to_string(path).map_err(|err| PasswdError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        Passwords::parse(&text).map_err(|(line, message)| PasswdError::Line {
            path: path.to_path_buf(),
            line,
            message,
        })
    }

    /// Parses a file's text; errors carry the 1-based line.
    pub fn parse(text: &str) -> Result<Passwords, (usize, String)> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or((i + 1, "expected username:hash".to_string()))?;
            if user.is_empty() {
                return Err((i + 1, "empty username".into()));
            }
            let h = parse_hash(hash).map_err(|e| (i + 1, format!("user \"{user}\": {e}")))?;
            if users.insert(user.to_string(), h).is_some() {
                return Err((i + 1, format!("user \"{user}\" appears twice")));
            }
        }
        Ok(Passwords { users })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether the file has a line for `user`.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Whether `user` exists and `password` is theirs.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            }) => {
                let mut out = vec![0u8; hash.len()];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                constant_time_eq(&out, hash)
            }
            Some(Hash::Sha512 { salt, hash }) => {
                let mut d = Sha512::new();
                d.update(password);
                d.update(salt);
                constant_time_eq(&d.finalize(), hash)
            }
            None => false,
        }
    }
}

fn parse_hash(s: &str) -> Result<Hash, String> {
    let parts: Vec<&str> = s.split('$').collect();
    let b64 = |what: &str, v: &str| {
        B64.decode(v)
            .map_err(|e| format!("{what} is not base64 ({e})"))
    };
    match parts.as_slice() {
        ["", "7", iters, salt, hash] => {
            let iterations: u32 = iters
                .parse()
                .map_err(|_| format!("iteration count \"{iters}\" is not a number"))?;
            if iterations == 0 || iterations > MAX_ITERATIONS {
                return Err(format!(
                    "iteration count {iterations} is out of range (1..={MAX_ITERATIONS})"
                ));
            }
            let salt = b64("salt", salt)?;
            let hash = b64("hash", hash)?;
            if hash.len() != 64 {
                return Err(format!(
                    "a PBKDF2-SHA512 hash has 64 bytes, not {}",
                    hash.len()
                ));
            }
            Ok(Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            })
        }
        ["", "6", salt, hash] => {
            let salt = b64("salt", salt)?;
            let hash = b64("hash", hash)?;
            if hash.len() != 64 {
                return Err(format!("a SHA-512 hash has 64 bytes, not {}", hash.len()));
            }
            Ok(Hash::Sha512 { salt, hash })
        }
        _ => Err("unknown hash format (expected $7$iterations$salt$hash or $6$salt$hash)".into()),
    }
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with mosquitto 2.0.11: `mosquitto_passwd -b pw sensor-1 s3cret`, and "pass word".
    const FILE: &str = "\
# sensors
sensor-1:$7$101$O43on3WTobOD7hor$iB9xuYY7XhO11yl+NpOhpn409FVPEExa0T2/nHqEVx5p0Dd8dx0kkDM+LXkeXSe/8V5Ma2DwCJvI/yMPAtjM0g==

display:$7$101$fRrIjkXdQBnEnYiI$BB2vGb4HusqcHE+Qw94U3+2IuedeFOQo9rJ+O/9VTo4ByXmsL/ZgcwHNAOV/XpAR9Z7dIL/XCSBKZUZP1OJtBA==
";

    #[test]
    fn verifies_mosquitto_passwd_hashes() {
        let p = Passwords::parse(FILE).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p.verify("sensor-1", b"s3cret"));
        assert!(p.verify("display", b"pass word"));
        assert!(!p.verify("sensor-1", b"s3cret "));
        assert!(!p.verify("display", b"s3cret"));
        assert!(!p.verify("nobody", b""));
    }

    #[test]
    fn verifies_legacy_sha512_hashes() {
        let salt = b"0123456789ab";
        let mut d = Sha512::new();
        d.update(b"pw");
        d.update(salt);
        let line = format!("old:$6${}${}\n", B64.encode(salt), B64.encode(d.finalize()));
        let p = Passwords::parse(&line).unwrap();
        assert!(p.verify("old", b"pw"));
        assert!(!p.verify("old", b"px"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = |t: &str| Passwords::parse(t).unwrap_err();
        assert_eq!(e("\n\nnocolon\n").0, 3);
        assert!(e("u:$7$abc$AAAA$AAAA")
            .1
            .contains("iteration count \"abc\""));
        assert!(e("u:$7$0$AAAA$AAAA").1.contains("out of range"));
        assert!(e("u:$7$10$AAAA$AAAA").1.contains("64 bytes"));
        assert!(e("u:$7$10$!!$AAAA").1.contains("not base64"));
        assert!(e("u:plain").1.contains("unknown hash format"));
        assert!(e(":$6$AAAA$AAAA").1.contains("empty username"));
        let dup =
            format!("{}{}", FILE.lines().nth(1).unwrap(), "\n") + FILE.lines().nth(1).unwrap();
        assert!(e(&dup).1.contains("appears twice"));
    }
}
