//! Firebase ID tokens verified offline (DESIGN.md section 8): the certificates Google publishes
//! are loaded once per cycle ([`Certificates::load`]), and [`Verifier::verify`] checks a token's
//! RS256 signature and claims against them without asking Google anything.
//!
//! A [`Verifier`] belongs to one worker's event loop: RSA verification is CPU work, so tokens
//! already verified are kept in a small cache keyed by their SHA-256, and a token seen again
//! costs a hash and a map lookup. It never blocks and never panics on input.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier as _;
use rsa::RsaPublicKey;
use serde::Deserialize;
use sha2::Digest;
use x509_cert::der::{DecodePem, Encode};
use x509_cert::Certificate;

/// Longest token accepted; Firebase ID tokens are about 1 KiB.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Clock difference tolerated on `exp`, `iat` and `auth_time`, in seconds.
const LEEWAY_SECS: u64 = 60;
/// Longest `sub` Firebase issues.
const MAX_SUB_CHARS: usize = 128;
/// Verified tokens kept; past this the expired ones go, then all of them.
const CACHE_CAPACITY: usize = 1024;

/// A Firebase user id: the verified token's `sub`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Uid(String);

impl Uid {
    /// The uid as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Uid> for String {
    fn from(uid: Uid) -> String {
        uid.0
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a certificates file was refused; shown by `bizzy -t` and a refused reload.
#[derive(Debug)]
pub enum CertError {
    /// The file could not be read.
    Unreadable(PathBuf, std::io::Error),
    /// The file is not a JSON object of key id to PEM text.
    NotJson(PathBuf, serde_json::Error),
    /// The certificate under this key id does not parse.
    BadCertificate(PathBuf, String, String),
    /// The certificate under this key id holds no RSA key.
    NotRsa(PathBuf, String),
    /// The file holds no certificate at all.
    Empty(PathBuf),
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::Unreadable(p, e) => write!(f, "{}: cannot read: {e}", p.display()),
            CertError::NotJson(p, e) => {
                write!(
                    f,
                    "{}: not a JSON object of key id to PEM: {e}",
                    p.display()
                )
            }
            CertError::BadCertificate(p, kid, why) => {
                write!(
                    f,
                    "{}: key id {kid}: certificate does not parse: {why}",
                    p.display()
                )
            }
            CertError::NotRsa(p, kid) => {
                write!(f, "{}: key id {kid}: not an RSA public key", p.display())
            }
            CertError::Empty(p) => write!(f, "{}: no certificate", p.display()),
        }
    }
}

impl std::error::Error for CertError {}

/// The RSA public keys of Google's token signing certificates, by key id.
pub struct Certificates {
    keys: HashMap<String, VerifyingKey<rsa::sha2::Sha256>>,
}

impl Certificates {
    /// Reads the JSON Google publishes: `{"kid": "-----BEGIN CERTIFICATE-----\n...", ...}`.
    pub fn load(path: &Path) -> Result<Certificates, CertError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| CertError::Unreadable(path.into(), e))?;
        let pems: BTreeMap<String, String> =
            serde_json::from_str(&text).map_err(|e| CertError::NotJson(path.into(), e))?;
        if pems.is_empty() {
            return Err(CertError::Empty(path.into()));
        }
        let mut keys = HashMap::with_capacity(pems.len());
        for (kid, pem) in pems {
            let key = rsa_key(&pem).map_err(|e| e.into_cert_error(path, &kid))?;
            keys.insert(kid, VerifyingKey::new(key));
        }
        Ok(Certificates { keys })
    }

    /// How many keys were loaded.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key was loaded (never, after a successful [`Certificates::load`]).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Why one certificate gave no key, before the file and key id are known.
enum KeyError {
    Parse(String),
    NotRsa,
}

impl KeyError {
    fn into_cert_error(self, path: &Path, kid: &str) -> CertError {
        match self {
            KeyError::Parse(why) => CertError::BadCertificate(path.into(), kid.into(), why),
            KeyError::NotRsa => CertError::NotRsa(path.into(), kid.into()),
        }
    }
}

/// The RSA public key of one PEM certificate.
fn rsa_key(pem: &str) -> Result<RsaPublicKey, KeyError> {
    let cert = Certificate::from_pem(pem.as_bytes()).map_err(|e| KeyError::Parse(e.to_string()))?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
        return Err(KeyError::NotRsa);
    }
    let der = spki.to_der().map_err(|e| KeyError::Parse(e.to_string()))?;
    RsaPublicKey::from_public_key_der(&der).map_err(|e| KeyError::Parse(e.to_string()))
}

