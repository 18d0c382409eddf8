//! Retained messages: the last retained message per topic name, and the lookup a new
//! subscription needs ([MQTT-3.3.1-5], [MQTT-3.3.1-6]).
//!
//! Kept in a `BTreeMap` ordered by topic, so that a filter's literal levels before its first
//! wildcard narrow the search to one key range: a filter without wildcards is one lookup,
//! `sensors/+/counter` scans only topics under `sensors`, and only a filter starting with a
//! wildcard scans the whole store.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use super::{topic_matches, QoS};

/// A retained message as delivered on subscribe. Cloning it is cheap (two reference counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retained {
    /// The topic name it was published to.
    pub topic: Arc<str>,
    /// Never empty: an empty retained payload deletes instead ([MQTT-3.3.1-11]).
    pub payload: Bytes,
    /// The QoS it was published with, stored with it ([MQTT-3.3.1-5]).
    pub qos: QoS,
}

/// The retained messages of one worker, keyed by topic name.
#[derive(Default)]
pub struct RetainedStore {
    map: BTreeMap<Arc<str>, Retained>,
}

impl RetainedStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a PUBLISH with RETAIN set: it replaces the topic's previous retained message, of any
    /// QoS ([MQTT-3.3.1-5], [MQTT-3.3.1-7]); an empty payload removes it and is not stored
    /// ([MQTT-3.3.1-10], [MQTT-3.3.1-11]).
    pub fn retain(&mut self, topic: &str, payload: Bytes, qos: QoS) {
        if payload.is_empty() {
            self.map.remove(topic);
            return;
        }
        if let Some(old) = self.map.get_mut(topic) {
            old.payload = payload;
            old.qos = qos;
            return;
        }
        let topic: Arc<str> = topic.into();
        let msg = Retained {
            topic: Arc::clone(&topic),
            payload,
            qos,
        };
        self.map.insert(topic, msg);
    }

    /// Appends to `out` the retained messages whose topics match `filter`, for delivery on a new
    /// subscription ([MQTT-3.3.1-6]); `$` topics only for filters not starting with a wildcard
    /// ([MQTT-4.7.2-1]). In topic order.
    pub fn matching(&self, filter: &str, out: &mut Vec<Retained>) {
        let Some(prefix) = literal_prefix(filter) else {
            out.extend(self.map.get(filter).cloned());
            return;
        };
        let range = self
            .map
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded));
        for (topic, msg) in range {
            if !topic.starts_with(prefix) {
                break;
            }
            if topic_matches(filter, topic) {
                out.push(msg.clone());
            }
        }
    }

    /// The retained message of exactly `topic`, if any.
    pub fn get(&self, topic: &str) -> Option<&Retained> {
        self.map.get(topic)
    }

    /// Messages held, for `/metrics`.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The text every topic matching `filter` starts with: its levels before the first wildcard,
/// without the separator before the wildcard (`sport/#` also matches `sport`). `None` if the
/// filter has no wildcard level.
fn literal_prefix(filter: &str) -> Option<&str> {
    let mut start = 0;
    for level in filter.split('/') {
        if level == "+" || level == "#" {
            let before = &filter[..start];
            return Some(before.strip_suffix('/').unwrap_or(before));
        }
        start += level.len() + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(topics: &[&str]) -> RetainedStore {
        let mut s = RetainedStore::new();
        for t in topics {
            s.retain(t, Bytes::copy_from_slice(t.as_bytes()), QoS::AtLeastOnce);
        }
        s
    }

    fn topics(s: &RetainedStore, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        s.matching(filter, &mut out);
        out.iter().map(|m| m.topic.to_string()).collect()
    }

    #[test]
    fn literal_prefix_stops_before_the_first_wildcard() {
        assert_eq!(literal_prefix("a/b"), None);
        assert_eq!(literal_prefix("sport/#"), Some("sport"));
        assert_eq!(literal_prefix("a/+/c"), Some("a"));
        assert_eq!(literal_prefix("a//+"), Some("a/"));
        assert_eq!(literal_prefix("#"), Some(""));
        assert_eq!(literal_prefix("+/x"), Some(""));
        assert_eq!(literal_prefix("/+"), Some(""));
    }

    /// [MQTT-3.3.1-5] store message and QoS; [MQTT-3.3.1-7] a new one (QoS 0 too) replaces it.
    #[test]
    fn retain_replaces_mqtt_3_3_1_5_and_3_3_1_7() {
        let mut s = RetainedStore::new();
        s.retain("a/b", Bytes::from_static(b"one"), QoS::ExactlyOnce);
        s.retain("a/b", Bytes::from_static(b"two"), QoS::AtMostOnce);
        assert_eq!(s.len(), 1);
        let m = s.get("a/b").expect("retained");
        assert_eq!((&m.payload[..], m.qos), (&b"two"[..], QoS::AtMostOnce));
    }

    /// [MQTT-3.3.1-10] an empty retained payload removes the topic's message; [MQTT-3.3.1-11] it
    /// is not stored itself.
    #[test]
    fn empty_payload_deletes_mqtt_3_3_1_10_and_3_3_1_11() {
        let mut s = store(&["a/b", "a/c"]);
        s.retain("a/b", Bytes::new(), QoS::AtLeastOnce);
        assert_eq!(s.len(), 1);
        assert!(s.get("a/b").is_none());
        s.retain("x", Bytes::new(), QoS::AtMostOnce);
        assert_eq!(s.len(), 1);
        assert!(s.get("x").is_none());
    }

    /// [MQTT-3.3.1-6] the retained message of every matching topic is found for a new
    /// subscription.
    #[test]
    fn matching_finds_each_matching_topic_mqtt_3_3_1_6() {
        let s = store(&[
            "sport",
            "sport/tennis",
            "sports",
            "sport/tennis/p1",
            "a//b",
            "a/b",
        ]);
        assert_eq!(
            topics(&s, "sport/#"),
            ["sport", "sport/tennis", "sport/tennis/p1"]
        );
        assert_eq!(topics(&s, "sport/+"), ["sport/tennis"]);
        assert_eq!(topics(&s, "sport"), ["sport"]);
        assert_eq!(topics(&s, "a/+/b"), ["a//b"]);
        assert_eq!(topics(&s, "+/b"), ["a/b"]);
        assert_eq!(topics(&s, "nothing/#"), Vec::<String>::new());
        assert_eq!(s.len(), 6);
    }

    /// [MQTT-4.7.2-1] leading wildcards do not see `$` topics; a `$` filter does.
    #[test]
    fn matching_dollar_topics_mqtt_4_7_2_1() {
        let s = store(&["$SYS/uptime", "a"]);
        assert_eq!(topics(&s, "#"), ["a"]);
        assert_eq!(topics(&s, "+/uptime"), Vec::<String>::new());
        assert_eq!(topics(&s, "$SYS/#"), ["$SYS/uptime"]);
        assert_eq!(topics(&s, "$SYS/uptime"), ["$SYS/uptime"]);
    }
}
