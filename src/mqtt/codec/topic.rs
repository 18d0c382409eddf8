//! Topic names and filters (4.7): the rules the codec enforces on PUBLISH, the will, SUBSCRIBE
//! and UNSUBSCRIBE. Matching names against filters is the router's, not this file's.

use super::CodecError;

/// A topic name, as in PUBLISH and the will: at least one character ([MQTT-4.7.3-1]) and no
/// wildcard ([MQTT-3.3.2-2], [MQTT-4.7.1-1]). UTF-8 rules are checked when the string is read.
pub fn validate_name(name: &str, field: &'static str) -> Result<(), CodecError> {
    if name.is_empty() {
        return Err(CodecError::Topic {
            field,
            why: "empty topic name",
        });
    }
    if name.contains(['+', '#']) {
        return Err(CodecError::Topic {
            field,
            why: "wildcard in a topic name",
        });
    }
    Ok(())
}

/// A topic filter, as in SUBSCRIBE and UNSUBSCRIBE: at least one character ([MQTT-4.7.3-1]),
/// `#` alone in the last level ([MQTT-4.7.1-2]), `+` alone in its level ([MQTT-4.7.1-3]).
pub fn validate_filter(filter: &str, field: &'static str) -> Result<(), CodecError> {
    if filter.is_empty() {
        return Err(CodecError::Topic {
            field,
            why: "empty topic filter",
        });
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !last) {
            return Err(CodecError::Topic {
                field,
                why: "'#' not alone in the last level",
            });
        }
        if level.contains('+') && level != "+" {
            return Err(CodecError::Topic {
                field,
                why: "'+' not alone in its level",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_mqtt_4_7_3_1_and_mqtt_3_3_2_2() {
        for ok in [
            "a",
            "/",
            "sensors/dev-0001/counter",
            "$SYS/x",
            "a//b",
            " ",
            "/finance",
        ] {
            assert_eq!(validate_name(ok, "t"), Ok(()), "{ok}");
        }
        for bad in ["", "a/+", "#", "a/b#", "sport/+/player1"] {
            assert!(validate_name(bad, "t").is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_mqtt_4_7_1_2_and_mqtt_4_7_1_3() {
        // The standard's own examples (4.7.1.2, 4.7.1.3).
        for ok in [
            "#",
            "+",
            "sport/#",
            "sport/tennis/#",
            "sport/tennis/player1/#",
            "+/tennis/#",
            "sport/+/player1",
            "/+",
            "+/+",
            "//",
            "$SYS/#",
        ] {
            assert_eq!(validate_filter(ok, "f"), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "sport/tennis#",
            "sport/tennis/#/ranking",
            "sport+",
            "a/+b/c",
            "#/a",
            "##",
            "a/++",
        ] {
            assert!(validate_filter(bad, "f").is_err(), "{bad}");
        }
    }
}
