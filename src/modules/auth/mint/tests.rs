//! Tokens minted with the committed test key verify against its certificate, and only under the
//! key id the certificate is published with.

use std::ffi::OsString;
use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use super::cli::{parse, UsageError};
use super::*;
use crate::modules::auth::firebase::{Certificates, TokenError, Verifier};

const CERT: &str = include_str!("../testdata/cert.pem");
const KEY: &str = include_str!("../testdata/key.pem");
const NOW: u64 = 1_800_000_000;

fn verifier(kid: &str) -> Verifier {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    let json = serde_json::json!({ kid: CERT }).to_string();
    f.write_all(json.as_bytes()).expect("temp file written");
    let certs = Certificates::load(f.path()).expect("test certificate loads");
    Verifier::new("bizzy-test", certs)
}

fn token(kid: &str, iat: u64) -> String {
    let m = Minter::from_pem(KEY, kid).expect("test key parses");
    m.mint(&Claims {
        project: "bizzy-test",
        uid: "user-1",
        iat,
        exp: iat + 3600,
    })
}

#[test]
fn minted_token_verifies_against_the_matching_certificate() {
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let uid = verifier("demo").verify(&token("demo", NOW - 5), now);
    assert_eq!(uid.expect("verifies").as_str(), "user-1");
}

#[test]
fn minted_token_under_another_kid_is_refused() {
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let e = verifier("demo").verify(&token("other", NOW - 5), now);
    assert_eq!(e, Err(TokenError::UnknownKeyId));
}

#[test]
fn minted_token_expires_after_its_ttl() {
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let e = verifier("demo").verify(&token("demo", NOW - 7200), now);
    assert_eq!(e, Err(TokenError::Expired));
}

#[test]
fn key_files_that_hold_no_rsa_key_are_refused_by_name() {
    assert!(Minter::from_pem(CERT, "k").is_none());
    let missing = Path::new("/nonexistent/demo-key.pem");
    let e = Minter::load(missing, "k").err().expect("refused");
    assert!(e
        .to_string()
        .starts_with("/nonexistent/demo-key.pem: cannot read"));
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(b"not a key").expect("temp file written");
    let e = Minter::load(f.path(), "k").err().expect("refused");
    assert!(matches!(e, MintError::BadKey(_)), "{e}");
}

fn args(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

#[test]
fn command_line_parses_durations_and_signed_offsets() {
    let o = parse(&args(&[
        "--key",
        "k.pem",
        "--kid",
        "demo",
        "--project",
        "p",
        "--uid",
        "u",
        "--ttl",
        "2m",
        "--iat-offset",
        "-2h",
    ]))
    .expect("parses");
    assert_eq!(o.ttl, Duration::from_secs(120));
    assert_eq!(o.iat_offset, -7200);
    let o = parse(&args(&[
        "--key",
        "k",
        "--kid",
        "d",
        "--project",
        "p",
        "--uid",
        "u",
    ]));
    assert_eq!(o.expect("parses").ttl, Duration::from_secs(3600));
}

#[test]
fn command_line_errors_name_the_option() {
    let e = parse(&args(&["--key", "k", "--kid", "d", "--project", "p"]));
    assert_eq!(e, Err(UsageError::Missing("--uid")));
    let e = parse(&args(&["--key"]));
    assert_eq!(e, Err(UsageError::NeedsValue("--key".into())));
    let e = parse(&args(&["--ttl", "1x"])).expect_err("refused");
    assert_eq!(e.to_string(), "--ttl: \"1x\" is not a duration");
    let e = parse(&args(&["--bogus"]));
    assert!(matches!(e, Err(UsageError::Invalid(_))));
}
