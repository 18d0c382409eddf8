//! Typed units of the configuration: durations ([`Dur`]), sizes ([`Size`]), request rates
//! ([`Rate`]) and listening addresses.
//!
//! Each parses from the text an operator writes (`"10s"`, `"64k"`, `"50r/s"`, `"*:8080"`) and
//! displays back to a form that parses to the same value, so the output of `bizzy -T` reads back
//! identically. Parsing rejects anything it does not fully understand: no rounding, no clamping,
//! no guessing of units.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as an integer and one unit: `"500ms"`, `"10s"`, `"2m"`, `"1h"`, `"1d"`.
///
/// Units cannot be combined (`"1m30s"` is an error, write `"90s"`). Displays with the largest
/// unit that divides it exactly; sub-millisecond parts, which the syntax cannot express, are not
/// shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

/// A size in bytes written as an integer with an optional binary suffix `k`, `m` or `g`
/// (case-insensitive): `"512"`, `"64k"`, `"1m"`, `"1g"`; a bare TOML integer is bytes too.
///
/// Displays with the largest suffix that divides it exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

/// A request rate, `"50r/s"` or `"600r/m"`: a positive integer count per second or per minute.
#[derive(Clone, Debug, PartialEq)]
pub struct Rate {
    /// The rate in requests per second (`"600r/m"` is 10.0).
    pub per_second: f64,
    /// The text as written, shown by `Display` and written back by `bizzy -T`.
    pub text: String,
}

/// Why a value is not a duration, size, rate or listening address; displays as `bizzy -t`
/// prints it after the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitError {
    /// Not an integer and one known unit.
    NotA { text: String, what: &'static str },
    /// Well formed, but past what a `u64` of its base unit holds.
    TooLarge { text: String, what: &'static str },
    /// Not `"Nr/s"` or `"Nr/m"`.
    NotARate(String),
    /// `"0r/s"`.
    ZeroRate(String),
    /// Not one of the four address forms.
    NotAListenAddress(String),
    /// A bare integer where a unit is needed; `example` is the unit suggested.
    NoUnit {
        value: u64,
        examples: &'static [&'static str],
    },
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitError::NotA { text, what } => write!(f, "{text:?} is not a {what}"),
            UnitError::TooLarge { text, what } => write!(f, "{text:?} is too large a {what}"),
            UnitError::NotARate(text) => write!(
                f,
                "{text:?} is not a rate (write e.g. \"50r/s\" or \"600r/m\")"
            ),
            UnitError::ZeroRate(text) => write!(f, "{text:?}: a rate must be more than 0"),
            UnitError::NotAListenAddress(text) => write!(
                f,
                "{text:?} is not a listening address (write \"127.0.0.1:8080\", \"[::1]:8080\", \
                 \"*:8080\" or \"8080\")"
            ),
            UnitError::NoUnit { value, examples } => {
                let examples: Vec<String> =
                    examples.iter().map(|u| format!("\"{value}{u}\"")).collect();
                write!(
                    f,
                    "{value} has no unit (write e.g. {})",
                    examples.join(" or ")
                )
            }
        }
    }
}

impl std::error::Error for UnitError {}

