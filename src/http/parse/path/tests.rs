//! Byte fixtures for request-target normalisation, and its properties.

use proptest::prelude::*;

use super::*;

/// The clean path and the raw query, or a panic naming the fixture.
fn clean(target: &[u8]) -> (String, Option<String>) {
    let mut path = String::from("left over");
    match normalize_path(target, &mut path) {
        Ok(q) => {
            let query = q.map(|r| String::from_utf8_lossy(&target[r]).into_owned());
            (path, query)
        }
        Err(e) => panic!("{:?}: {e}", String::from_utf8_lossy(target)),
    }
}

fn path_of(target: &str) -> String {
    clean(target.as_bytes()).0
}

fn refused(target: &[u8]) -> u16 {
    let mut path = String::with_capacity(64);
    let got = normalize_path(target, &mut path);
    assert!(path.is_empty(), "output cleared on error");
    assert!(path.capacity() >= 64, "buffer kept on error");
    match got {
        Err(e) => e.status,
        Ok(q) => panic!(
            "{:?}: accepted as {path:?} {q:?}",
            String::from_utf8_lossy(target)
        ),
    }
}

#[test]
fn plain_paths_pass_through() {
    assert_eq!(clean(b"/"), ("/".into(), None));
    assert_eq!(path_of("/index.html"), "/index.html");
    assert_eq!(path_of("/v1/hives/42"), "/v1/hives/42");
    assert_eq!(path_of("/a/b/"), "/a/b/");
}

#[test]
fn query_is_split_off_raw() {
    assert_eq!(
        clean(b"/a%20b?x=%20&y=/../"),
        ("/a b".into(), Some("x=%20&y=/../".into()))
    );
    assert_eq!(clean(b"/a?"), ("/a".into(), Some(String::new())));
    assert_eq!(clean(b"/a?b?c"), ("/a".into(), Some("b?c".into())));
    let mut path = String::new();
    assert_eq!(normalize_path(b"/p?q=1", &mut path), Ok(Some(3..6)));
}

#[test]
fn dot_segments_and_empty_segments() {
    assert_eq!(path_of("/a/./b//c/"), "/a/b/c/");
    assert_eq!(path_of("//a///b"), "/a/b");
    assert_eq!(path_of("/a/b/../c"), "/a/c");
    assert_eq!(path_of("/a/b/.."), "/a/");
    assert_eq!(path_of("/a/.."), "/");
    assert_eq!(path_of("/a/."), "/a/");
    assert_eq!(path_of("/."), "/");
    assert_eq!(path_of("/a/../b/../c/./"), "/c/");
    assert_eq!(path_of("/a/.../b"), "/a/.../b");
    assert_eq!(path_of("/a/..b/.c"), "/a/..b/.c");
}

#[test]
fn climbing_above_root_is_400() {
    assert_eq!(refused(b"/a/../../etc/passwd"), 400);
    assert_eq!(refused(b"/.."), 400);
    assert_eq!(refused(b"/../a"), 400);
    assert_eq!(refused(b"/a/b/../../.."), 400);
    assert_eq!(refused(b"//../a"), 400);
}

#[test]
fn encoded_dots_count_as_dots() {
    assert_eq!(refused(b"/a/%2e%2e/%2E%2E/etc/passwd"), 400);
    assert_eq!(refused(b"/%2e%2e"), 400);
    assert_eq!(refused(b"/.%2e/x"), 400);
    assert_eq!(path_of("/a/%2e/b"), "/a/b");
    assert_eq!(path_of("/a/b/%2e%2e"), "/a/");
}

#[test]
fn encoded_slash_is_a_separator() {
    assert_eq!(path_of("/a%2Fb"), "/a/b");
    assert_eq!(path_of("/a%2f%2fb"), "/a/b");
    assert_eq!(path_of("/a/b%2F..%2Fc"), "/a/c");
    assert_eq!(refused(b"/..%2Fetc"), 400);
    assert_eq!(refused(b"/a%2F..%2F..%2Fetc"), 400);
}

#[test]
fn percent_decoding() {
    assert_eq!(path_of("/caf%C3%A9"), "/caf\u{e9}");
    assert_eq!(path_of("/%7Euser"), "/~user");
    assert_eq!(path_of("/100%25"), "/100%");
    assert_eq!(path_of("/a+b"), "/a+b");
}

