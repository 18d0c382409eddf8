//! Subscription tree tests: one per matching rule (named after the standard's statements), the
//! bookkeeping the pub/sub layer relies on, memory per subscription, and a property test against
//! a naive matcher.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

const C1: ClientKey = ClientKey(1);
const C2: ClientKey = ClientKey(2);
const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
const Q2: QoS = QoS::ExactlyOnce;

fn routed(tree: &SubscriptionTree, topic: &str) -> Vec<(ClientKey, QoS)> {
    let mut out = Vec::new();
    tree.route(topic, &mut out);
    out.sort();
    out
}

fn tree_of(subs: &[(ClientKey, &str, QoS)]) -> SubscriptionTree {
    let mut tree = SubscriptionTree::new();
    for &(c, f, q) in subs {
        tree.subscribe(c, f, q);
    }
    tree
}

/// [MQTT-3.3.5-1] "the Server MUST deliver the message to the Client respecting the maximum QoS
/// of all the matching subscriptions": one delivery at QoS 2 (mosquitto issue #3319).
#[test]
fn overlap_delivers_once_at_max_qos_mqtt_3_3_5_1() {
    let tree = tree_of(&[
        (C1, "a/+", Q1),
        (C1, "a/#", Q2),
        (C1, "a/b", Q0),
        (C2, "a/b", Q0),
    ]);
    assert_eq!(routed(&tree, "a/b"), [(C1, Q2), (C2, Q0)]);
    assert_eq!(routed(&tree, "a/c"), [(C1, Q2)]);
    assert_eq!(routed(&tree, "a"), [(C1, Q2)]);
}

/// [MQTT-3.8.4-3] an identical filter replaces the existing subscription (its QoS).
#[test]
fn identical_filter_replaces_qos_mqtt_3_8_4_3() {
    let mut tree = SubscriptionTree::new();
    assert_eq!(tree.subscribe(C1, "a/b", Q2), Subscribed::FirstForFilter);
    assert_eq!(tree.subscribe(C1, "a/b", Q0), Subscribed::Replaced);
    assert_eq!(tree.subscribe(C2, "a/b", Q1), Subscribed::Added);
    assert_eq!(routed(&tree, "a/b"), [(C1, Q0), (C2, Q1)]);
    assert_eq!(tree.subscription_count(), 2);
    assert_eq!(tree.filter_count(), 1);
}

/// [MQTT-4.7.1-2] `#` matches the parent level and any number of levels below.
#[test]
fn hash_matches_parent_and_below_mqtt_4_7_1_2() {
    let tree = tree_of(&[(C1, "sport/#", Q1), (C2, "#", Q0)]);
    for topic in [
        "sport",
        "sport/",
        "sport/tennis",
        "sport/tennis/player1/ranking",
    ] {
        assert_eq!(routed(&tree, topic), [(C1, Q1), (C2, Q0)], "{topic}");
    }
    assert_eq!(routed(&tree, "sports"), [(C2, Q0)]);
}

/// [MQTT-4.7.1-3] `+` matches exactly one level, an empty level included.
#[test]
fn plus_matches_exactly_one_level_mqtt_4_7_1_3() {
    let tree = tree_of(&[(C1, "sport/+", Q1), (C2, "+/+", Q0)]);
    assert_eq!(routed(&tree, "sport/"), [(C1, Q1), (C2, Q0)]);
    assert_eq!(routed(&tree, "sport/tennis"), [(C1, Q1), (C2, Q0)]);
    assert_eq!(routed(&tree, "sport"), []);
    assert_eq!(routed(&tree, "sport/tennis/x"), []);
    assert_eq!(routed(&tree, "/finance"), [(C2, Q0)]);
}

/// [MQTT-4.7.2-1] "The Server MUST NOT match Topic Filters starting with a wildcard character (#
/// or +) with Topic Names beginning with a $ character."
#[test]
fn dollar_topics_skip_leading_wildcards_mqtt_4_7_2_1() {
    let tree = tree_of(&[
        (C1, "#", Q0),
        (C1, "+/x", Q0),
        (C1, "+", Q0),
        (C2, "$SYS/#", Q1),
    ]);
    assert_eq!(routed(&tree, "$SYS/x"), [(C2, Q1)]);
    assert_eq!(routed(&tree, "$SYS"), [(C2, Q1)]);
    assert_eq!(routed(&tree, "a/x"), [(C1, Q0)]);
    let tree = tree_of(&[(C1, "a/+", Q0), (C2, "$SYS/+", Q0)]);
    assert_eq!(routed(&tree, "a/$x"), [(C1, Q0)]);
    assert_eq!(routed(&tree, "$SYS/x"), [(C2, Q0)]);
}

