//! Counter report of the legacy firmware (PROTOCOL.md section 1): 16 bytes, or 59 when the modem
//! pads it (the first 16 count), ending with the 0xFF marker. Its date and time come from the GPRS
//! network with a two-digit year and no zone: a real calendar date and time is kept as local
//! [`NaiveDateTime`] (the hive's zone is applied by the counting code); an impossible one, or all
//! zeros, means "clock unknown", which is not malformed.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

use super::{Malformed, ReportType};

/// Length of a legacy report.
pub const LEN: usize = 16;

/// Length of a legacy report padded by the modem.
pub const PADDED_LEN: usize = 59;

/// Byte 15 of every legacy report.
pub const MARKER: u8 = 0xff;

/// First year a two-digit year can name (00 is 2000).
const CENTURY: i32 = 2000;

/// A legacy counter report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LegacyCounter {
    /// Broken in current firmware (equals total_in): stored, never used.
    pub diff_in: u16,
    /// Broken in current firmware (equals total_out): stored, never used.
    pub diff_out: u16,
    /// ENTRY events since the sensor started; wraps.
    pub total_in: u16,
    /// EXIT events since the sensor started; wraps.
    pub total_out: u16,
    /// The sensor's local time, no zone; `None` when the clock is unknown.
    pub time: Option<NaiveDateTime>,
    pub report_type: ReportType,
}

impl LegacyCounter {
    /// The 16 bytes of the report. A time outside 2000..=2099 has no two-digit year: a `year`
    /// range error (an unknown clock is written as zeros). Fractions of a second are dropped.
    pub fn encode(&self) -> Result<[u8; LEN], Malformed> {
        let mut b = [0u8; LEN];
        b[0..2].copy_from_slice(&self.diff_in.to_be_bytes());
        b[2..4].copy_from_slice(&self.diff_out.to_be_bytes());
        b[4..6].copy_from_slice(&self.total_in.to_be_bytes());
        b[6..8].copy_from_slice(&self.total_out.to_be_bytes());
        if let Some(t) = self.time {
            b[8..14].copy_from_slice(&encode_clock(t)?);
        }
        b[14] = self.report_type.to_byte();
        b[15] = MARKER;
        Ok(b)
    }
}

/// A 16- or 59-byte payload (the caller checked the length); bytes 16.. are padding.
pub(super) fn decode(payload: &[u8]) -> Result<LegacyCounter, Malformed> {
    let b: &[u8; LEN] = payload
        .get(..LEN)
        .and_then(|head| head.try_into().ok())
        .ok_or(Malformed::Length {
            what: "a counter report",
            expected: "16, 20 or 59 bytes",
            len: payload.len(),
        })?;
    if b[15] != MARKER {
        return Err(Malformed::Marker(b[15]));
    }
    let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    Ok(LegacyCounter {
        diff_in: be16(0),
        diff_out: be16(2),
        total_in: be16(4),
        total_out: be16(6),
        time: decode_clock([b[8], b[9], b[10], b[11], b[12], b[13]]),
        report_type: ReportType::from_byte(b[14]),
    })
}

/// Year (two digits), month, day, hour, minute, second as a real date and time, if they are one.
/// Leap years and days per month are chrono's; second 60 is not a time.
pub fn decode_clock(c: [u8; 6]) -> Option<NaiveDateTime> {
    let [year, month, day, hour, minute, second] = c.map(u32::from);
    if year > 99 {
        return None;
    }
    let year = CENTURY + i32::try_from(year).expect("at most 99");
    NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(hour, minute, second)
}

