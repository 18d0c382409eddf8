use super::*;

#[test]
fn local_times_are_hh_mm() {
    assert!(local_time("00:00").is_ok());
    assert!(local_time("23:59").is_ok());
    for bad in ["24:00", "12:60", "1:00", "12-00", "ab:cd", "12:000"] {
        assert!(local_time(bad).is_err(), "{bad}");
    }
}

#[test]
fn recent_cursors_round_trip_and_refuse_others() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_000_000_123_456);
    let c = encode_recent(at, 42);
    assert_eq!(decode_recent(&c).unwrap(), (at, 42));
    for bad in [
        "",
        "!!",
        &B64.encode("1.0"),
        &B64.encode("x.1"),
        &B64.encode("01.2"),
    ] {
        assert_eq!(
            decode_recent(bad).unwrap_err().field.as_deref(),
            Some("cursor")
        );
    }
    let p = recent_page(Some(&format!("limit=3&cursor={c}"))).unwrap();
    assert_eq!(
        p,
        RecentPage {
            limit: 3,
            after: Some((at, 42))
        }
    );
    assert!(recent_page(Some("limit=0")).is_err());
}

proptest::proptest! {
    #[test]
    fn no_input_panics_and_bodies_are_refused_with_400(
        method in "(GET|POST|PUT|PATCH|DELETE)",
        path in "/v1/me(/(favorites|recent|notifications|inbox|read|[0-9]{1,20}|[ -~]{0,8})){0,3}",
        query in proptest::option::of("(limit|cursor|unread)=[ -~]{0,12}"),
        body in "[{}\\[\\]\":, a-z0-9_.-]{0,80}",
    ) {
        let caller = super::super::caller::Caller { uid: "u".into(), platform_admin: false };
        let r = super::super::route::route(
            &method, &path, query.as_deref(), body.as_bytes(), Some(&caller),
        );
        if let Err(e) = r {
            proptest::prop_assert!(matches!(e.status, 400 | 404 | 405), "{e}");
        }
    }
}

#[test]
fn unread_is_true_or_false() {
    assert!(!unread(None).unwrap());
    assert!(unread(Some("limit=2&unread=true")).unwrap());
    assert_eq!(
        unread(Some("unread=yes")).unwrap_err().field.as_deref(),
        Some("unread")
    );
}
