//! Hashed secrets in the PHC string format: how a sensor's MQTT password is stored
//! (`sensor.secret_hash`). The business API hashes the secret it issues at registration with
//! [`hash_secret`]; the sensor authority checks a CONNECT's password with [`Phc::verify`].
//!
//! ```text
//! $pbkdf2-sha256$i=10000,l=32$<salt>$<hash>     what hash_secret writes (16-byte random salt)
//! $pbkdf2-sha512$i=N,l=64$<salt>$<hash>         also verified
//! $pbkdf2-sha256$N$<salt>$<hash>                passlib's spelling of the same, also verified
//! ```
//!
//! Salt and hash are base64 without padding (standard alphabet; passlib's `.` for `+` is
//! accepted). `l`, when given, must be the hash's length.
//!
//! The iteration count: a sensor's secret is made by the server (random, at least 128 bits), so
//! stretching adds nothing against guessing it; the hash only has to be one-way and salted.
//! [`ITERATIONS`] keeps a verification near a millisecond of CPU, so that a worker that verifies
//! a reconnect storm of a thousand sensors (off its event loop) is done within about a second.
//! Verification is CPU work: never on the event loop.

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use sha2::{Sha256, Sha512};

use super::passwd::constant_time_eq;

/// The iteration count of the hashes [`hash_secret`] makes.
pub const ITERATIONS: u32 = 10_000;
/// The most iterations a stored hash may ask for: past that it is refused as malformed (a typo
/// must not make every login of a sensor take seconds).
pub const MAX_ITERATIONS: u32 = 1_000_000;
/// Salt bytes of the hashes [`hash_secret`] makes.
const SALT_LEN: usize = 16;

/// The PRF of a PBKDF2 hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prf {
    Sha256,
    Sha512,
}

/// A parsed PBKDF2 PHC string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phc {
    pub prf: Prf,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Why a PHC string is not one this server can check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhcError {
    /// Not `$id$params$salt$hash`.
    Shape,
    /// An algorithm other than `pbkdf2-sha256` or `pbkdf2-sha512`.
    Algorithm(String),
    /// A parameter that is missing, unknown or out of range.
    Param(String),
    /// Salt or hash that is not base64, or of an unusable length.
    Encoding(&'static str),
}

impl std::fmt::Display for PhcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PhcError::Shape => f.write_str("not a PHC string ($id$params$salt$hash)"),
            PhcError::Algorithm(a) => write!(f, "unknown algorithm \"{a}\""),
            PhcError::Param(p) => write!(f, "parameter {p}"),
            PhcError::Encoding(what) => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for PhcError {}

impl Phc {
    /// Parses `$pbkdf2-sha256$i=N[,l=L]$salt$hash` (or sha512, or passlib's `$N$`).
    pub fn parse(s: &str) -> Result<Phc, PhcError> {
        let parts: Vec<&str> = s.split('$').collect();
        let ["", id, params, salt, hash] = parts.as_slice() else {
            return Err(PhcError::Shape);
        };
        let prf = match *id {
            "pbkdf2-sha256" => Prf::Sha256,
            "pbkdf2-sha512" => Prf::Sha512,
            other => return Err(PhcError::Algorithm(other.to_string())),
        };
        let salt = decode(salt).ok_or(PhcError::Encoding("the salt is not base64"))?;
        let hash = decode(hash).ok_or(PhcError::Encoding("the hash is not base64"))?;
        if salt.is_empty() {
            return Err(PhcError::Encoding("the salt is empty"));
        }
        if !(16..=64).contains(&hash.len()) {
            return Err(PhcError::Encoding("the hash is not 16 to 64 bytes"));
        }
        let iterations = parse_params(params, hash.len())?;
        Ok(Phc {
            prf,
            iterations,
            salt,
            hash,
        })
    }

    /// Whether `secret` is the one this hash was made from (compared in constant time).
    pub fn verify(&self, secret: &[u8]) -> bool {
        let mut out = vec![0u8; self.hash.len()];
        match self.prf {
            Prf::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(secret, &self.salt, self.iterations, &mut out)
            }
            Prf::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(secret, &self.salt, self.iterations, &mut out)
            }
        }
        constant_time_eq(&out, &self.hash)
    }
}

/// The PHC string of `secret`: PBKDF2-HMAC-SHA256, [`ITERATIONS`] rounds, a random salt from
/// the operating system, 32 bytes of hash.
pub fn hash_secret(secret: &[u8]) -> String {
    let mut salt = [0u8; SALT_LEN];
    os_random(&mut salt);
    let mut hash = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(secret, &salt, ITERATIONS, &mut hash);
    format!(
        "$pbkdf2-sha256$i={ITERATIONS},l=32${}${}",
        B64.encode(salt),
        B64.encode(hash)
    )
}

/// Whether `secret` matches the PHC string `phc`; a malformed `phc` matches nothing.
pub fn verify(phc: &str, secret: &[u8]) -> bool {
    Phc::parse(phc).is_ok_and(|p| p.verify(secret))
}

