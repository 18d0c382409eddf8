//! The login rules of the worker's copy, without a database.

use super::*;

const PHC: &str = "$pbkdf2-sha256$i=1,l=32$c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const NEW_PHC: &str = "$pbkdf2-sha256$i=2,l=32$c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn live(phc: &str) -> Found {
    Found::Live {
        secret_hash: phc.into(),
        hive_id: 7,
    }
}

fn waiter(ticket: u64, client_id: &str, password: &[u8]) -> Waiter {
    Waiter {
        ticket,
        client_id: client_id.into(),
        password: Some(password.to_vec()),
    }
}

fn digest(p: &[u8]) -> Digest {
    Sha256::digest(p).into()
}

/// What `check` says for door-1 logging in as itself with `password`, as a CONNECT comes.
fn check(t: &Table, password: &[u8]) -> Step {
    t.check("door-1", "door-1", Some(password), true)
}

#[test]
fn an_unknown_device_is_looked_up_once_for_every_connect_waiting() {
    let mut t = Table::default();
    assert_eq!(check(&t, b"pw"), Step::Lookup);
    assert!(
        t.wait("door-1", waiter(1, "door-1", b"pw")),
        "the first asks"
    );
    assert!(
        !t.wait("door-1", waiter(2, "door-1", b"pw2")),
        "the second waits"
    );
    let waiters = t.looked_up("door-1", live(PHC));
    assert_eq!(waiters.iter().map(|w| w.ticket).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(t.hive("door-1"), Some(7));
    assert!(
        t.lookup_failed("door-1").is_empty(),
        "nothing waits any more"
    );
}

#[test]
fn a_verified_password_is_remembered_and_a_bad_one_too() {
    let mut t = Table::default();
    t.looked_up("door-1", live(PHC));
    assert_eq!(
        check(&t, b"right"),
        Step::Verify {
            phc: PHC.into(),
            digest: digest(b"right")
        },
        "first time: PBKDF2, off the loop"
    );
    t.verified("door-1", PHC, digest(b"right"), true);
    t.verified("door-1", PHC, digest(b"wrong"), false);
    assert_eq!(check(&t, b"right"), Step::Allow);
    assert_eq!(check(&t, b"wrong"), Step::Refuse(Refusal::BadCredentials));
    assert!(
        matches!(check(&t, b"other"), Step::Verify { .. }),
        "a third password is checked"
    );
}

#[test]
fn a_sensor_logs_in_as_itself_with_a_password() {
    let mut t = Table::default();
    t.looked_up("door-1", live(PHC));
    t.verified("door-1", PHC, digest(b"pw"), true);
    assert_eq!(
        t.check("door-1", "auto-1-0-1", Some(b"pw"), true),
        Step::Refuse(Refusal::IdentifierRejected),
        "the client id is the device id"
    );
    assert_eq!(
        t.check("door-1", "door-1", None, true),
        Step::Refuse(Refusal::BadCredentials)
    );
    t.looked_up("door-2", Found::Deleted);
    assert_eq!(
        t.check("door-2", "door-2", Some(b"pw"), true),
        Step::Refuse(Refusal::NotAuthorised),
        "a deleted sensor"
    );
    t.looked_up("door-2", Found::Unknown);
    assert_eq!(t.check("door-2", "door-2", Some(b"pw"), true), Step::Lookup);
}

#[test]
fn a_notification_makes_the_entry_stale_and_a_new_hash_forgets_passwords() {
    let mut t = Table::default();
    t.looked_up("door-1", live(PHC));
    t.verified("door-1", PHC, digest(b"pw"), true);
    t.notified(Some("door-1"));
    assert_eq!(check(&t, b"pw"), Step::Lookup, "looked up again");
    assert_eq!(
        t.check("door-1", "door-1", Some(b"pw"), false),
        Step::Allow,
        "waiters of a lookup take its answer"
    );
    t.looked_up("door-1", live(PHC));
    assert_eq!(check(&t, b"pw"), Step::Allow, "same hash: still remembered");
    t.notified(Some("door-1"));
    t.looked_up("door-1", live(NEW_PHC));
    assert!(
        matches!(check(&t, b"pw"), Step::Verify { phc, .. } if phc == NEW_PHC),
        "new hash: checked again"
    );
    t.verified("door-1", PHC, digest(b"pw"), true);
    assert!(
        matches!(check(&t, b"pw"), Step::Verify { .. }),
        "a check against the old hash is not remembered"
    );
}

#[test]
fn a_lookup_overtaken_by_a_notification_is_kept_stale() {
    let mut t = Table::default();
    t.wait("door-1", waiter(1, "door-1", b"pw"));
    t.notified(Some("door-1"));
    assert_eq!(t.looked_up("door-1", live(PHC)).len(), 1);
    assert_eq!(check(&t, b"pw"), Step::Lookup);
}

#[test]
fn a_read_of_the_table_keeps_stale_what_changed_while_it_ran() {
    let mut t = Table::default();
    t.looked_up("door-1", live(PHC));
    t.verified("door-1", PHC, digest(b"pw"), true);
    t.load_asked();
    t.notified(Some("door-2"));
    t.loaded(vec![
        ("door-1".into(), live(PHC)),
        ("door-2".into(), live(PHC)),
        ("door-3".into(), Found::Deleted),
    ]);
    assert_eq!(check(&t, b"pw"), Step::Allow, "unchanged: remembered");
    assert_eq!(t.check("door-2", "door-2", Some(b"x"), true), Step::Lookup);
    assert_eq!(
        t.check("door-3", "door-3", Some(b"x"), true),
        Step::Refuse(Refusal::NotAuthorised)
    );
    t.load_asked();
    t.notified(None);
    t.loaded(vec![("door-1".into(), live(PHC))]);
    assert_eq!(check(&t, b"pw"), Step::Lookup, "all notified: all stale");
    assert_eq!(t.len(), 1, "what the table no longer has is gone");
    t.load_asked();
    t.loaded(vec![("door-1".into(), live(PHC))]);
    assert_eq!(check(&t, b"pw"), Step::Allow, "a later read is fresh");
}

#[test]
fn sensor_rights_are_assumed_until_the_table_is_read() {
    let mut t = Table::default();
    assert!(t.is_sensor("anyone"), "unknown yet: the narrower rights");
    t.load_asked();
    t.loaded(vec![
        ("door-1".into(), live(PHC)),
        ("old".into(), Found::Deleted),
    ]);
    assert!(t.is_sensor("door-1"));
    assert!(
        t.is_sensor("old"),
        "a deleted sensor's session keeps its limits"
    );
    assert!(!t.is_sensor("anyone"));
    t.notified(Some("door-1"));
    assert!(t.is_sensor("door-1"), "stale is still a sensor");
}

#[test]
fn a_sensor_publishes_under_its_topics_and_subscribes_to_its_commands_only() {
    let yes = [
        (Op::Publish, "sensors/door-1/counter"),
        (Op::Publish, "sensors/door-1/status"),
        (Op::Publish, "sensors/door-1/x/y"),
        (Op::Subscribe, "commands/sensor/door-1"),
        (Op::Receive, "commands/sensor/door-1"),
    ];
    let no = [
        (Op::Publish, "sensors/door-2/counter"),
        (Op::Publish, "sensors/door-10/counter"),
        (Op::Publish, "sensors/door-1"),
        (Op::Publish, "public/door-1"),
        (Op::Subscribe, "commands/sensor/door-2"),
        (Op::Subscribe, "commands/sensor/+"),
        (Op::Subscribe, "commands/sensor/#"),
        (Op::Subscribe, "commands/sensor/door-1/x"),
        (Op::Subscribe, "sensors/door-1/counter"),
        (Op::Subscribe, "#"),
    ];
    for (op, topic) in yes {
        assert!(sensor_allows("door-1", op, topic), "{op:?} {topic}");
    }
    for (op, topic) in no {
        assert!(!sensor_allows("door-1", op, topic), "{op:?} {topic}");
    }
}

#[test]
fn a_read_of_the_table_names_the_live_logins_it_changed() {
    let mut t = Table::default();
    t.load_asked();
    t.loaded(
        ["door-1", "door-2", "door-3", "door-4", "door-5"]
            .iter()
            .map(|d| (d.to_string(), live(PHC)))
            .chain([("old".to_string(), Found::Deleted)])
            .collect(),
    );
    t.load_asked();
    let mut changed = t.loaded(vec![
        ("door-1".into(), live(PHC)),
        ("door-2".into(), live(NEW_PHC)),
        (
            "door-3".into(),
            Found::Live {
                secret_hash: PHC.into(),
                hive_id: 8,
            },
        ),
        ("door-4".into(), Found::Deleted),
        ("old".into(), live(PHC)),
    ]);
    changed.sort();
    assert_eq!(
        changed,
        ["door-2", "door-3", "door-4", "door-5"],
        "new hash, new hive, deleted, gone; not the unchanged one, nor one revived"
    );
}
