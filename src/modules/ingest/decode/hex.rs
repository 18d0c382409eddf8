//! Payloads as hex text: [`Hex`] writes lower-case digits for log lines, [`parse`] reads what an
//! operator types (`bizzy decode`): upper or lower case, spaces between groups as PROTOCOL.md
//! writes its examples (`0005 0003 04d2 ...`).

use std::fmt;

/// Displays bytes as lower-case hex digits, two per byte, no separators.
#[derive(Debug, Clone, Copy)]
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Text that is not hex bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HexError {
    /// A character that is neither a hex digit nor white space, at this character position.
    Digit { at: usize, found: char },
    /// A group of an odd number of digits: a byte would be split across groups.
    OddGroup { at: usize },
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HexError::Digit { at, found } => {
                write!(f, "bad hex: {found:?} at character {at} is not a hex digit")
            }
            HexError::OddGroup { at } => write!(
                f,
                "bad hex: the group at character {at} has an odd number of digits"
            ),
        }
    }
}

impl std::error::Error for HexError {}

/// Bytes from hex digits; white space separates groups, each of an even number of digits.
/// Empty text is an empty payload.
pub fn parse(text: &str) -> Result<Vec<u8>, HexError> {
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut high: Option<(usize, u8)> = None;
    for (at, c) in text.chars().enumerate() {
        if c.is_whitespace() {
            if let Some((start, _)) = high {
                return Err(HexError::OddGroup { at: start });
            }
            continue;
        }
        let digit = c.to_digit(16).ok_or(HexError::Digit { at, found: c })?;
        let digit = u8::try_from(digit).expect("a hex digit is under 16");
        match high.take() {
            Some((_, h)) => out.push((h << 4) | digit),
            None => high = Some((at, digit)),
        }
    }
    match high {
        Some((start, _)) => Err(HexError::OddGroup { at: start }),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_case() {
        assert_eq!(parse("0005 0003 04d2"), Ok(vec![0, 5, 0, 3, 4, 0xd2]));
        assert_eq!(
            parse("04D2ff\t18 0b\n"),
            Ok(vec![4, 0xd2, 0xff, 0x18, 0x0b])
        );
        assert_eq!(parse("  "), Ok(vec![]));
        assert_eq!(Hex(&[0, 0xAB, 0x10]).to_string(), "00ab10");
    }

    #[test]
    fn bad_hex_says_where() {
        assert_eq!(parse("00 0g"), Err(HexError::Digit { at: 4, found: 'g' }));
        assert_eq!(parse("000 5"), Err(HexError::OddGroup { at: 2 }));
        assert_eq!(parse("00 5"), Err(HexError::OddGroup { at: 3 }));
        assert!(parse("0x05").is_err());
    }
}
