//! MQTT routing core: which clients a PUBLISH goes to, and which retained messages a new
//! subscription receives.
//!
//! Owns two pure, single-threaded data structures, one of each per worker process:
//! [`SubscriptionTree`] (topic filters to subscribers, with `+` and `#`) and [`RetainedStore`]
//! (the last retained message per topic name). The session layer calls them with topic names and
//! filters the codec has already validated ([MQTT-4.7.1-2], [MQTT-4.7.1-3], [MQTT-4.7.3-1]); an
//! invalid filter is stored harmlessly and matches nothing it should not.
//!
//! Matching follows section 4.7 of the MQTT 3.1.1 standard: levels are split on `/`, an empty
//! level is a level, comparison is byte for byte with no normalisation ([MQTT-4.7.3-4]), `+`
//! matches exactly one level, `#` matches its parent level and everything below, and a filter
//! starting with a wildcard never matches a topic name starting with `$` ([MQTT-4.7.2-1]).
//!
//! Never does I/O, never blocks, never panics on a topic or filter.

mod retained;
mod tree;

pub use retained::{Retained, RetainedStore};
pub use tree::{Subscribed, SubscriptionTree, Unsubscribed};

/// A subscriber, as the session layer numbers its clients (a slab key, say). Small and `Copy` so
/// that a route result is a flat vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientKey(pub u32);

/// Quality of service, the codec's: ordered, so the maximum over overlapping subscriptions is
/// `max` ([MQTT-3.3.5-1]).
pub use crate::mqtt::codec::QoS;

/// Whether the topic name `topic` matches the topic filter `filter` (section 4.7).
///
/// The reference for [`RetainedStore::matching`] and for authorisation rules; the subscription
/// tree gets the same answers without calling it.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let dollar = topic.starts_with('$');
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    let mut first = true;
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return !(first && dollar),
            (Some("+"), Some(_)) if !(first && dollar) => {}
            (Some(f), Some(t)) if f == t && f != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    /// [MQTT-4.7.1-2]: "sport/#" also matches the singular "sport", since # includes the parent
    /// level.
    #[test]
    fn hash_matches_parent_level_mqtt_4_7_1_2() {
        assert!(topic_matches("sport/#", "sport"));
        assert!(topic_matches("sport/#", "sport/"));
        assert!(topic_matches("sport/#", "sport/tennis/player1"));
        assert!(!topic_matches("sport/#", "sports"));
        assert!(topic_matches("#", "sport"));
    }

    /// [MQTT-4.7.1-3]: `+` matches exactly one level, an empty one included.
    #[test]
    fn plus_matches_one_level_mqtt_4_7_1_3() {
        assert!(topic_matches("sport/+", "sport/"));
        assert!(!topic_matches("sport/+", "sport"));
        assert!(!topic_matches("sport/+", "sport/a/b"));
        assert!(topic_matches("+/+", "/finance"));
        assert!(topic_matches("/+", "/finance"));
        assert!(!topic_matches("+", "/finance"));
        assert!(topic_matches("a/+/b", "a//b"));
    }

    /// [MQTT-4.7.2-1]: "The Server MUST NOT match Topic Filters starting with a wildcard character
    /// (# or +) with Topic Names beginning with a $ character."
    #[test]
    fn dollar_topics_and_leading_wildcards_mqtt_4_7_2_1() {
        assert!(!topic_matches("#", "$SYS/x"));
        assert!(!topic_matches("+/x", "$SYS/x"));
        assert!(!topic_matches("+", "$SYS"));
        assert!(topic_matches("$SYS/#", "$SYS/x"));
        assert!(topic_matches("$SYS/+", "$SYS/x"));
        assert!(topic_matches("a/+", "a/$x"));
        assert!(topic_matches("a/#", "a/$x"));
    }

    /// [MQTT-4.7.3-4]: no normalisation; case and slashes count.
    #[test]
    fn no_normalisation_mqtt_4_7_3_4() {
        assert!(!topic_matches("ACCOUNTS", "Accounts"));
        assert!(!topic_matches("/finance", "finance"));
        assert!(!topic_matches("a/b", "a//b"));
        assert!(topic_matches("Accounts payable", "Accounts payable"));
    }
}