/// The six clock bytes of `t`; a year outside 2000..=2099 is a `year` range error.
pub fn encode_clock(t: NaiveDateTime) -> Result<[u8; 6], Malformed> {
    let year = u8::try_from(t.year() - CENTURY)
        .ok()
        .filter(|y| *y <= 99)
        .ok_or(Malformed::Range {
            field: "year",
            value: u32::try_from(t.year()).unwrap_or(0),
            min: 2000,
            max: 2099,
        })?;
    let two = |v: u32| u8::try_from(v).expect("month, day, hour, minute and second fit a byte");
    Ok([
        year,
        two(t.month()),
        two(t.day()),
        two(t.hour()),
        two(t.minute()),
        two(t.second()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<NaiveDateTime> {
        NaiveDate::from_ymd_opt(y, mo, d)?.and_hms_opt(h, mi, s)
    }

    /// PROTOCOL.md section 7: "Legacy report, 1234 in, 1111 out, 2024-11-22 18:30:05 local,
    /// threshold reached: 0005 0003 04d2 0457 18 0b 16 12 1e 05 ff ff".
    const THRESHOLD: [u8; 16] = [
        0x00, 0x05, 0x00, 0x03, 0x04, 0xd2, 0x04, 0x57, 0x18, 0x0b, 0x16, 0x12, 0x1e, 0x05, 0xff,
        0xff,
    ];

    /// PROTOCOL.md section 7: "Legacy start-up report (periodic type, totals 0, 2024-11-22
    /// 08:00:00): 0000 0000 0000 0000 18 0b 16 08 00 00 20 ff".
    const STARTUP: [u8; 16] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0x18, 0x0b, 0x16, 0x08, 0x00, 0x00, 0x20, 0xff,
    ];

    #[test]
    fn worked_example_threshold_report() {
        let want = LegacyCounter {
            diff_in: 5,
            diff_out: 3,
            total_in: 1234,
            total_out: 1111,
            time: at(2024, 11, 22, 18, 30, 5),
            report_type: ReportType::Threshold,
        };
        assert_eq!(decode(&THRESHOLD), Ok(want));
        assert_eq!(want.encode(), Ok(THRESHOLD));
    }

    #[test]
    fn worked_example_startup_report() {
        let want = LegacyCounter {
            diff_in: 0,
            diff_out: 0,
            total_in: 0,
            total_out: 0,
            time: at(2024, 11, 22, 8, 0, 0),
            report_type: ReportType::Periodic,
        };
        assert_eq!(decode(&STARTUP), Ok(want));
        assert_eq!(want.encode(), Ok(STARTUP));
    }

    #[test]
    fn padded_to_59_bytes_the_first_16_count() {
        let mut padded = THRESHOLD.to_vec();
        padded.extend((0..43).map(|i| i as u8 ^ 0x5a));
        assert_eq!(padded.len(), PADDED_LEN);
        assert_eq!(decode(&padded), decode(&THRESHOLD));
    }

    #[test]
    fn marker_other_than_0xff_is_malformed() {
        let mut b = THRESHOLD;
        b[15] = 0xfe;
        assert_eq!(decode(&b), Err(Malformed::Marker(0xfe)));
        let mut padded = b.to_vec();
        padded.resize(PADDED_LEN, 0xff);
        assert_eq!(decode(&padded), Err(Malformed::Marker(0xfe)));
    }

    #[test]
    fn impossible_or_zero_clock_is_unknown_not_malformed() {
        for clock in [
            [0, 0, 0, 0, 0, 0],
            [24, 0, 22, 18, 30, 5],
            [24, 13, 22, 18, 30, 5],
            [24, 11, 32, 18, 30, 5],
            [24, 11, 31, 18, 30, 5],
            [23, 2, 29, 0, 0, 0],
            [24, 11, 22, 24, 0, 0],
            [24, 11, 22, 18, 60, 0],
            [24, 11, 22, 18, 30, 60],
            [100, 1, 1, 0, 0, 0],
        ] {
            let mut b = THRESHOLD;
            b[8..14].copy_from_slice(&clock);
            let r = decode(&b).expect("an unknown clock is accepted");
            assert_eq!(r.time, None, "{clock:?}");
            assert_eq!(r.total_in, 1234);
        }
    }

    #[test]
    fn leap_days_and_month_ends_are_real_dates() {
        assert_eq!(
            decode_clock([24, 2, 29, 23, 59, 59]),
            at(2024, 2, 29, 23, 59, 59)
        );
        assert_eq!(decode_clock([0, 2, 29, 0, 0, 0]), at(2000, 2, 29, 0, 0, 0));
        assert_eq!(decode_clock([25, 2, 29, 0, 0, 0]), None);
        assert_eq!(decode_clock([24, 4, 30, 0, 0, 0]), at(2024, 4, 30, 0, 0, 0));
        assert_eq!(decode_clock([24, 4, 31, 0, 0, 0]), None);
        assert_eq!(
            decode_clock([99, 12, 31, 23, 59, 59]),
            at(2099, 12, 31, 23, 59, 59)
        );
    }

    #[test]
    fn unknown_report_type_is_accepted() {
        let mut b = THRESHOLD;
        b[14] = 0x05;
        assert_eq!(
            decode(&b).map(|r| r.report_type),
            Ok(ReportType::Unknown(5))
        );
    }

    #[test]
    fn years_without_two_digits_do_not_encode() {
        let mut r = decode(&THRESHOLD).expect("valid");
        r.time = at(2100, 1, 1, 0, 0, 0);
        assert!(matches!(
            r.encode(),
            Err(Malformed::Range { field: "year", .. })
        ));
        r.time = at(1999, 12, 31, 0, 0, 0);
        assert!(matches!(
            r.encode(),
            Err(Malformed::Range { field: "year", .. })
        ));
        r.time = None;
        assert_eq!(r.encode().map(|b| b[8..14] == [0; 6]), Ok(true));
    }
}