/// [MQTT-4.7.3-4] no normalisation: case, leading, trailing and doubled slashes all count.
#[test]
fn levels_compare_byte_for_byte_mqtt_4_7_3_4() {
    let tree = tree_of(&[(C1, "a//b", Q0), (C2, "/finance", Q0), (C2, "ACCOUNTS", Q1)]);
    assert_eq!(routed(&tree, "a//b"), [(C1, Q0)]);
    assert_eq!(routed(&tree, "a/b"), []);
    assert_eq!(routed(&tree, "finance"), []);
    assert_eq!(routed(&tree, "/finance"), [(C2, Q0)]);
    assert_eq!(routed(&tree, "Accounts"), []);
}

/// [MQTT-3.10.4-4] unsubscribe compares filters character by character; the tree reports the
/// last subscriber leaving so the pub/sub layer can forward the unsubscription.
#[test]
fn unsubscribe_exact_filter_mqtt_3_10_4_4() {
    let mut tree = tree_of(&[(C1, "a/+", Q1), (C2, "a/+", Q1)]);
    assert_eq!(tree.unsubscribe(C1, "a/#"), Unsubscribed::NotSubscribed);
    assert_eq!(tree.unsubscribe(C1, "a/b"), Unsubscribed::NotSubscribed);
    assert_eq!(tree.unsubscribe(C1, "a/+"), Unsubscribed::Removed);
    assert_eq!(tree.unsubscribe(C1, "a/+"), Unsubscribed::NotSubscribed);
    assert_eq!(routed(&tree, "a/b"), [(C2, Q1)]);
    assert_eq!(tree.unsubscribe(C2, "a/+"), Unsubscribed::LastForFilter);
    assert_eq!(routed(&tree, "a/b"), []);
    assert_eq!(tree.node_count(), 1);
    assert_eq!(tree.client_count(), 0);
}

#[test]
fn remove_client_drops_all_its_subscriptions_and_prunes() {
    let mut tree = tree_of(&[
        (C1, "a/b", Q0),
        (C1, "a/#", Q1),
        (C1, "+", Q2),
        (C2, "a/b", Q0),
    ]);
    let mut unused = tree.remove_client(C1);
    unused.sort();
    assert_eq!(unused, [Box::from("+"), Box::from("a/#")]);
    assert_eq!(routed(&tree, "a/b"), [(C2, Q0)]);
    assert_eq!(tree.node_count(), 3);
    assert!(tree.remove_client(C1).is_empty());
    assert_eq!(tree.remove_client(C2), [Box::from("a/b")]);
    assert_eq!(tree.node_count(), 1);
    assert_eq!((tree.subscription_count(), tree.filter_count()), (0, 0));
}

#[test]
fn for_each_filter_lists_filters_in_use() {
    let tree = tree_of(&[
        (C1, "a/b", Q0),
        (C2, "a/b", Q0),
        (C1, "#", Q0),
        (C2, "/+/", Q0),
    ]);
    let mut seen = BTreeSet::new();
    tree.for_each_filter(|f| {
        seen.insert(f.to_string());
    });
    assert_eq!(
        seen,
        BTreeSet::from(["#".into(), "/+/".into(), "a/b".into()])
    );
}

/// A node with many literal children switches to a hash map and back without losing any.
#[test]
fn wide_nodes_switch_representation() {
    let mut tree = SubscriptionTree::new();
    for i in 0..100u32 {
        tree.subscribe(ClientKey(i), &format!("c/{i}"), Q1);
    }
    assert_eq!(routed(&tree, "c/42"), [(ClientKey(42), Q1)]);
    for i in 0..97u32 {
        tree.remove_client(ClientKey(i));
    }
    assert_eq!(routed(&tree, "c/98"), [(ClientKey(98), Q1)]);
    assert_eq!(tree.node_count(), 5);
}

/// Deep topics and filters are walked with explicit stacks, not recursion.
#[test]
fn deep_topics_do_not_recurse() {
    let deep = "x/".repeat(30_000) + "x";
    let mut tree = tree_of(&[(C1, &deep, Q0), (C2, "x/#", Q1)]);
    assert_eq!(routed(&tree, &deep), [(C1, Q0), (C2, Q1)]);
    assert_eq!(tree.unsubscribe(C1, &deep), Unsubscribed::LastForFilter);
    assert_eq!(tree.node_count(), 3);
}

/// 10,000 clients with one subscription each: one node per client beyond the shared prefix, and
/// a node small enough for the 1.5 KiB-per-client budget (the bench measures real allocations).
#[test]
fn memory_per_subscription_is_small() {
    let mut tree = SubscriptionTree::new();
    for i in 0..10_000u32 {
        tree.subscribe(ClientKey(i), &format!("commands/sensor/dev-{i:04}"), Q1);
    }
    assert_eq!(tree.node_count(), 10_003);
    assert!(
        std::mem::size_of::<Node>() <= 64,
        "{}",
        std::mem::size_of::<Node>()
    );
}

/// The reference matcher: filter and topic as level lists, section 4.7 read literally.
fn naive_matches(filter: &[&str], topic: &[&str]) -> bool {
    match (filter.split_first(), topic.split_first()) {
        (Some((&"#", _)), _) => true,
        (Some((&"+", f)), Some((_, t))) => naive_matches(f, t),
        (Some((f0, f)), Some((t0, t))) => f0 == t0 && naive_matches(f, t),
        (None, None) => true,
        _ => false,
    }
}

