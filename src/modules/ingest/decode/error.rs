//! Why a sensor payload was refused: [`Malformed`] (the bytes break their topic's format, with a
//! stable label for `bizzy_ingest_rejected_total{reason=...}`), [`DecodeError`] (that, or a topic
//! that is no sensor's), and [`Rejected`], the `warn` line PROTOCOL.md asks for (device id, topic,
//! length, payload in hex). Nothing here allocates unless the line is formatted.

use std::fmt;

use super::hex;

/// Most payload bytes a [`Rejected`] line shows: the largest valid payload (64 events) fits.
pub const LOGGED_BYTES: usize = 512;

/// What is wrong with a payload's bytes (or, for a configuration, with its values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The length is none of the format's: `what` is the format, `expected` its lengths.
    Length {
        what: &'static str,
        expected: &'static str,
        len: usize,
    },
    /// A legacy counter report whose byte 15 is not 0xFF.
    Marker(u8),
    /// A 20-byte counter report whose version byte is not 2.
    Version(u8),
    /// Reserved bytes, at `offset` in the payload, that are not 0.
    Reserved { offset: usize, value: u16 },
    /// Event number `index` (from 0) has a type other than 0, 1 or 2.
    EventType { index: usize, value: u8 },
    /// An event report of `n` events, outside 1..=64.
    EventCount(usize),
    /// A field outside its allowed range (configuration values; a legacy year on encoding).
    Range {
        field: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
}

impl Malformed {
    /// The `reason` label of `bizzy_ingest_rejected_total`: stable, one word.
    pub fn as_str(&self) -> &'static str {
        match self {
            Malformed::Length { .. } => "length",
            Malformed::Marker(_) => "marker",
            Malformed::Version(_) => "version",
            Malformed::Reserved { .. } => "reserved",
            Malformed::EventType { .. } => "event_type",
            Malformed::EventCount(_) => "event_count",
            Malformed::Range { .. } => "range",
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Malformed::Length {
                what,
                expected,
                len,
            } => {
                write!(f, "length: {len} bytes, {what} is {expected}")
            }
            Malformed::Marker(b) => write!(f, "marker: byte 15 is {b:#04x}, not 0xff"),
            Malformed::Version(v) => {
                write!(f, "version: {v}, a 20-byte counter report is version 2")
            }
            Malformed::Reserved { offset, value } => {
                write!(f, "reserved: {value:#x} at offset {offset}, not 0")
            }
            Malformed::EventType { index, value } => write!(
                f,
                "event_type: event {index} has type {value}, not 0 (exit), 1 (entry) or 2 (status)"
            ),
            Malformed::EventCount(n) => {
                write!(f, "event_count: {n} events, an event report holds 1 to 64")
            }
            Malformed::Range {
                field,
                value,
                min,
                max,
            } => write!(f, "{field}: {value} is outside {min}..={max}"),
        }
    }
}

impl std::error::Error for Malformed {}

/// Why [`decode`](super::decode) refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The topic is not `sensors/{device_id}/counter|event|status` nor
    /// `commands/sensor/{device_id}` with a valid device id: not ours to judge, nor to count as
    /// a sensor's fault.
    NotSensorTopic,
    /// A sensor topic whose payload breaks its format.
    Malformed(Malformed),
}

impl DecodeError {
    /// The metric label: [`Malformed::as_str`], or `topic`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DecodeError::NotSensorTopic => "topic",
            DecodeError::Malformed(m) => m.as_str(),
        }
    }
}

impl From<Malformed> for DecodeError {
    fn from(m: Malformed) -> DecodeError {
        DecodeError::Malformed(m)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotSensorTopic => f.write_str("not a sensor topic"),
            DecodeError::Malformed(m) => write!(f, "malformed payload: {m}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The log line of a malformed payload (PROTOCOL.md, general rules): device id, topic, why,
/// length and the payload in hex (the first [`LOGGED_BYTES`] bytes).
#[derive(Debug, Clone, Copy)]
pub struct Rejected<'a> {
    pub device_id: &'a str,
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub reason: &'a Malformed,
}

impl fmt::Display for Rejected<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.payload.len();
        let shown = &self.payload[..len.min(LOGGED_BYTES)];
        write!(
            f,
            "malformed payload from sensor {} on {}: {}; {len} bytes: {}",
            self.device_id,
            self.topic,
            self.reason,
            hex::Hex(shown)
        )?;
        if len > shown.len() {
            write!(f, " (and {} more bytes)", len - shown.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable() {
        let all = [
            Malformed::Length {
                what: "x",
                expected: "y",
                len: 0,
            },
            Malformed::Marker(0),
            Malformed::Version(0),
            Malformed::Reserved {
                offset: 18,
                value: 1,
            },
            Malformed::EventType { index: 0, value: 3 },
            Malformed::EventCount(0),
            Malformed::Range {
                field: "f",
                value: 0,
                min: 1,
                max: 2,
            },
        ];
        let labels: Vec<&str> = all.iter().map(Malformed::as_str).collect();
        assert_eq!(
            labels,
            [
                "length",
                "marker",
                "version",
                "reserved",
                "event_type",
                "event_count",
                "range"
            ]
        );
        assert_eq!(DecodeError::NotSensorTopic.as_str(), "topic");
        assert_eq!(DecodeError::from(all[1]).as_str(), "marker");
    }

    #[test]
    fn log_line_names_device_topic_length_and_hex() {
        let reason = Malformed::Marker(0xfe);
        let line = Rejected {
            device_id: "door-1",
            topic: "sensors/door-1/counter",
            payload: &[0x00, 0x05, 0xAB],
            reason: &reason,
        }
        .to_string();
        assert_eq!(
            line,
            "malformed payload from sensor door-1 on sensors/door-1/counter: \
             marker: byte 15 is 0xfe, not 0xff; 3 bytes: 0005ab"
        );
    }

    #[test]
    fn log_line_shows_at_most_512_bytes() {
        let payload = vec![0x11; LOGGED_BYTES + 3];
        let reason = Malformed::EventCount(65);
        let line = Rejected {
            device_id: "d",
            topic: "sensors/d/event",
            payload: &payload,
            reason: &reason,
        }
        .to_string();
        assert!(line.ends_with("11 (and 3 more bytes)"), "{line}");
        assert!(line.contains("515 bytes: "), "{line}");
        assert_eq!(line.matches("11").count(), LOGGED_BYTES);
    }
}
