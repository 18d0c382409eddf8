//! Tokens minted with a fixed test key and its self-signed certificate (`testdata/`, made once
//! with `openssl req -x509 -newkey rsa:2048`).

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde_json::{json, Value};

use super::*;

const CERT: &str = include_str!("../testdata/cert.pem");
const KEY: &str = include_str!("../testdata/key.pem");
const EC_CERT: &str = include_str!("../testdata/ec-cert.pem");
const PROJECT: &str = "bizzy-test";
const NOW: u64 = 1_800_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn signing_key() -> &'static SigningKey<rsa::sha2::Sha256> {
    static KEY_ONCE: OnceLock<SigningKey<rsa::sha2::Sha256>> = OnceLock::new();
    KEY_ONCE.get_or_init(|| {
        SigningKey::new(RsaPrivateKey::from_pkcs8_pem(KEY).expect("test key parses"))
    })
}

fn certs_file(json: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(json.as_bytes()).expect("temp file written");
    f
}

fn verifier() -> Verifier {
    let f = certs_file(&json!({ "k1": CERT }).to_string());
    Verifier::new(
        PROJECT,
        Certificates::load(f.path()).expect("test certificate loads"),
    )
}

fn claims() -> Value {
    json!({
        "iss": format!("https://securetoken.google.com/{PROJECT}"),
        "aud": PROJECT,
        "exp": NOW + 3600,
        "iat": NOW - 10,
        "auth_time": NOW - 100,
        "sub": "user-1",
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

fn mint_with(header: Value, claims: Value) -> String {
    let input = unsigned(&header, &claims);
    let sig = signing_key().sign(input.as_bytes()).to_bytes();
    format!("{input}.{}", b64(&sig))
}

fn mint(claims: Value) -> String {
    mint_with(json!({ "alg": "RS256", "kid": "k1", "typ": "JWT" }), claims)
}

fn with(key: &str, value: Value) -> Value {
    let mut c = claims();
    c[key] = value;
    c
}

fn refused(token: &str) -> TokenError {
    verifier().verify(token, now()).expect_err("refused")
}

/// HMAC-SHA256 (RFC 2104), to mint the classic key-confusion token.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    block[..key.len().min(64)].copy_from_slice(&key[..key.len().min(64)]);
    if key.len() > 64 {
        block = [0u8; 64];
        block[..32].copy_from_slice(&sha2::Sha256::digest(key));
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = sha2::Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    sha2::Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

#[test]
fn good_token_gives_the_uid() {
    let v = verifier();
    assert_eq!(v.verify(&mint(claims()), now()), Ok(Uid("user-1".into())));
}

#[test]
fn cache_answers_a_token_seen_again_without_rsa() {
    let v = verifier();
    let token = mint(claims());
    assert!(v.verify(&token, now()).is_ok());
    assert!(v.verify(&token, now()).is_ok());
    assert_eq!(v.rsa_checks(), 1);
    let late = now() + Duration::from_secs(3600 + LEEWAY_SECS);
    assert_eq!(v.verify(&token, late), Err(TokenError::Expired));
    assert_eq!(v.verify(&token, late), Err(TokenError::Expired));
    assert_eq!(
        v.rsa_checks(),
        1,
        "an expired cached token costs no RSA check"
    );
    let other = mint(with("sub", json!("user-2")));
    assert_eq!(v.verify(&other, late), Err(TokenError::Expired));
    assert_eq!(v.rsa_checks(), 2, "a token not cached is checked");
}

#[test]
fn cache_stays_bounded() {
    let v = verifier();
    for i in 0..CACHE_CAPACITY as u64 + 5 {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&i.to_le_bytes());
        v.remember(id, Uid("u".into()), NOW + 10, NOW);
    }
    assert!(v.cache.borrow().len() <= CACHE_CAPACITY);
    let later = NOW + 10 + LEEWAY_SECS;
    for i in 0..CACHE_CAPACITY as u64 {
        let mut id = [1u8; 32];
        id[..8].copy_from_slice(&i.to_le_bytes());
        v.remember(id, Uid("fresh".into()), later + 3600, later);
    }
    let cache = v.cache.borrow();
    assert_eq!(cache.len(), CACHE_CAPACITY);
    assert!(cache.values().all(|(uid, _)| uid.as_str() == "fresh"));
}

#[test]
fn alg_none_and_hs256_refused() {
    let none = format!(
        "{}.",
        unsigned(&json!({ "alg": "none", "kid": "k1" }), &claims())
    );
    assert_eq!(refused(&none), TokenError::Algorithm);
    let input = unsigned(&json!({ "alg": "HS256", "kid": "k1" }), &claims());
    let hs = format!(
        "{input}.{}",
        b64(&hmac_sha256(CERT.as_bytes(), input.as_bytes()))
    );
    assert_eq!(refused(&hs), TokenError::Algorithm);
}

#[test]
fn kid_missing_or_unknown_refused() {
    let t = mint_with(json!({ "alg": "RS256" }), claims());
    assert_eq!(refused(&t), TokenError::NoKeyId);
    let t = mint_with(json!({ "alg": "RS256", "kid": "k2" }), claims());
    assert_eq!(refused(&t), TokenError::UnknownKeyId);
}

#[test]
fn flipped_signature_byte_refused() {
    let t = mint(claims());
    let (input, sig) = t.rsplit_once('.').expect("three segments");
    let mut sig = URL_SAFE_NO_PAD.decode(sig).expect("base64");
    sig[10] ^= 1;
    assert_eq!(
        refused(&format!("{input}.{}", b64(&sig))),
        TokenError::Signature
    );
    let other = mint(with("sub", json!("user-2")));
    let (_, other_sig) = other.rsplit_once('.').expect("three segments");
    assert_eq!(
        refused(&format!("{input}.{other_sig}")),
        TokenError::Signature
    );
}

#[test]
fn wrong_claims_refused_each_by_name() {
    let cases = [
        (
            with("iss", json!("https://securetoken.google.com/other")),
            TokenError::Issuer,
        ),
        (with("aud", json!("other")), TokenError::Audience),
        (with("exp", json!(NOW - LEEWAY_SECS)), TokenError::Expired),
        (
            with("iat", json!(NOW + LEEWAY_SECS + 1)),
            TokenError::IssuedInFuture,
        ),
        (
            with("auth_time", json!(NOW + LEEWAY_SECS + 1)),
            TokenError::AuthTimeInFuture,
        ),
        (with("sub", json!("")), TokenError::Subject),
        (with("sub", json!("x".repeat(129))), TokenError::Subject),
        (with("exp", json!("soon")), TokenError::Json),
    ];
    for (claims, want) in cases {
        assert_eq!(refused(&mint(claims)), want);
    }
}

#[test]
fn exp_not_a_whole_unix_second_refused_without_panic() {
    let header = b64(br#"{"alg":"RS256","kid":"k1"}"#);
    let good = claims().to_string();
    let want = format!("\"exp\":{}", NOW + 3600);
    assert!(good.contains(&want), "{good}");
    for exp in [
        "-1",
        "1800003600.5",
        "1.8e9",
        "18446744073709551616",
        "1e400",
        "null",
    ] {
        let body = good.replace(&want, &format!("\"exp\":{exp}"));
        let input = format!("{header}.{}", b64(body.as_bytes()));
        let sig = signing_key().sign(input.as_bytes()).to_bytes();
        let token = format!("{input}.{}", b64(&sig));
        assert_eq!(refused(&token), TokenError::Json, "exp {exp}");
    }
}

#[test]
fn small_clock_skew_tolerated() {
    let v = verifier();
    let t = mint(with("iat", json!(NOW + LEEWAY_SECS)));
    assert!(v.verify(&t, now()).is_ok());
    let t = mint(with("exp", json!(NOW - 1)));
    assert!(v.verify(&t, now()).is_ok());
}

#[test]
fn garbage_and_oversize_refused() {
    assert_eq!(refused(""), TokenError::Segments);
    assert_eq!(refused("a.b"), TokenError::Segments);
    assert_eq!(refused("a.b.c.d"), TokenError::Segments);
    assert_eq!(refused("!!.b.c"), TokenError::Base64);
    assert_eq!(
        refused(&format!("{}.b.c", b64(b"{not json"))),
        TokenError::Json
    );
    let header = b64(br#"{"alg":"RS256","kid":"k1"}"#);
    assert_eq!(refused(&format!("{header}.b.AA")), TokenError::Signature);
    assert_eq!(refused(&format!("{header}.b.")), TokenError::Signature);
    assert_eq!(refused(&format!("{header}.b.!!")), TokenError::Base64);
    assert_eq!(refused(&"a".repeat(MAX_TOKEN_LEN + 1)), TokenError::TooLong);
    assert_eq!(refused("é.é.é"), TokenError::Base64);
}

fn load_err(json: &str) -> String {
    let f = certs_file(json);
    let e = Certificates::load(f.path()).err().expect("refused");
    let text = e.to_string();
    assert!(text.starts_with(&f.path().display().to_string()), "{text}");
    text
}

#[test]
fn certificates_load_errors_name_file_and_reason() {
    assert!(load_err("not json").contains("not a JSON object"));
    assert!(load_err("{}").ends_with(": no certificate"));
    let bad =
        load_err(&json!({ "k1": CERT, "k9": "-----BEGIN CERTIFICATE-----\nAAAA\n" }).to_string());
    assert!(
        bad.contains("key id k9: certificate does not parse"),
        "{bad}"
    );
    let ec = load_err(&json!({ "ec": EC_CERT }).to_string());
    assert!(ec.contains("key id ec: not an RSA public key"), "{ec}");
    let missing = Certificates::load(Path::new("/nonexistent/certs.json")).err();
    assert!(matches!(missing, Some(CertError::Unreadable(..))));
}

#[test]
fn certificates_load_every_key() {
    let f = certs_file(&json!({ "k1": CERT, "k2": CERT }).to_string());
    assert_eq!(Certificates::load(f.path()).map(|c| c.len()).ok(), Some(2));
}
