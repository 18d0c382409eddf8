//! Firebase-shaped ID tokens signed with a local RSA key, for demos and tests: the same header
//! and claims Google's tokens carry (DESIGN.md section 8), so [`super::firebase::Verifier`]
//! accepts them when the matching certificate is configured. `bizzy token` ([`cli`]) prints one.
//!
//! Nothing on the server's path calls this: a production server only verifies.

pub mod cli;

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde_json::json;

/// Why no token could be minted.
#[derive(Debug)]
pub enum MintError {
    /// The key file could not be read.
    Unreadable(PathBuf, std::io::Error),
    /// The key file holds no RSA private key in PEM (PKCS#8 or PKCS#1).
    BadKey(PathBuf),
}

impl fmt::Display for MintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MintError::Unreadable(p, e) => write!(f, "{}: cannot read: {e}", p.display()),
            MintError::BadKey(p) => write!(
                f,
                "{}: not an RSA private key in PEM (\"BEGIN PRIVATE KEY\" or \"BEGIN RSA PRIVATE KEY\")",
                p.display()
            ),
        }
    }
}

impl std::error::Error for MintError {}

/// What a token says: the project it is for, who it names, and when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims<'a> {
    /// The Firebase project: `aud`, and the end of `iss`.
    pub project: &'a str,
    /// The uid: `sub`.
    pub uid: &'a str,
    /// Issued at, in Unix seconds: `iat` and `auth_time`.
    pub iat: u64,
    /// Expires at, in Unix seconds: `exp`.
    pub exp: u64,
}

/// An RSA private key and the key id its certificate is published under.
pub struct Minter {
    key: SigningKey<Sha256>,
    kid: String,
}

impl Minter {
    /// A minter from PEM text (PKCS#8 or PKCS#1); `None` if it holds no RSA private key.
    pub fn from_pem(pem: &str, kid: &str) -> Option<Minter> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .ok()?;
        Some(Minter {
            key: SigningKey::new(key),
            kid: kid.to_string(),
        })
    }

    /// A minter from the PEM file at `path`.
    pub fn load(path: &Path, kid: &str) -> Result<Minter, MintError> {
        let pem =
            std::fs::read_to_string(path).map_err(|e| MintError::Unreadable(path.into(), e))?;
        Minter::from_pem(&pem, kid).ok_or_else(|| MintError::BadKey(path.into()))
    }

    /// The signed token: `header.claims.signature`, each unpadded base64url.
    pub fn mint(&self, c: &Claims<'_>) -> String {
        let header = json!({ "alg": "RS256", "kid": self.kid, "typ": "JWT" });
        let claims = json!({
            "iss": format!("https://securetoken.google.com/{}", c.project),
            "aud": c.project,
            "sub": c.uid,
            "user_id": c.uid,
            "iat": c.iat,
            "exp": c.exp,
            "auth_time": c.iat,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.key.sign(input.as_bytes()).to_bytes();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

#[cfg(test)]
mod tests;