/// Milliseconds per unit, largest first (the order `Display` tries them in).
const DUR_UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Bytes per suffix, largest first.
const SIZE_UNITS: [(&str, u64); 3] = [("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)];

/// Splits `"123abc"` into `("123", "abc")`; the number part is ASCII digits only.
fn split_number(text: &str) -> (&str, &str) {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    text.split_at(digits)
}

impl Dur {
    /// A duration of whole seconds.
    pub const fn secs(secs: u64) -> Dur {
        Dur(Duration::from_secs(secs))
    }

    /// A duration of whole milliseconds.
    pub const fn millis(millis: u64) -> Dur {
        Dur(Duration::from_millis(millis))
    }

    /// Whether this is zero (for keys where `"0s"` switches a feature off).
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl FromStr for Dur {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Dur, UnitError> {
        let (number, unit) = split_number(text);
        let per = DUR_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|u| u.1);
        let (Some(per), false) = (per, number.is_empty()) else {
            return Err(not_a(text, "duration"));
        };
        let too_large = || too_large(text, "duration");
        let count: u64 = number.parse().map_err(|_| too_large())?;
        let millis = count.checked_mul(per).ok_or_else(too_large)?;
        Ok(Dur::millis(millis))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis == 0 {
            return f.write_str("0s");
        }
        for (unit, per) in DUR_UNITS {
            let per = u128::from(per);
            if millis % per == 0 {
                return write!(f, "{}{unit}", millis / per);
            }
        }
        write!(f, "{millis}ms")
    }
}

impl From<Dur> for Duration {
    fn from(d: Dur) -> Duration {
        d.0
    }
}

impl FromStr for Size {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Size, UnitError> {
        let (number, suffix) = split_number(text);
        let per = match suffix.to_ascii_lowercase().as_str() {
            "" => Some(1),
            lower => SIZE_UNITS.iter().find(|(s, _)| *s == lower).map(|u| u.1),
        };
        let (Some(per), false) = (per, number.is_empty()) else {
            return Err(not_a(text, "size"));
        };
        let too_large = || too_large(text, "size");
        let count: u64 = number.parse().map_err(|_| too_large())?;
        count.checked_mul(per).map(Size).ok_or_else(too_large)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 != 0 {
            for (suffix, per) in SIZE_UNITS {
                if self.0 % per == 0 {
                    return write!(f, "{}{suffix}", self.0 / per);
                }
            }
        }
        write!(f, "{}", self.0)
    }
}

impl FromStr for Rate {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Rate, UnitError> {
        let not_a_rate = || UnitError::NotARate(text.to_string());
        let (number, unit) = split_number(text);
        let per = match unit {
            "r/s" => 1.0,
            "r/m" => 60.0,
            _ => return Err(not_a_rate()),
        };
        let count: u32 = number.parse().map_err(|_| not_a_rate())?;
        if count == 0 {
            return Err(UnitError::ZeroRate(text.to_string()));
        }
        Ok(Rate {
            per_second: f64::from(count) / per,
            text: text.to_string(),
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a listening address: `"127.0.0.1:8080"`, `"[::1]:8080"`, `"*:8080"` or `"8080"` (both
/// meaning `0.0.0.0:8080`). Host names are not resolved.
pub fn parse_listen(text: &str) -> Result<SocketAddr, UnitError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let port = text.strip_prefix("*:").unwrap_or(text);
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
        }
    }
    Err(UnitError::NotAListenAddress(text.to_string()))
}

fn not_a(text: &str, what: &'static str) -> UnitError {
    UnitError::NotA {
        text: text.to_string(),
        what,
    }
}

fn too_large(text: &str, what: &'static str) -> UnitError {
    UnitError::TooLarge {
        text: text.to_string(),
        what,
    }
}

/// Serde for text-based units: serialized with `Display`, deserialized with `FromStr`.
macro_rules! serde_as_text {
    ($type:ty, $expecting:literal) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$type, D::Error> {
                struct TextVisitor;
                impl Visitor<'_> for TextVisitor {
                    type Value = $type;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$type, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$type, E> {
                        integer_unit::<$type, E>(v)
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$type, E> {
                        match u64::try_from(v) {
                            Ok(v) => integer_unit::<$type, E>(v),
                            Err(_) => Err(E::custom(format!("{v} is negative"))),
                        }
                    }
                }
                d.deserialize_any(TextVisitor)
            }
        }
    };
}

serde_as_text!(
    Dur,
    "a duration string such as \"500ms\", \"10s\", \"2m\", \"1h\" or \"1d\""
);
serde_as_text!(Size, "a size such as 512, \"64k\", \"1m\" or \"1g\"");
serde_as_text!(Rate, "a rate string such as \"50r/s\" or \"600r/m\"");

/// What a bare integer means for each unit: bytes for sizes, an error for the others (a bare
/// `10` could be seconds or milliseconds, so it is refused).
trait IntegerUnit: Sized {
    fn from_integer(v: u64) -> Result<Self, UnitError>;
}

fn integer_unit<T: IntegerUnit, E: de::Error>(v: u64) -> Result<T, E> {
    T::from_integer(v).map_err(E::custom)
}

impl IntegerUnit for Size {
    fn from_integer(v: u64) -> Result<Size, UnitError> {
        Ok(Size(v))
    }
}

impl IntegerUnit for Dur {
    fn from_integer(v: u64) -> Result<Dur, UnitError> {
        Err(UnitError::NoUnit {
            value: v,
            examples: &["s", "ms"],
        })
    }
}

impl IntegerUnit for Rate {
    fn from_integer(v: u64) -> Result<Rate, UnitError> {
        Err(UnitError::NoUnit {
            value: v,
            examples: &["r/s"],
        })
    }
}

/// Serde for a list of listening addresses (`listen = ["127.0.0.1:8080", "8081"]`).
pub mod listen_list {
    use super::*;

    /// Writes each address as `ip:port` (`[ip]:port` for IPv6).
    pub fn serialize<S: Serializer>(addrs: &[SocketAddr], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(addrs.iter().map(|a| a.to_string()))
    }

    /// Reads an array of address strings, see [`parse_listen`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        texts
            .iter()
            .map(|t| parse_listen(t).map_err(de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!("500ms".parse::<Dur>(), Ok(Dur::millis(500)));
        assert_eq!("10s".parse::<Dur>(), Ok(Dur::secs(10)));
        assert_eq!("2m".parse::<Dur>(), Ok(Dur::secs(120)));
        assert_eq!("1h".parse::<Dur>(), Ok(Dur::secs(3600)));
        assert_eq!("1d".parse::<Dur>(), Ok(Dur::secs(86_400)));
        assert_eq!("0s".parse::<Dur>(), Ok(Dur::secs(0)));
        assert_eq!("007s".parse::<Dur>(), Ok(Dur::secs(7)));
    }

    #[test]
    fn durations_reject() {
        for bad in [
            "10x", "", "s", "-5s", "+5s", "10", "1m30s", " 10s", "10 s", "1.5s", "10S",
        ] {
            let err = bad.parse::<Dur>().unwrap_err().to_string();
            assert_eq!(err, format!("{bad:?} is not a duration"));
        }
        let err = "99999999999999999999s"
            .parse::<Dur>()
            .unwrap_err()
            .to_string();
        assert_eq!(err, "\"99999999999999999999s\" is too large a duration");
        let err = "18446744073709551615d"
            .parse::<Dur>()
            .unwrap_err()
            .to_string();
        assert_eq!(err, "\"18446744073709551615d\" is too large a duration");
    }

    #[test]
    fn durations_display_round_trip() {
        let cases = [
            ("500ms", "500ms"),
            ("1500ms", "1500ms"),
            ("1000ms", "1s"),
            ("10s", "10s"),
            ("120s", "2m"),
            ("2m", "2m"),
            ("90m", "90m"),
            ("1h", "1h"),
            ("24h", "1d"),
            ("1d", "1d"),
            ("0ms", "0s"),
        ];
        for (text, shown) in cases {
            let d: Dur = text.parse().unwrap();
            assert_eq!(d.to_string(), shown);
            assert_eq!(shown.parse::<Dur>(), Ok(d));
        }
    }

    #[test]
    fn sizes_parse_and_display_round_trip() {
        let cases = [
            ("512", 512, "512"),
            ("64k", 65_536, "64k"),
            ("64K", 65_536, "64k"),
            ("1m", 1 << 20, "1m"),
            ("1M", 1 << 20, "1m"),
            ("1g", 1 << 30, "1g"),
            ("1024", 1024, "1k"),
            ("1536", 1536, "1536"),
            ("0", 0, "0"),
            ("2048m", 2 << 30, "2g"),
        ];
        for (text, bytes, shown) in cases {
            let s: Size = text.parse().unwrap();
            assert_eq!(s, Size(bytes), "{text}");
            assert_eq!(s.to_string(), shown);
            assert_eq!(shown.parse::<Size>(), Ok(s));
        }
    }

    #[test]
    fn sizes_reject() {
        for bad in ["", "k", "-1", "1kb", "1t", "1.5m", " 1k", "0x10"] {
            assert_eq!(
                bad.parse::<Size>().unwrap_err().to_string(),
                format!("{bad:?} is not a size")
            );
        }
        let err = "17179869184g".parse::<Size>().unwrap_err().to_string();
        assert_eq!(err, "\"17179869184g\" is too large a size");
    }

    #[test]
    fn rates() {
        let r: Rate = "50r/s".parse().unwrap();
        assert_eq!(r.per_second, 50.0);
        assert_eq!(r.to_string(), "50r/s");
        let r: Rate = "600r/m".parse().unwrap();
        assert_eq!(r.per_second, 10.0);
        assert_eq!(r.to_string(), "600r/m");
        assert!("0r/s".parse::<Rate>().is_err());
        assert!("50r/h".parse::<Rate>().is_err());
        assert!("r/s".parse::<Rate>().is_err());
        assert!("1.5r/s".parse::<Rate>().is_err());
    }

    #[test]
    fn listen_addresses() {
        let v4 = |s: &str| parse_listen(s).unwrap().to_string();
        assert_eq!(v4("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(v4("[::1]:8080"), "[::1]:8080");
        assert_eq!(v4("*:8080"), "0.0.0.0:8080");
        assert_eq!(v4("8080"), "0.0.0.0:8080");
        for bad in [
            "",
            "localhost:80",
            "*:",
            "65536",
            "+80",
            "127.0.0.1",
            "::1:80",
            "*:-1",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn integers_as_units() {
        let size: Size = toml::from_str::<toml::Table>("x = 4096")
            .map(|t| t["x"].clone().try_into().unwrap())
            .unwrap();
        assert_eq!(size, Size(4096));
        let dur = toml::Value::Integer(10).try_into::<Dur>().unwrap_err();
        assert!(dur.to_string().contains("10 has no unit"), "{dur}");
        let neg = toml::Value::Integer(-1).try_into::<Size>().unwrap_err();
        assert!(neg.to_string().contains("-1 is negative"), "{neg}");
    }
}
