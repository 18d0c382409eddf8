//! Status message (PROTOCOL.md section 4): 20 bytes of health, a sign of life that is never a
//! duplicate. Every field is kept as the sensor sent it; the constants name its special values.

use super::Malformed;

/// Length of a status message.
pub const LEN: usize = 20;

/// A status message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status {
    /// Seconds since 1970-01-01 UTC; 0 = unknown (see [`known_time`](super::known_time)).
    pub startup_time: u32,
    /// Battery voltage in millivolts; [`Status::MAINS_POWERED`] for a sensor on mains.
    pub battery_mv: u16,
    /// 0 = OK, anything else a device fault code.
    pub sensor_state: u16,
    /// Events the sensor dropped since start-up.
    pub discarded_events: u16,
    /// CSQ 0..31, [`Status::SIGNAL_UNKNOWN`] = unknown.
    pub gprs_signal: u16,
    /// major << 16 | minor << 8 | patch: see [`Status::firmware`].
    pub firmware_version: u32,
    /// Id of the last configuration the sensor applied.
    pub configuration_id: u32,
}

impl Status {
    /// `battery_mv` of a mains-powered sensor.
    pub const MAINS_POWERED: u16 = 0xffff;

    /// `gprs_signal` when the modem does not know it.
    pub const SIGNAL_UNKNOWN: u16 = 99;

    /// `sensor_state` of a sensor without a fault.
    pub const STATE_OK: u16 = 0;

    /// The firmware version as (major, minor, patch).
    pub fn firmware(&self) -> (u16, u8, u8) {
        let [major_hi, major_lo, minor, patch] = self.firmware_version.to_be_bytes();
        (u16::from_be_bytes([major_hi, major_lo]), minor, patch)
    }

    /// The 20 bytes of the message.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..4].copy_from_slice(&self.startup_time.to_be_bytes());
        b[4..6].copy_from_slice(&self.battery_mv.to_be_bytes());
        b[6..8].copy_from_slice(&self.sensor_state.to_be_bytes());
        b[8..10].copy_from_slice(&self.discarded_events.to_be_bytes());
        b[10..12].copy_from_slice(&self.gprs_signal.to_be_bytes());
        b[12..16].copy_from_slice(&self.firmware_version.to_be_bytes());
        b[16..20].copy_from_slice(&self.configuration_id.to_be_bytes());
        b
    }
}

/// Exactly 20 bytes; no field has a fixed value.
pub(super) fn decode(payload: &[u8]) -> Result<Status, Malformed> {
    let b: &[u8; LEN] = payload.try_into().map_err(|_| Malformed::Length {
        what: "a status message",
        expected: "20 bytes",
        len: payload.len(),
    })?;
    let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    Ok(Status {
        startup_time: be32(0),
        battery_mv: be16(4),
        sensor_state: be16(6),
        discarded_events: be16(8),
        gprs_signal: be16(10),
        firmware_version: be32(12),
        configuration_id: be32(16),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Started at 1732262400, 3.7 V, OK, 2 events dropped, CSQ 17, firmware 1.4.2, configuration 3.
    const STATUS: [u8; 20] = [
        0x67, 0x40, 0x3a, 0x00, 0x0e, 0x74, 0x00, 0x00, 0x00, 0x02, 0x00, 0x11, 0x00, 0x01, 0x04,
        0x02, 0x00, 0x00, 0x00, 0x03,
    ];

    fn status() -> Status {
        Status {
            startup_time: 1_732_262_400,
            battery_mv: 3700,
            sensor_state: Status::STATE_OK,
            discarded_events: 2,
            gprs_signal: 17,
            firmware_version: 0x0001_0402,
            configuration_id: 3,
        }
    }

    #[test]
    fn fixture_round_trips() {
        assert_eq!(decode(&STATUS), Ok(status()));
        assert_eq!(status().encode(), STATUS);
        assert_eq!(status().firmware(), (1, 4, 2));
    }

    #[test]
    fn special_values_are_kept_as_sent() {
        let mut b = STATUS;
        b[4..6].copy_from_slice(&[0xff, 0xff]);
        b[6..8].copy_from_slice(&[0x00, 0x2a]);
        b[10..12].copy_from_slice(&[0x00, 99]);
        let s = decode(&b).expect("20 bytes");
        assert_eq!(s.battery_mv, Status::MAINS_POWERED);
        assert_eq!(s.sensor_state, 42);
        assert_eq!(s.gprs_signal, Status::SIGNAL_UNKNOWN);
    }

    #[test]
    fn only_20_bytes() {
        for len in [0, 19, 21, 40] {
            let e = decode(&vec![0; len]).expect_err("wrong length");
            assert_eq!(e.as_str(), "length");
        }
    }
}