/// Why a token was refused; each Display is short, for a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`].
    TooLong,
    /// Not three dot-separated segments.
    Segments,
    /// A segment is not unpadded base64url.
    Base64,
    /// The header or claims are not the JSON expected.
    Json,
    /// The header's `alg` is not `RS256`.
    Algorithm,
    /// The header has no `kid`.
    NoKeyId,
    /// The header's `kid` is not among the certificates.
    UnknownKeyId,
    /// The RS256 signature does not match.
    Signature,
    /// `iss` is not this project's issuer.
    Issuer,
    /// `aud` is not this project.
    Audience,
    /// `exp` is past.
    Expired,
    /// `iat` is in the future.
    IssuedInFuture,
    /// `auth_time` is in the future.
    AuthTimeInFuture,
    /// `sub` is empty or longer than 128 characters.
    Subject,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::TooLong => "token too long",
            TokenError::Segments => "token not in three segments",
            TokenError::Base64 => "token segment not base64url",
            TokenError::Json => "token header or claims malformed",
            TokenError::Algorithm => "token alg not RS256",
            TokenError::NoKeyId => "token without kid",
            TokenError::UnknownKeyId => "token kid unknown",
            TokenError::Signature => "token signature invalid",
            TokenError::Issuer => "token iss wrong",
            TokenError::Audience => "token aud wrong",
            TokenError::Expired => "token expired",
            TokenError::IssuedInFuture => "token iat in the future",
            TokenError::AuthTimeInFuture => "token auth_time in the future",
            TokenError::Subject => "token sub empty or too long",
        })
    }
}

impl std::error::Error for TokenError {}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    exp: u64,
    iat: u64,
    auth_time: u64,
    sub: String,
}

/// Verifies the ID tokens of one Firebase project; one per worker, rebuilt with the cycle.
pub struct Verifier {
    project: String,
    issuer: String,
    certs: Certificates,
    cache: RefCell<HashMap<[u8; 32], (Uid, u64)>>,
    rsa_checks: Cell<u64>,
}

impl Verifier {
    /// A verifier for `project`'s tokens, signed by one of `certs`.
    pub fn new(project: &str, certs: Certificates) -> Verifier {
        Verifier {
            project: project.to_string(),
            issuer: format!("https://securetoken.google.com/{project}"),
            certs,
            cache: RefCell::new(HashMap::new()),
            rsa_checks: Cell::new(0),
        }
    }

    /// How many RSA signatures were checked (tokens not answered by the cache).
    pub fn rsa_checks(&self) -> u64 {
        self.rsa_checks.get()
    }

    /// The uid of a valid token at time `now`, or why it is refused.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Uid, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut id = [0u8; 32];
        id.copy_from_slice(&sha2::Sha256::digest(token.as_bytes()));
        if let Some((uid, exp)) = self.cache.borrow().get(&id) {
            // Signature and claims were checked when it was cached: only time can refuse it now,
            // so an expired token a client keeps sending costs no RSA check either.
            return if expired(*exp, now) {
                Err(TokenError::Expired)
            } else {
                Ok(uid.clone())
            };
        }
        let (uid, exp) = self.verify_uncached(token, now)?;
        self.remember(id, uid.clone(), exp, now);
        Ok(uid)
    }

    /// Signature and claims, the slow way.
    fn verify_uncached(&self, token: &str, now: u64) -> Result<(Uid, u64), TokenError> {
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Segments);
        };
        let header: Header = decode_json(head)?;
        if header.alg != "RS256" {
            return Err(TokenError::Algorithm);
        }
        let kid = header.kid.ok_or(TokenError::NoKeyId)?;
        let key = self.certs.keys.get(&kid).ok_or(TokenError::UnknownKeyId)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Base64)?;
        let sig = Signature::try_from(sig.as_slice()).map_err(|_| TokenError::Signature)?;
        self.rsa_checks.set(self.rsa_checks.get() + 1);
        let signed = &token[..head.len() + 1 + body.len()];
        key.verify(signed.as_bytes(), &sig)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = decode_json(body)?;
        self.check_claims(&claims, now)?;
        Ok((Uid(claims.sub), claims.exp))
    }

    fn check_claims(&self, c: &Claims, now: u64) -> Result<(), TokenError> {
        if c.iss != self.issuer {
            return Err(TokenError::Issuer);
        }
        if c.aud != self.project {
            return Err(TokenError::Audience);
        }
        if expired(c.exp, now) {
            return Err(TokenError::Expired);
        }
        if c.iat > now + LEEWAY_SECS {
            return Err(TokenError::IssuedInFuture);
        }
        if c.auth_time > now + LEEWAY_SECS {
            return Err(TokenError::AuthTimeInFuture);
        }
        if c.sub.is_empty() || c.sub.chars().count() > MAX_SUB_CHARS {
            return Err(TokenError::Subject);
        }
        Ok(())
    }

    /// Keeps a verified token; a full cache first drops the expired, then everything.
    fn remember(&self, id: [u8; 32], uid: Uid, exp: u64, now: u64) {
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, (_, exp)| !expired(*exp, now));
        }
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(id, (uid, exp));
    }
}

/// Whether a token with this `exp` is past it at `now`, leeway included.
fn expired(exp: u64, now: u64) -> bool {
    now >= exp.saturating_add(LEEWAY_SECS)
}

fn decode_json<T: for<'de> Deserialize<'de>>(segment: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Base64)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Json)
}

#[cfg(test)]
mod tests;
