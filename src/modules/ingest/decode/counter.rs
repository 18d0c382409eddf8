//! The `counter` topic (PROTOCOL.md sections 1 and 2): the length tells the firmware (16 or 59
//! bytes legacy, 20 bytes v2), and both share the report type.

use super::{legacy, v2};
use super::{Malformed, Payload};

/// Why a counter report was sent (byte 14 legacy, byte 1 v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportType {
    /// 0xFF: the event threshold was reached.
    Threshold,
    /// 0x20: the reporting interval elapsed.
    Periodic,
    /// 0x21: the sensor restarted.
    Restart,
    /// Any other byte: accepted, the counts are the data; stored as `unknown`.
    Unknown(u8),
}

impl ReportType {
    /// The report type of a wire byte.
    pub fn from_byte(b: u8) -> ReportType {
        match b {
            0xff => ReportType::Threshold,
            0x20 => ReportType::Periodic,
            0x21 => ReportType::Restart,
            other => ReportType::Unknown(other),
        }
    }

    /// The wire byte. `Unknown(0xff)` and the like (never decoded) write their known meaning's
    /// byte, and decode as that meaning.
    pub fn to_byte(self) -> u8 {
        match self {
            ReportType::Threshold => 0xff,
            ReportType::Periodic => 0x20,
            ReportType::Restart => 0x21,
            ReportType::Unknown(b) => b,
        }
    }

    /// `threshold`, `periodic`, `restart` or `unknown`: the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportType::Threshold => "threshold",
            ReportType::Periodic => "periodic",
            ReportType::Restart => "restart",
            ReportType::Unknown(_) => "unknown",
        }
    }
}

/// A counter report of either firmware, told apart by its length.
pub(super) fn decode(payload: &[u8]) -> Result<Payload, Malformed> {
    match payload.len() {
        legacy::LEN | legacy::PADDED_LEN => legacy::decode(payload).map(Payload::Legacy),
        v2::LEN => v2::decode(payload).map(Payload::Counter),
        len => Err(Malformed::Length {
            what: "a counter report",
            expected: "16, 20 or 59 bytes",
            len,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_types_of_section_1() {
        assert_eq!(ReportType::from_byte(0xff), ReportType::Threshold);
        assert_eq!(ReportType::from_byte(0x20), ReportType::Periodic);
        assert_eq!(ReportType::from_byte(0x21), ReportType::Restart);
        assert_eq!(ReportType::from_byte(0x05), ReportType::Unknown(5));
        for b in 0..=255u8 {
            assert_eq!(ReportType::from_byte(b).to_byte(), b);
        }
        assert_eq!(ReportType::Unknown(0).as_str(), "unknown");
    }

    #[test]
    fn lengths_other_than_16_20_59_are_malformed() {
        for len in [0, 1, 15, 17, 19, 21, 58, 60, 64] {
            let e = decode(&vec![0xff; len]).expect_err("wrong length");
            assert_eq!(e.as_str(), "length", "{len} bytes");
        }
        assert!(decode(&[0xff; 16]).is_ok());
        assert!(decode(&[0xff; 59]).is_ok());
        assert_eq!(decode(&[0xff; 20]), Err(Malformed::Version(0xff)));
    }
}
