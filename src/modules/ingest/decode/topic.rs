//! Sensor topics (PROTOCOL.md, general rules and sections 1-5): `sensors/{device_id}/counter`,
//! `.../event`, `.../status` from a sensor, and `commands/sensor/{device_id}` (its configuration,
//! from the server). A device id is 1..64 characters of `[A-Za-z0-9_-]`. Anything else is not a
//! sensor topic: [`SensorTopic::parse`] says `None`, which is not a malformed payload.

use std::fmt;

/// Longest device id.
pub const DEVICE_ID_MAX: usize = 64;

/// Which of a sensor's topics a message came on, hence its payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// `sensors/{id}/counter`: a legacy or v2 counter report (sections 1, 2).
    Counter,
    /// `sensors/{id}/event`: 1..64 events (section 3).
    Event,
    /// `sensors/{id}/status`: a status message (section 4).
    Status,
    /// `commands/sensor/{id}`: a configuration, server -> sensor (section 5).
    Configuration,
}

impl Channel {
    /// `counter`, `event`, `status` or `configuration`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Counter => "counter",
            Channel::Event => "event",
            Channel::Status => "status",
            Channel::Configuration => "configuration",
        }
    }

    /// A topic a sensor publishes on (every channel but the configuration).
    pub fn sent_by_sensor(self) -> bool {
        self != Channel::Configuration
    }
}

/// A sensor topic, borrowing the device id from the topic text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SensorTopic<'a> {
    pub device_id: &'a str,
    pub channel: Channel,
}

impl<'a> SensorTopic<'a> {
    /// The sensor topic `topic` is, if it is one.
    pub fn parse(topic: &'a str) -> Option<SensorTopic<'a>> {
        if let Some(id) = topic.strip_prefix("commands/sensor/") {
            return valid_device_id(id).then_some(SensorTopic {
                device_id: id,
                channel: Channel::Configuration,
            });
        }
        let rest = topic.strip_prefix("sensors/")?;
        let (device_id, leaf) = rest.split_once('/')?;
        let channel = match leaf {
            "counter" => Channel::Counter,
            "event" => Channel::Event,
            "status" => Channel::Status,
            _ => return None,
        };
        valid_device_id(device_id).then_some(SensorTopic { device_id, channel })
    }
}

/// The topic text, as [`SensorTopic::parse`] reads it.
impl fmt::Display for SensorTopic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.channel {
            Channel::Configuration => write!(f, "commands/sensor/{}", self.device_id),
            c => write!(f, "sensors/{}/{}", self.device_id, c.as_str()),
        }
    }
}

/// 1..=64 characters of `[A-Za-z0-9_-]`.
pub fn valid_device_id(id: &str) -> bool {
    (1..=DEVICE_ID_MAX).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(topic: &str) -> Option<(&str, Channel)> {
        SensorTopic::parse(topic).map(|t| (t.device_id, t.channel))
    }

    #[test]
    fn the_four_topics() {
        assert_eq!(
            parsed("sensors/door-1/counter"),
            Some(("door-1", Channel::Counter))
        );
        assert_eq!(
            parsed("sensors/A_b-9/event"),
            Some(("A_b-9", Channel::Event))
        );
        assert_eq!(parsed("sensors/x/status"), Some(("x", Channel::Status)));
        assert_eq!(
            parsed("commands/sensor/x"),
            Some(("x", Channel::Configuration))
        );
        for t in [
            "sensors/door-1/counter",
            "sensors/x/event",
            "sensors/x/status",
            "commands/sensor/x",
        ] {
            assert_eq!(
                SensorTopic::parse(t).map(|s| s.to_string()).as_deref(),
                Some(t)
            );
        }
    }

    #[test]
    fn device_id_is_1_to_64_of_the_allowed_characters() {
        let longest = "a".repeat(DEVICE_ID_MAX);
        assert!(valid_device_id(&longest));
        assert!(!valid_device_id(&format!("{longest}a")));
        assert!(!valid_device_id(""));
        for bad in ["a.b", "a b", "a+", "a#", "é", "a/b"] {
            assert!(!valid_device_id(bad), "{bad}");
        }
    }

    #[test]
    fn anything_else_is_not_a_sensor_topic() {
        for t in [
            "",
            "sensors",
            "sensors/",
            "sensors//counter",
            "sensors/x/counter/",
            "sensors/x/counters",
            "sensors/x/y/counter",
            "sensors/+/counter",
            "/sensors/x/counter",
            "Sensors/x/counter",
            "sensors/x",
            "commands/sensor/",
            "commands/sensor/x/y",
            "hives/1/occupancy",
        ] {
            assert_eq!(parsed(t), None, "{t:?}");
        }
    }
}
