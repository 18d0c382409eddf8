//! Configuration message (PROTOCOL.md section 5): 12 bytes the server publishes, retained, on
//! `commands/sensor/{device_id}`. Both directions check every value against its allowed range and
//! name the field that is out of it, so the server can never publish what a sensor must refuse.

use std::ops::RangeInclusive;

use super::Malformed;

/// Length of a configuration message.
pub const LEN: usize = 12;

/// Allowed `threshold_cm`.
pub const THRESHOLD_CM: RangeInclusive<u16> = 10..=1000;
/// Allowed `reporting_interval_min` and `status_interval_min`: a minute to a day.
pub const INTERVAL_MIN: RangeInclusive<u16> = 1..=1440;
/// Allowed `event_threshold`.
pub const EVENT_THRESHOLD: RangeInclusive<u16> = 1..=1000;

/// A sensor's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Configuration {
    pub threshold_cm: u16,
    pub reporting_interval_min: u16,
    pub status_interval_min: u16,
    pub event_threshold: u16,
    /// Strictly increasing per sensor (checked by whoever keeps the last one); issued ids start
    /// at 1, 0 is the factory configuration's.
    pub configuration_id: u32,
}

impl Configuration {
    /// What a sensor that was never configured uses (PROTOCOL.md, general rules). Never sent:
    /// its id 0 is refused on the wire.
    pub const FACTORY: Configuration = Configuration {
        threshold_cm: 50,
        reporting_interval_min: 15,
        status_interval_min: 60,
        event_threshold: 1,
        configuration_id: 0,
    };

    /// Every field in its allowed range, and an issued id (not 0); the error names the first
    /// field that is not.
    pub fn validate(&self) -> Result<(), Malformed> {
        within("threshold_cm", self.threshold_cm, THRESHOLD_CM)?;
        within(
            "reporting_interval_min",
            self.reporting_interval_min,
            INTERVAL_MIN,
        )?;
        within(
            "status_interval_min",
            self.status_interval_min,
            INTERVAL_MIN,
        )?;
        within("event_threshold", self.event_threshold, EVENT_THRESHOLD)?;
        if self.configuration_id == 0 {
            return Err(Malformed::Range {
                field: "configuration_id",
                value: 0,
                min: 1,
                max: u32::MAX,
            });
        }
        Ok(())
    }

    /// The 12 bytes of a valid configuration.
    pub fn encode(&self) -> Result<[u8; LEN], Malformed> {
        self.validate()?;
        let mut b = [0u8; LEN];
        b[0..2].copy_from_slice(&self.threshold_cm.to_be_bytes());
        b[2..4].copy_from_slice(&self.reporting_interval_min.to_be_bytes());
        b[4..6].copy_from_slice(&self.status_interval_min.to_be_bytes());
        b[6..8].copy_from_slice(&self.event_threshold.to_be_bytes());
        b[8..12].copy_from_slice(&self.configuration_id.to_be_bytes());
        Ok(b)
    }
}

/// `value` in `allowed`, or a range error naming `field`.
fn within(field: &'static str, value: u16, allowed: RangeInclusive<u16>) -> Result<(), Malformed> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(Malformed::Range {
        field,
        value: u32::from(value),
        min: u32::from(*allowed.start()),
        max: u32::from(*allowed.end()),
    })
}

/// Exactly 12 bytes of valid values.
pub(super) fn decode(payload: &[u8]) -> Result<Configuration, Malformed> {
    let b: &[u8; LEN] = payload.try_into().map_err(|_| Malformed::Length {
        what: "a configuration",
        expected: "12 bytes",
        len: payload.len(),
    })?;
    let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let c = Configuration {
        threshold_cm: be16(0),
        reporting_interval_min: be16(2),
        status_interval_min: be16(4),
        event_threshold: be16(6),
        configuration_id: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
    };
    c.validate()?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 80 cm, report every 15 min, status every hour, every 10 events, configuration 7.
    const CONF: [u8; 12] = [0x00, 0x50, 0x00, 0x0f, 0x00, 0x3c, 0x00, 0x0a, 0, 0, 0, 7];

    fn conf() -> Configuration {
        Configuration {
            threshold_cm: 80,
            reporting_interval_min: 15,
            status_interval_min: 60,
            event_threshold: 10,
            configuration_id: 7,
        }
    }

    #[test]
    fn fixture_round_trips() {
        assert_eq!(decode(&CONF), Ok(conf()));
        assert_eq!(conf().encode(), Ok(CONF));
    }

    #[test]
    fn range_bounds_of_section_5() {
        let ok = |c: Configuration| c.validate().is_ok();
        let with = |f: fn(&mut Configuration)| {
            let mut c = conf();
            f(&mut c);
            c
        };
        assert!(ok(with(|c| c.threshold_cm = 10)) && ok(with(|c| c.threshold_cm = 1000)));
        assert!(!ok(with(|c| c.threshold_cm = 9)) && !ok(with(|c| c.threshold_cm = 1001)));
        assert!(ok(with(|c| c.reporting_interval_min = 1440)));
        assert!(!ok(with(|c| c.reporting_interval_min = 0)));
        assert!(!ok(with(|c| c.status_interval_min = 1441)));
        assert!(ok(with(|c| c.event_threshold = 1)));
        assert!(!ok(with(|c| c.event_threshold = 1001)));
        assert!(!ok(with(|c| c.configuration_id = 0)));
        assert!(ok(with(|c| c.configuration_id = u32::MAX)));
    }

    #[test]
    fn errors_name_the_field() {
        let mut b = CONF;
        b[4..6].copy_from_slice(&1441u16.to_be_bytes());
        let e = decode(&b).expect_err("status interval over a day");
        assert_eq!(
            e.to_string(),
            "status_interval_min: 1441 is outside 1..=1440"
        );
        assert_eq!(e.as_str(), "range");
        let bad = Configuration {
            threshold_cm: 5,
            ..conf()
        };
        assert_eq!(
            bad.encode().map_err(|e| e.to_string()),
            Err("threshold_cm: 5 is outside 10..=1000".to_string())
        );
        assert_eq!(decode(&CONF[..11]).map_err(|e| e.as_str()), Err("length"));
    }

    #[test]
    fn factory_configuration_is_never_sent() {
        let f = Configuration::FACTORY;
        assert_eq!(
            Configuration {
                configuration_id: 1,
                ..f
            }
            .validate(),
            Ok(())
        );
        assert!(f.encode().is_err());
    }
}
