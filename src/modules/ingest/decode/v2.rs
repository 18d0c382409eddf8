//! Counter report of the v2 firmware (PROTOCOL.md section 2): 20 bytes, version 2, with a message
//! counter (for missed messages), a UTC timestamp and the sensor's zone offset; the last two bytes
//! are reserved, 0.

use super::{Malformed, ReportType};

/// Length of a v2 report.
pub const LEN: usize = 20;

/// Byte 0 of every v2 report.
pub const VERSION: u8 = 2;

/// `tz_offset_min` on the wire when the sensor does not know its zone.
pub const TZ_UNKNOWN: i16 = 0x7fff;

/// Offset of the reserved bytes.
const RESERVED_AT: usize = 18;

/// A v2 counter report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CounterV2 {
    pub report_type: ReportType,
    /// +1 per send attempt, wraps 65535 -> 0, 0 after a restart.
    pub message_counter: u16,
    pub total_in: u16,
    pub total_out: u16,
    /// Seconds since 1970-01-01 UTC; 0 = unknown (see [`known_time`](super::known_time)).
    pub timestamp: u32,
    /// The sensor's offset from UTC in minutes; `None` is 0x7FFF on the wire, and so is
    /// `Some(0x7FFF)`, which decodes as `None`.
    pub tz_offset_min: Option<i16>,
    pub diff_in: u16,
    pub diff_out: u16,
}

impl CounterV2 {
    /// The 20 bytes of the report.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = VERSION;
        b[1] = self.report_type.to_byte();
        b[2..4].copy_from_slice(&self.message_counter.to_be_bytes());
        b[4..6].copy_from_slice(&self.total_in.to_be_bytes());
        b[6..8].copy_from_slice(&self.total_out.to_be_bytes());
        b[8..12].copy_from_slice(&self.timestamp.to_be_bytes());
        let tz = self.tz_offset_min.unwrap_or(TZ_UNKNOWN);
        b[12..14].copy_from_slice(&tz.to_be_bytes());
        b[14..16].copy_from_slice(&self.diff_in.to_be_bytes());
        b[16..18].copy_from_slice(&self.diff_out.to_be_bytes());
        b
    }
}

/// A 20-byte payload: version 2, reserved 0.
pub(super) fn decode(payload: &[u8]) -> Result<CounterV2, Malformed> {
    let b: &[u8; LEN] = payload.try_into().map_err(|_| Malformed::Length {
        what: "a counter report",
        expected: "16, 20 or 59 bytes",
        len: payload.len(),
    })?;
    if b[0] != VERSION {
        return Err(Malformed::Version(b[0]));
    }
    let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let reserved = be16(RESERVED_AT);
    if reserved != 0 {
        return Err(Malformed::Reserved {
            offset: RESERVED_AT,
            value: reserved,
        });
    }
    let tz = i16::from_be_bytes([b[12], b[13]]);
    Ok(CounterV2 {
        report_type: ReportType::from_byte(b[1]),
        message_counter: be16(2),
        total_in: be16(4),
        total_out: be16(6),
        timestamp: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        tz_offset_min: (tz != TZ_UNKNOWN).then_some(tz),
        diff_in: be16(14),
        diff_out: be16(16),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Restart report, counter 0, 1234 in, 1111 out, at 1732300205 (2024-11-22 18:30:05 UTC),
    /// UTC+1 (60 minutes), diffs 5 and 3.
    const RESTART: [u8; 20] = [
        0x02, 0x21, 0x00, 0x00, 0x04, 0xd2, 0x04, 0x57, 0x67, 0x40, 0xcd, 0xad, 0x00, 0x3c, 0x00,
        0x05, 0x00, 0x03, 0x00, 0x00,
    ];

    fn restart() -> CounterV2 {
        CounterV2 {
            report_type: ReportType::Restart,
            message_counter: 0,
            total_in: 1234,
            total_out: 1111,
            timestamp: 1_732_300_205,
            tz_offset_min: Some(60),
            diff_in: 5,
            diff_out: 3,
        }
    }

    #[test]
    fn fixture_round_trips() {
        assert_eq!(decode(&RESTART), Ok(restart()));
        assert_eq!(restart().encode(), RESTART);
    }

    #[test]
    fn unknown_zone_and_negative_offsets() {
        let mut b = RESTART;
        b[12..14].copy_from_slice(&[0x7f, 0xff]);
        assert_eq!(decode(&b).map(|c| c.tz_offset_min), Ok(None));
        b[12..14].copy_from_slice(&(-300i16).to_be_bytes());
        assert_eq!(decode(&b).map(|c| c.tz_offset_min), Ok(Some(-300)));
        let unknown = CounterV2 {
            tz_offset_min: None,
            ..restart()
        };
        assert_eq!(unknown.encode()[12..14], [0x7f, 0xff]);
    }

    #[test]
    fn version_other_than_2_is_malformed() {
        for v in [0, 1, 3, 0xff] {
            let mut b = RESTART;
            b[0] = v;
            assert_eq!(decode(&b), Err(Malformed::Version(v)));
        }
    }

    #[test]
    fn reserved_bytes_must_be_0() {
        let mut b = RESTART;
        b[19] = 1;
        assert_eq!(
            decode(&b),
            Err(Malformed::Reserved {
                offset: 18,
                value: 1
            })
        );
        b[18] = 0x80;
        b[19] = 0;
        assert_eq!(decode(&b).map_err(|e| e.as_str()), Err("reserved"));
    }
}