/// `i=N` (required) and `l=L` (optional, the hash length), or passlib's bare `N`.
fn parse_params(params: &str, hash_len: usize) -> Result<u32, PhcError> {
    let rounds = |v: &str| match v.parse::<u32>() {
        Ok(n) if (1..=MAX_ITERATIONS).contains(&n) => Ok(n),
        _ => Err(PhcError::Param(format!(
            "i=\"{v}\" is not 1..={MAX_ITERATIONS}"
        ))),
    };
    if !params.is_empty() && params.bytes().all(|b| b.is_ascii_digit()) {
        return rounds(params);
    }
    let mut iterations = None;
    for kv in params.split(',') {
        match kv.split_once('=') {
            Some(("i", v)) => iterations = Some(rounds(v)?),
            Some(("l", v)) if v.parse::<usize>().ok() == Some(hash_len) => {}
            Some(("l", v)) => {
                return Err(PhcError::Param(format!(
                    "l={v} is not the hash's length ({hash_len})"
                )))
            }
            _ => return Err(PhcError::Param(format!("\"{kv}\" is unknown"))),
        }
    }
    iterations.ok_or_else(|| PhcError::Param("i (the iteration count) is missing".into()))
}

/// Base64 without padding (tolerating padding, and passlib's `.` for `+`).
fn decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=').replace('.', "+");
    B64.decode(s).ok()
}

/// Fills `buf` from the kernel's random source (getrandom(2), which waits only until the pool is
/// first initialised, early at boot).
pub fn os_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe `rest`, a live, writable slice.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert!(
                e.kind() == std::io::ErrorKind::Interrupted,
                "getrandom(2) failed: {e} (it cannot, on Linux 3.17 and later, with a valid buffer)"
            );
            continue;
        }
        filled += n as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_sha256_matches_the_published_vectors() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256, "passwd" / "salt", 1 round, 64 bytes.
        let dk = hex(
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
             49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783",
        );
        let rfc = format!(
            "$pbkdf2-sha256$i=1,l=64${}${}",
            B64.encode(b"salt"),
            B64.encode(dk)
        );
        assert!(verify(&rfc, b"passwd"));
        assert!(!verify(&rfc, b"passwe"));
        // "password" / "salt", 2 rounds, 20 bytes (the common PBKDF2-HMAC-SHA256 vectors).
        let p = Phc {
            prf: Prf::Sha256,
            iterations: 2,
            salt: b"salt".to_vec(),
            hash: hex("ae4d0c95af6b46d32d0adff928f06dd02a303f8e"),
        };
        assert!(p.verify(b"password"));
    }

    #[test]
    fn a_hash_made_here_verifies_its_secret_only() {
        let h = hash_secret(b"door-1-secret");
        assert!(h.starts_with("$pbkdf2-sha256$i=10000,l=32$"), "{h}");
        assert!(verify(&h, b"door-1-secret"));
        assert!(!verify(&h, b"door-1-secreT"));
        assert!(!verify(&h, b""));
        assert_ne!(h, hash_secret(b"door-1-secret"), "a fresh salt each time");
        let p = Phc::parse(&h).unwrap();
        assert_eq!((p.iterations, p.salt.len(), p.hash.len()), (10_000, 16, 32));
    }

    #[test]
    fn sha512_and_passlib_spellings_verify() {
        let mut hash = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha512>(b"s3cret", b"0123456789abcdef", 50, &mut hash);
        let salt = B64.encode(b"0123456789abcdef");
        let phc = format!("$pbkdf2-sha512$i=50,l=64${salt}${}", B64.encode(hash));
        assert!(verify(&phc, b"s3cret"));
        assert!(!verify(&phc, b"s3cre"));
        let passlib = format!(
            "$pbkdf2-sha512$50${}${}",
            salt.replace('+', "."),
            B64.encode(hash).replace('+', ".")
        );
        assert!(verify(&passlib, b"s3cret"), "{passlib}");
    }

    #[test]
    fn malformed_strings_are_refused_with_a_reason() {
        let e = |s: &str| Phc::parse(s).unwrap_err();
        let ok_hash = B64.encode([7u8; 32]);
        assert_eq!(e("plain"), PhcError::Shape);
        assert_eq!(
            e(&format!("$pbkdf2$i=1$c2FsdA${ok_hash}")),
            PhcError::Algorithm("pbkdf2".into())
        );
        assert!(matches!(
            e(&format!("$pbkdf2-sha256$i=0$c2FsdA${ok_hash}")),
            PhcError::Param(_)
        ));
        assert!(matches!(
            e(&format!("$pbkdf2-sha256$i=2000000$c2FsdA${ok_hash}")),
            PhcError::Param(_)
        ));
        assert!(matches!(
            e(&format!("$pbkdf2-sha256$l=32$c2FsdA${ok_hash}")),
            PhcError::Param(_)
        ));
        assert!(matches!(
            e(&format!("$pbkdf2-sha256$i=1,l=31$c2FsdA${ok_hash}")),
            PhcError::Param(_)
        ));
        assert!(matches!(
            e(&format!("$pbkdf2-sha256$i=1,x=2$c2FsdA${ok_hash}")),
            PhcError::Param(_)
        ));
        assert!(matches!(
            e(&format!("$pbkdf2-sha256$i=1$!!${ok_hash}")),
            PhcError::Encoding(_)
        ));
        assert!(matches!(
            e("$pbkdf2-sha256$i=1$c2FsdA$aGFzaA"),
            PhcError::Encoding(_)
        ));
        assert!(
            !verify("$pbkdf2-sha256$i=1$c2FsdA$aGFzaA", b""),
            "malformed: no match"
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
