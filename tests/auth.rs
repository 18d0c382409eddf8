//! The `[auth]` section against the real binary (issue 10, items 2 and 7): a certificates file
//! that does not load fails `-t` and refuses a reload with the file and the reason while the old
//! workers keep serving; a good one is picked up by the next cycle; `bizzy token` prints tokens
//! the verifier accepts; `scripts/make-demo-auth` makes files a server starts with.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bizzy::modules::auth::firebase::{Certificates, TokenError, Verifier};

const CERT: &str = include_str!("../src/modules/auth/testdata/cert.pem");
const KEY: &str = "src/modules/auth/testdata/key.pem";

fn certs_json(kid: &str) -> String {
    serde_json::json!({ kid: CERT }).to_string()
}

fn auth_conf(port: u16) -> String {
    let auth = "\n[auth]\nfirebase_project_id = \"bizzy-test\"\n\
                certificates = \"conf/firebase-certs.json\"\nadmin_uids = [\"boss\"]\n";
    basic_conf(port, "", "", "") + auth
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn token(key: &Path, kid: &str, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["token", "--key"])
        .arg(key)
        .args(["--kid", kid, "--project", "bizzy-test", "--uid", "boss"])
        .args(extra)
        .output()
        .expect("bizzy token runs")
}

#[test]
fn test_option_names_a_missing_certificates_file() {
    let port = free_port();
    let s = Server::prepare(port, &auth_conf(port));
    let o = s.run(&["-t"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    let file = s.path("conf/firebase-certs.json");
    let want = format!("auth.certificates: {}: cannot read", file.display());
    assert!(e.contains(&want), "{e}");
    assert!(e.contains("test failed"), "{e}");
}

#[test]
fn test_option_names_a_malformed_certificates_file_and_key_id() {
    let port = free_port();
    let s = Server::prepare(port, &auth_conf(port));
    let file = s.path("conf/firebase-certs.json");
    write_file(&file, b"[1, 2]");
    let e = stderr(&s.run(&["-t"]));
    assert!(
        e.contains(&format!("{}: not a JSON object", file.display())),
        "{e}"
    );
    write_file(
        &file,
        br#"{"k1": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}"#,
    );
    let o = s.run(&["-t"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    let want = format!("{}: key id k1: certificate does not parse", file.display());
    assert!(e.contains(&want), "{e}");
    write_file(&file, certs_json("k1").as_bytes());
    let o = s.run(&["-t"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn reload_with_a_broken_certificates_file_is_refused_and_a_good_one_taken() {
    let port = free_port();
    let s = Server::prepare(port, &auth_conf(port));
    let file = s.path("conf/firebase-certs.json");
    write_file(&file, certs_json("k1").as_bytes());
    let s = s.launch();
    let workers = s.wait_workers(2, &[]);
    write_file(&file, b"{\"k1\": \"not pem\"}");
    s.signal(libc::SIGHUP);
    let refused = |s: &Server| {
        let log = s.error_log();
        log.contains("keeping the running configuration") && log.contains("key id k1")
    };
    assert!(
        eventually(Duration::from_secs(5), || refused(&s)),
        "{}",
        s.error_log()
    );
    assert!(s.error_log().contains(&file.display().to_string()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(s.addr(), "/health").text(), "ok\n");
    let mut now = s.workers();
    now.sort_unstable();
    let mut was = workers.clone();
    was.sort_unstable();
    assert_eq!(now, was, "the old workers keep serving");
    write_file(&file, certs_json("k2").as_bytes());
    s.signal(libc::SIGHUP);
    s.wait_workers(2, &workers);
    assert_eq!(get(s.addr(), "/health").text(), "ok\n");
}

#[test]
fn token_command_prints_a_token_the_verifier_accepts() {
    let o = token(Path::new(KEY), "k1", &["--ttl", "10m"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let jwt = String::from_utf8(o.stdout)
        .expect("UTF-8")
        .trim()
        .to_string();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url"))
            .expect("JSON claims");
    assert_eq!(claims["iss"], "https://securetoken.google.com/bizzy-test");
    assert_eq!(claims["aud"], "bizzy-test");
    assert_eq!(claims["sub"], "boss");
    let ttl = claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat");
    assert_eq!(ttl, 600);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("certs.json");
    write_file(&file, certs_json("k1").as_bytes());
    let v = Verifier::new("bizzy-test", Certificates::load(&file).expect("loads"));
    let uid = v.verify(&jwt, SystemTime::now()).expect("verifies");
    assert_eq!(uid.as_str(), "boss");
    let old = token(Path::new(KEY), "k1", &["--iat-offset", "-2h"]).stdout;
    let old = String::from_utf8(old).expect("UTF-8");
    let e = v.verify(old.trim(), SystemTime::now());
    assert_eq!(e, Err(TokenError::Expired));
}

#[test]
fn token_command_names_a_bad_key_file() {
    let o = token(Path::new("/nonexistent/key.pem"), "k1", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/key.pem: cannot read"));
    let cert = Path::new("src/modules/auth/testdata/cert.pem");
    let o = token(cert, "k1", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not an RSA private key"),
        "{}",
        stderr(&o)
    );
    let o = Command::new(BIN)
        .args(["token", "--kid"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn make_demo_auth_output_loads_and_signs() {
    let port = free_port();
    let s = Server::prepare(port, &auth_conf(port));
    for _ in 0..2 {
        let o = Command::new("scripts/make-demo-auth")
            .arg(s.path("conf"))
            .output()
            .expect("script runs");
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = s.run(&["-t"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = token(&s.path("conf/demo-key.pem"), "demo", &[]);
    let jwt = String::from_utf8(o.stdout).expect("UTF-8");
    let certs = Certificates::load(&s.path("conf/firebase-certs.json")).expect("loads");
    let v = Verifier::new("bizzy-test", certs);
    assert!(v.verify(jwt.trim(), SystemTime::now()).is_ok());
}