#[test]
fn bad_percent_encoding_is_400() {
    for t in ["/%", "/%4", "/%zz", "/%4g", "/a%", "/%%41", "/%-1", "/% 1"] {
        assert_eq!(refused(t.as_bytes()), 400, "{t}");
    }
}

#[test]
fn nul_and_control_bytes_are_400() {
    assert_eq!(refused(b"/a%00b"), 400);
    assert_eq!(refused(b"/a%0Ab"), 400);
    assert_eq!(refused(b"/a%0d%0aSet-Cookie:x"), 400);
    assert_eq!(refused(b"/a%7F"), 400);
    assert_eq!(refused(b"/a\x00b"), 400);
    assert_eq!(refused(b"/a\x01"), 400);
}

#[test]
fn invalid_utf8_is_400() {
    assert_eq!(refused(b"/%C3"), 400);
    assert_eq!(refused(b"/%FF%FE"), 400);
    assert_eq!(refused(b"/a\xff"), 400);
    assert_eq!(refused(b"/%C0%AE%C0%AE/x"), 400, "overlong dots");
}

#[test]
fn backslash_is_a_plain_byte() {
    assert_eq!(path_of("/a\\..\\b"), "/a\\..\\b");
    assert_eq!(path_of("/a%5C..%5Cb"), "/a\\..\\b");
    assert_eq!(path_of("/..\\x"), "/..\\x");
}

#[test]
fn asterisk_form() {
    assert_eq!(clean(b"*"), ("*".into(), None));
    assert_eq!(refused(b"*/a"), 400);
    assert_eq!(refused(b"**"), 400);
}

#[test]
fn absolute_form_takes_the_path() {
    assert_eq!(
        clean(b"http://example.com/a/../b?q=1"),
        ("/b".into(), Some("q=1".into()))
    );
    assert_eq!(clean(b"HTTPS://example.com:8443"), ("/".into(), None));
    assert_eq!(
        clean(b"http://[::1]:8080?x"),
        ("/".into(), Some("x".into()))
    );
    let mut path = String::new();
    assert_eq!(
        normalize_path(b"http://h/p?abc", &mut path),
        Ok(Some(11..14))
    );
    assert_eq!(path, "/p");
}

#[test]
fn other_forms_are_400() {
    for t in [
        "",
        "a/b",
        "example.com:443",
        "ftp://h/x",
        "http:/h/x",
        "http://",
        "http:///x",
        "http://user@h/x",
        "http://h h/x",
    ] {
        assert_eq!(refused(t.as_bytes()), 400, "{t}");
    }
}

#[test]
fn double_slash_start_is_an_origin_path() {
    assert_eq!(clean(b"//h/x?"), ("/h/x".into(), Some(String::new())));
}

#[test]
fn fragment_is_400() {
    assert_eq!(refused(b"/a#frag"), 400);
    assert_eq!(refused(b"/a?q#f"), 400);
}

#[test]
fn output_buffer_is_cleared_and_reused() {
    let mut path = String::with_capacity(128);
    normalize_path(b"/first/long/path", &mut path).expect("valid");
    normalize_path(b"/x", &mut path).expect("valid");
    assert_eq!(path, "/x");
    assert!(path.capacity() >= 128);
}

proptest! {
    #[test]
    fn never_panics(target in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut path = String::new();
        let _ = normalize_path(&target, &mut path);
    }

    #[test]
    fn clean_paths_are_canonical(target in "/[a-z./%2Ee]{0,40}") {
        let mut path = String::new();
        if normalize_path(target.as_bytes(), &mut path).is_ok() {
            prop_assert!(path.starts_with('/'));
            prop_assert!(!path.contains("//"));
            prop_assert!(!path.contains("/./") && !path.ends_with("/."));
            prop_assert!(!path.contains("/../") && !path.ends_with("/.."));
            if !path.contains('%') {
                let mut again = String::new();
                prop_assert_eq!(normalize_path(path.as_bytes(), &mut again), Ok(None));
                prop_assert_eq!(again, path);
            }
        }
    }
}
