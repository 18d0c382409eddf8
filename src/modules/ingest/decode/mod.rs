//! Sensor payloads (PROTOCOL.md sections 1-5): bytes to [`Payload`] and back, a file per format.
//!
//! | topic | file | payload |
//! |---|---|---|
//! | `sensors/{id}/counter`, 16 or 59 bytes | `legacy.rs` | [`LegacyCounter`] |
//! | `sensors/{id}/counter`, 20 bytes | `v2.rs` | [`CounterV2`] |
//! | `sensors/{id}/event`, 8*n bytes | `event.rs` | [`Event`]s |
//! | `sensors/{id}/status`, 20 bytes | `status.rs` | [`Status`] |
//! | `commands/sensor/{id}`, 12 bytes | `configuration.rs` | [`Configuration`] |
//!
//! The ingest hook calls [`decode`] with a publish's topic and payload: a topic that is no
//! sensor's is [`DecodeError::NotSensorTopic`], bytes that break their format are
//! [`DecodeError::Malformed`] with a [`Malformed`] reason (its `as_str()` is the metric label,
//! [`Rejected`] the log line). The simulator and the configuration publisher call [`encode`];
//! `bizzy decode` is [`cli::run`]. Decoding never panics on input, never allocates except for the
//! events of an event report, and knows no clock: time zones, skew and deduplication are the
//! counting code's.

pub mod cli;
mod configuration;
mod counter;
mod error;
mod event;
pub mod hex;
mod json;
mod legacy;
mod status;
mod topic;
mod v2;

#[cfg(test)]
mod tests;

pub use configuration::Configuration;
pub use counter::ReportType;
pub use error::{DecodeError, Malformed, Rejected, LOGGED_BYTES};
pub use event::{Event, EventType, MAX_EVENTS};
pub use json::to_json;
pub use legacy::{decode_clock, encode_clock, LegacyCounter};
pub use status::Status;
pub use topic::{valid_device_id, Channel, SensorTopic, DEVICE_ID_MAX};
pub use v2::{CounterV2, TZ_UNKNOWN};

/// A decoded payload, one variant per format.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Payload {
    /// Section 1: a counter report of the legacy firmware.
    Legacy(LegacyCounter),
    /// Section 2: a counter report of the v2 firmware.
    Counter(CounterV2),
    /// Section 3: 1..=64 events, in time order.
    Events(Vec<Event>),
    /// Section 4.
    Status(Status),
    /// Section 5 (server -> sensor).
    Configuration(Configuration),
}

impl Payload {
    /// The topic kind this payload goes on.
    pub fn channel(&self) -> Channel {
        match self {
            Payload::Legacy(_) | Payload::Counter(_) => Channel::Counter,
            Payload::Events(_) => Channel::Event,
            Payload::Status(_) => Channel::Status,
            Payload::Configuration(_) => Channel::Configuration,
        }
    }

    /// `counter_legacy`, `counter_v2`, `event`, `status` or `configuration`.
    pub fn format(&self) -> &'static str {
        match self {
            Payload::Legacy(_) => "counter_legacy",
            Payload::Counter(_) => "counter_v2",
            Payload::Events(_) => "event",
            Payload::Status(_) => "status",
            Payload::Configuration(_) => "configuration",
        }
    }
}

/// The sensor topic and payload of a message.
pub fn decode<'t>(
    topic: &'t str,
    payload: &[u8],
) -> Result<(SensorTopic<'t>, Payload), DecodeError> {
    let t = SensorTopic::parse(topic).ok_or(DecodeError::NotSensorTopic)?;
    let p = decode_payload(t.channel, payload)?;
    Ok((t, p))
}

/// A payload in the format of `channel`.
pub fn decode_payload(channel: Channel, payload: &[u8]) -> Result<Payload, Malformed> {
    match channel {
        Channel::Counter => counter::decode(payload),
        Channel::Event => event::decode(payload).map(Payload::Events),
        Channel::Status => status::decode(payload).map(Payload::Status),
        Channel::Configuration => configuration::decode(payload).map(Payload::Configuration),
    }
}

/// Appends `p`'s wire form to `out` (a legacy report as 16 bytes, unpadded). What has no wire
/// form is refused and leaves `out` as it was: a legacy time outside 2000..=2099, 0 or more than
/// 64 events, a configuration out of range.
pub fn encode(p: &Payload, out: &mut Vec<u8>) -> Result<(), Malformed> {
    match p {
        Payload::Legacy(c) => out.extend_from_slice(&c.encode()?),
        Payload::Counter(c) => out.extend_from_slice(&c.encode()),
        Payload::Events(e) => event::encode(e, out)?,
        Payload::Status(s) => out.extend_from_slice(&s.encode()),
        Payload::Configuration(c) => out.extend_from_slice(&c.encode()?),
    }
    Ok(())
}

/// A timestamp of the v2, event and status formats: `None` for 0, "unknown".
pub fn known_time(secs: u32) -> Option<u32> {
    (secs != 0).then_some(secs)
}

/// Fuzz and property check of one format: `data` decodes or gives a reason with a label and a
/// log line, never a panic; what decodes survives encode -> decode unchanged.
pub fn fuzz_decode(channel: Channel, data: &[u8]) {
    match decode_payload(channel, data) {
        Ok(p) => {
            assert_eq!(p.channel(), channel, "decoded into another topic's format");
            let mut out = Vec::new();
            encode(&p, &mut out).expect("a decoded payload has a wire form");
            assert_eq!(
                decode_payload(channel, &out),
                Ok(p),
                "re-encoding changed it"
            );
        }
        Err(e) => {
            assert!(!e.as_str().is_empty());
            let topic = SensorTopic {
                device_id: "fuzz",
                channel,
            }
            .to_string();
            let line = Rejected {
                device_id: "fuzz",
                topic: &topic,
                payload: data,
                reason: &e,
            }
            .to_string();
            assert!(line.contains(&format!("{} bytes", data.len())), "{line}");
        }
    }
}

/// Fuzz check of the topic parser: a parsed topic prints back as the same text.
pub fn fuzz_topic(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(t) = SensorTopic::parse(text) {
        assert!(valid_device_id(t.device_id));
        assert_eq!(t.to_string(), text, "parse -> display changed the topic");
    }
}
