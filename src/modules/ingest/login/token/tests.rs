//! The display tokens' rules, without a database.

use sha2::{Digest as _, Sha256};

use super::*;

const PHC: &str = "$pbkdf2-sha256$i=1,l=32$c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn live(hives: &[i64]) -> TokenFound {
    TokenFound::Live {
        secret_hash: PHC.into(),
        hive_ids: hives.to_vec(),
    }
}

fn waiter(ticket: u64) -> Waiter {
    Waiter {
        ticket,
        client_id: "display".into(),
        password: Some(b"pw".to_vec()),
    }
}

#[test]
fn a_token_user_name_names_a_positive_id_or_is_refused() {
    assert_eq!(token_id("token:42"), Some(Some(42)));
    assert_eq!(token_id("token:0"), Some(None));
    assert_eq!(token_id("token:-3"), Some(None));
    assert_eq!(token_id("token:+3"), Some(None));
    assert_eq!(token_id("token:"), Some(None));
    assert_eq!(token_id("token:99999999999999999999"), Some(None));
    assert_eq!(token_id("door-1"), None);
    assert_eq!(username(42), "token:42");
}

#[test]
fn a_display_subscribes_to_its_hives_occupancy_exactly_and_publishes_nothing() {
    let hives = [3, 12];
    for (op, topic, ok) in [
        (Op::Subscribe, "hives/3/occupancy", true),
        (Op::Subscribe, "hives/12/occupancy", true),
        (Op::Subscribe, "hives/4/occupancy", false),
        (Op::Subscribe, "hives/03/occupancy", false),
        (Op::Subscribe, "hives/+/occupancy", false),
        (Op::Subscribe, "hives/#", false),
        (Op::Subscribe, "#", false),
        (Op::Subscribe, "hives/3/occupancy/x", false),
        (Op::Subscribe, "hives/3", false),
        (Op::Subscribe, "commands/sensor/3", false),
        (Op::Publish, "hives/3/occupancy", false),
        (Op::Publish, "sensors/x/counter", false),
        (Op::Receive, "hives/3/occupancy", true),
    ] {
        assert_eq!(token_allows(&hives, op, topic), ok, "{op:?} {topic}");
    }
}

#[test]
fn an_unknown_token_is_looked_up_once_then_verified_then_remembered() {
    let mut t = Tokens::default();
    assert_eq!(t.check(5, Some(b"pw")), Step::Lookup);
    assert!(t.wait(5, waiter(1)));
    assert!(!t.wait(5, waiter(2)), "the second waits");
    assert_eq!(t.looked_up(5, live(&[3])).len(), 2);
    let digest: Digest = Sha256::digest(b"pw").into();
    assert_eq!(
        t.check(5, Some(b"pw")),
        Step::Verify {
            phc: PHC.into(),
            digest
        }
    );
    assert!(t.holds(5, PHC));
    t.verified(5, PHC, digest, true);
    assert_eq!(t.check(5, Some(b"pw")), Step::Allow);
    assert_eq!(t.check(5, None), Step::Refuse(Refusal::BadCredentials));
    assert_eq!(t.hives(5), Some(&[3][..]));
}

#[test]
fn a_revoked_token_is_refused_and_an_unknown_one_not_remembered() {
    let mut t = Tokens::default();
    t.wait(5, waiter(1));
    t.looked_up(5, TokenFound::Revoked);
    assert_eq!(
        t.check(5, Some(b"pw")),
        Step::Refuse(Refusal::NotAuthorised)
    );
    assert_eq!(t.hives(5), None);
    t.wait(6, waiter(2));
    t.looked_up(6, TokenFound::Unknown);
    assert_eq!(
        t.check(6, Some(b"pw")),
        Step::Lookup,
        "it may be created next"
    );
}

#[test]
fn a_notified_token_is_forgotten_and_a_lookup_it_overtook_not_believed() {
    let mut t = Tokens::default();
    t.wait(5, waiter(1));
    t.looked_up(5, live(&[3]));
    t.forget(5);
    assert_eq!(t.check(5, Some(b"pw")), Step::Lookup);
    assert!(
        !t.holds(5, PHC),
        "a verification under way no longer lets it in"
    );
    t.wait(5, waiter(2));
    t.forget(5);
    let waiters = t.looked_up(5, live(&[3]));
    assert_eq!(waiters.len(), 1, "handed back to be asked again");
    assert_eq!(
        t.check(5, Some(b"pw")),
        Step::Lookup,
        "the answer is not kept"
    );
}

#[test]
fn listening_again_forgets_every_token_and_names_them() {
    let mut t = Tokens::default();
    for id in [5, 6] {
        t.wait(id, waiter(1));
        t.looked_up(id, live(&[3]));
    }
    let mut known = t.forget_all();
    known.sort_unstable();
    assert_eq!(known, [5, 6]);
    assert_eq!(t.check(5, Some(b"pw")), Step::Lookup);
}