fn naive_route(model: &BTreeMap<(u32, String), QoS>, topic: &str) -> Vec<(ClientKey, QoS)> {
    let t: Vec<&str> = topic.split('/').collect();
    let mut best: BTreeMap<u32, QoS> = BTreeMap::new();
    for ((client, filter), &qos) in model {
        let f: Vec<&str> = filter.split('/').collect();
        let wild_first = f[0] == "+" || f[0] == "#";
        if (t[0].starts_with('$') && wild_first) || !naive_matches(&f, &t) {
            continue;
        }
        let e = best.entry(*client).or_insert(qos);
        *e = (*e).max(qos);
    }
    best.into_iter().map(|(c, q)| (ClientKey(c), q)).collect()
}

/// Live nodes a model needs: the root and one per distinct level prefix of its filters.
fn expected_nodes(model: &BTreeMap<(u32, String), QoS>) -> usize {
    let mut prefixes = BTreeSet::new();
    for (_, filter) in model.keys() {
        let levels: Vec<&str> = filter.split('/').collect();
        for n in 1..=levels.len() {
            prefixes.insert(levels[..n].join("/"));
        }
    }
    prefixes.len() + 1
}

#[derive(Clone, Debug)]
enum Op {
    Sub(u32, String, QoS),
    Unsub(u32, String),
    Remove(u32),
}

fn filter_strategy() -> impl Strategy<Value = String> {
    let level = prop::sample::select(vec!["a", "b", "", "$x", "+"]);
    (prop::collection::vec(level, 1..4), any::<bool>()).prop_map(|(mut v, hash)| {
        if hash {
            v.push("#");
        }
        v.join("/")
    })
}

fn topic_strategy() -> impl Strategy<Value = String> {
    let level = prop::sample::select(vec!["a", "b", "", "$x"]);
    prop::collection::vec(level, 1..5).prop_map(|v| v.join("/"))
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let qos = prop::sample::select(vec![Q0, Q1, Q2]);
    prop_oneof![
        4 => (0..4u32, filter_strategy(), qos).prop_map(|(c, f, q)| Op::Sub(c, f, q)),
        2 => (0..4u32, filter_strategy()).prop_map(|(c, f)| Op::Unsub(c, f)),
        1 => (0..4u32).prop_map(Op::Remove),
    ]
}

fn apply(tree: &mut SubscriptionTree, model: &mut BTreeMap<(u32, String), QoS>, op: &Op) {
    match op {
        Op::Sub(c, f, q) => {
            let first = !model.keys().any(|(_, mf)| mf == f);
            let out = tree.subscribe(ClientKey(*c), f, *q);
            let was = model.insert((*c, f.clone()), *q);
            let want = match (was, first) {
                (Some(_), _) => Subscribed::Replaced,
                (None, true) => Subscribed::FirstForFilter,
                (None, false) => Subscribed::Added,
            };
            assert_eq!(out, want);
        }
        Op::Unsub(c, f) => {
            let out = tree.unsubscribe(ClientKey(*c), f);
            let had = model.remove(&(*c, f.clone())).is_some();
            let last = !model.keys().any(|(_, mf)| mf == f);
            let want = match (had, last) {
                (false, _) => Unsubscribed::NotSubscribed,
                (true, true) => Unsubscribed::LastForFilter,
                (true, false) => Unsubscribed::Removed,
            };
            assert_eq!(out, want);
        }
        Op::Remove(c) => {
            tree.remove_client(ClientKey(*c));
            model.retain(|(mc, _), _| mc != c);
        }
    }
}

proptest! {
    /// `route` agrees with the naive matcher after any sequence of changes, and the tree holds
    /// exactly the nodes its live filters need (empty nodes are pruned).
    #[test]
    fn route_agrees_with_naive_matcher(
        ops in prop::collection::vec(op_strategy(), 1..40),
        topics in prop::collection::vec(topic_strategy(), 1..12),
    ) {
        let mut tree = SubscriptionTree::new();
        let mut model = BTreeMap::new();
        for op in &ops {
            apply(&mut tree, &mut model, op);
            prop_assert_eq!(tree.node_count(), expected_nodes(&model));
            prop_assert_eq!(tree.subscription_count(), model.len());
        }
        for topic in &topics {
            prop_assert_eq!(routed(&tree, topic), naive_route(&model, topic), "topic {:?}", topic);
        }
        let mut filters = BTreeSet::new();
        tree.for_each_filter(|f| { filters.insert(f.to_string()); });
        let want: BTreeSet<String> = model.keys().map(|(_, f)| f.clone()).collect();
        prop_assert_eq!(filters, want);
        for c in 0..4 {
            tree.remove_client(ClientKey(c));
        }
        prop_assert_eq!(tree.node_count(), 1);
        prop_assert_eq!(tree.filter_count(), 0);
    }
}
