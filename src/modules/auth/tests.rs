//! A cycle's [`Auth`]: absent without an `[auth]` section, refused with the file and the reason
//! when its certificates do not load, and telling platform admins from other callers.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::mint::{Claims, Minter};
use super::*;
use crate::core::config::Sections;

const CERT: &str = include_str!("testdata/cert.pem");
const KEY: &str = include_str!("testdata/key.pem");
const NOW: u64 = 1_800_000_000;

fn conf(text: &str, prefix: &Path) -> Conf {
    let mut s = Sections::new();
    s.add::<AuthConf>();
    Conf::parse(text, &prefix.join("conf/bizzy.toml"), prefix, &s).expect("configuration parses")
}

fn auth_conf(certs: &str) -> String {
    format!(
        "[auth]\nfirebase_project_id = \"bizzy-test\"\ncertificates = \"{certs}\"\n\
         admin_uids = [\"boss\"]\n"
    )
}

fn token(uid: &str) -> String {
    let m = Minter::from_pem(KEY, "demo").expect("test key parses");
    m.mint(&Claims {
        project: "bizzy-test",
        uid,
        iat: NOW - 5,
        exp: NOW + 3600,
    })
}

#[test]
fn no_auth_section_means_no_auth() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(Auth::load(&conf("", dir.path())).expect("loads").is_none());
}

#[test]
fn certificates_resolved_against_the_prefix_and_admins_told_apart() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("conf")).expect("conf dir");
    let mut f = std::fs::File::create(dir.path().join("conf/certs.json")).expect("certs file");
    let json = serde_json::json!({ "demo": CERT }).to_string();
    f.write_all(json.as_bytes()).expect("certs written");
    let c = conf(&auth_conf("conf/certs.json"), dir.path());
    let auth = Auth::load(&c).expect("loads").expect("an [auth] section");
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    assert_eq!(auth.caller(&token("boss"), now), Ok(("boss".into(), true)));
    assert_eq!(auth.caller(&token("ann"), now), Ok(("ann".into(), false)));
    assert_eq!(auth.caller("a.b", now), Err(firebase::TokenError::Segments));
}

#[test]
fn missing_certificates_named_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = conf(&auth_conf("conf/missing.json"), dir.path());
    let e = Auth::load(&c).err().expect("refused").to_string();
    let file = dir.path().join("conf/missing.json");
    let want = format!("auth.certificates: {}: cannot read: ", file.display());
    assert!(e.starts_with(&want), "{e}");
}
