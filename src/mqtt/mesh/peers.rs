//! What the siblings subscribed to, kept as compactly as the forwarding decision allows.
//!
//! A worker only needs to know which siblings to forward a PUBLISH to, never the siblings'
//! filter texts (a sibling that joins gets its filters from each worker's own tree). Filters
//! without wildcards, the common case (a device's own command topic), are matched by equality,
//! so they are kept as a keyed 64-bit hash per link with a count: about 16 bytes a filter in
//! place of a tree node, its level text and its subscriber list. A colliding hash at worst
//! forwards a message to a sibling with no subscriber for it, which routes it to no one; the
//! count keeps two filters sharing a hash apart when one is unsubscribed. Filters with `+` or
//! `#` go to a subscription tree keyed by link.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use crate::mqtt::codec::QoS;
use crate::mqtt::router::{ClientKey, SubscriptionTree, Unsubscribed};

/// The siblings' filters, by link key.
#[derive(Default)]
pub struct PeerFilters {
    /// Keyed per process, so that no client can choose filters that collide.
    seed: RandomState,
    /// Per link: the hashes of its exact filters, each with how many filters have it.
    exact: HashMap<usize, HashMap<u64, u32, BuildHasherDefault<Prehashed>>>,
    wild: SubscriptionTree,
}

impl PeerFilters {
    /// The sibling on link `key` has a client using `filter`; called once per filter, as the
    /// sibling forwards only a filter's first subscription and last unsubscription.
    pub fn subscribe(&mut self, key: usize, filter: &str) {
        if is_wild(filter) {
            self.wild
                .subscribe(ClientKey(key as u32), filter, QoS::ExactlyOnce);
            return;
        }
        let h = self.seed.hash_one(filter);
        *self.exact.entry(key).or_default().entry(h).or_insert(0) += 1;
    }

    /// The sibling on link `key` has no client using `filter` any more.
    pub fn unsubscribe(&mut self, key: usize, filter: &str) {
        if is_wild(filter) {
            let _: Unsubscribed = self.wild.unsubscribe(ClientKey(key as u32), filter);
            return;
        }
        let h = self.seed.hash_one(filter);
        let Some(set) = self.exact.get_mut(&key) else {
            return;
        };
        if let Some(n) = set.get_mut(&h) {
            *n -= 1;
            if *n == 0 {
                set.remove(&h);
            }
        }
    }

    /// The link `key` is gone, and its filters with it.
    pub fn remove_link(&mut self, key: usize) {
        self.exact.remove(&key);
        self.wild.remove_client(ClientKey(key as u32));
    }

    /// Fills `out` (cleared first) with the link keys whose filters match `topic`, once each.
    pub fn route(&self, topic: &str, routes: &mut Vec<(ClientKey, QoS)>, out: &mut Vec<usize>) {
        out.clear();
        self.wild.route(topic, routes);
        out.extend(routes.iter().map(|&(ClientKey(k), _)| k as usize));
        if self.exact.is_empty() {
            return;
        }
        let h = self.seed.hash_one(topic);
        for (&key, set) in &self.exact {
            if set.contains_key(&h) && !out.contains(&key) {
                out.push(key);
            }
        }
    }
}

/// Whether `filter` has a wildcard level: anything with `+` or `#` is matched by the tree, so
/// that a filter the codec would refuse is still never taken for an exact one.
fn is_wild(filter: &str) -> bool {
    filter.bytes().any(|b| b == b'+' || b == b'#')
}

/// The hasher of a map whose keys are already keyed hashes: passes them through.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(p: &PeerFilters, topic: &str) -> Vec<usize> {
        let (mut routes, mut out) = (Vec::new(), Vec::new());
        p.route(topic, &mut routes, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn exact_and_wildcard_filters_route_to_their_links_once() {
        let mut p = PeerFilters::default();
        p.subscribe(1, "commands/sensor/7");
        p.subscribe(2, "commands/+/7");
        p.subscribe(2, "commands/sensor/7");
        p.subscribe(3, "#");
        assert_eq!(routed(&p, "commands/sensor/7"), [1, 2, 3]);
        assert_eq!(routed(&p, "commands/sensor/8"), [3]);
        assert_eq!(routed(&p, "$SYS/x"), Vec::<usize>::new());
        p.unsubscribe(2, "commands/+/7");
        p.unsubscribe(3, "#");
        assert_eq!(routed(&p, "commands/sensor/7"), [1, 2]);
        p.remove_link(1);
        assert_eq!(routed(&p, "commands/sensor/7"), [2]);
        p.unsubscribe(2, "commands/sensor/7");
        assert!(routed(&p, "commands/sensor/7").is_empty());
    }

    /// Exact filters compare byte for byte ([MQTT-4.7.3-4]): no level is normalised.
    #[test]
    fn exact_filters_match_only_the_same_bytes() {
        let mut p = PeerFilters::default();
        p.subscribe(1, "a/b");
        p.subscribe(1, "/a");
        for topic in ["a/b/", "A/b", "a//b", "a", "a/b/c"] {
            assert!(routed(&p, topic).is_empty(), "{topic}");
        }
        assert_eq!(routed(&p, "/a"), [1]);
    }

    /// A hash shared by two filters of one link is counted: unsubscribing one keeps the other.
    #[test]
    fn a_shared_hash_is_counted() {
        let mut p = PeerFilters::default();
        p.subscribe(1, "t");
        p.subscribe(1, "t");
        p.unsubscribe(1, "t");
        assert_eq!(routed(&p, "t"), [1]);
        p.unsubscribe(1, "t");
        p.unsubscribe(1, "t");
        assert!(routed(&p, "t").is_empty());
    }
}
