//! `bizzy decode TOPIC HEX` (DESIGN.md section 3): one payload, decoded as the server would, printed
//! as JSON on standard output (exit 0); a malformed payload, a topic that is no sensor's, or text
//! that is not hex is said on standard error (exit 1); a wrong command line prints the usage
//! (exit 2, as the server's options). HEX may be split into groups, in one argument or several.

use std::ffi::OsString;
use std::fmt;
use std::process::ExitCode;

use super::{decode, hex, to_json, DecodeError, Rejected};

/// The usage line, as `bizzy -h` lists it.
pub const USAGE: &str = "bizzy decode TOPIC HEX";

/// Why a decoding failed, as the one line printed on standard error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// Missing or non-UTF-8 arguments.
    Usage,
    Hex(hex::HexError),
    NotSensorTopic(String),
    /// The [`Rejected`] line of the payload.
    Malformed(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage => write!(f, "usage: {USAGE}"),
            CliError::Hex(e) => e.fmt(f),
            CliError::NotSensorTopic(t) => write!(
                f,
                "{t:?} is not a sensor topic: sensors/{{device_id}}/counter|event|status or \
                 commands/sensor/{{device_id}}, device id 1 to 64 of [A-Za-z0-9_-]"
            ),
            CliError::Malformed(line) => f.write_str(line),
        }
    }
}

impl std::error::Error for CliError {}

/// Runs `bizzy decode` with the arguments after `decode`.
pub fn run(args: &[OsString]) -> ExitCode {
    match decode_args(args) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e @ CliError::Usage) => {
            eprintln!("bizzy: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("bizzy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The JSON text of `TOPIC HEX...`, pretty-printed.
pub fn decode_args(args: &[OsString]) -> Result<String, CliError> {
    let text: Vec<&str> = args
        .iter()
        .map(|a| a.to_str().ok_or(CliError::Usage))
        .collect::<Result<_, _>>()?;
    let [topic, groups @ ..] = text.as_slice() else {
        return Err(CliError::Usage);
    };
    if groups.is_empty() {
        return Err(CliError::Usage);
    }
    let payload = hex::parse(&groups.join(" ")).map_err(CliError::Hex)?;
    match decode(topic, &payload) {
        Ok((t, p)) => {
            Ok(serde_json::to_string_pretty(&to_json(&t, &p))
                .expect("a JSON value always serializes"))
        }
        Err(DecodeError::NotSensorTopic) => Err(CliError::NotSensorTopic(topic.to_string())),
        Err(DecodeError::Malformed(reason)) => {
            let device_id = super::SensorTopic::parse(topic).map_or("", |t| t.device_id);
            let line = Rejected {
                device_id,
                topic,
                payload: &payload,
                reason: &reason,
            };
            Err(CliError::Malformed(line.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_on(args: &[&str]) -> Result<String, CliError> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        decode_args(&args)
    }

    #[test]
    fn groups_in_one_argument_or_several() {
        let one = run_on(&[
            "sensors/x/counter",
            "0005 0003 04d2 0457 18 0b 16 12 1e 05 ff ff",
        ]);
        let many = run_on(&[
            "sensors/x/counter",
            "0005",
            "0003",
            "04D2",
            "0457180B16121E05FFFF",
        ]);
        assert!(one.is_ok(), "{one:?}");
        assert_eq!(one, many);
    }

    #[test]
    fn each_failure_says_why() {
        assert_eq!(run_on(&[]), Err(CliError::Usage));
        assert_eq!(run_on(&["sensors/x/counter"]), Err(CliError::Usage));
        let e = run_on(&["hives/1/occupancy", "00"]).expect_err("not a sensor topic");
        assert!(e
            .to_string()
            .starts_with("\"hives/1/occupancy\" is not a sensor topic"));
        let e = run_on(&["sensors/x/status", "zz"]).expect_err("bad hex");
        assert!(matches!(e, CliError::Hex(_)));
        let e = run_on(&["sensors/x/status", "00ff"]).expect_err("2 bytes");
        assert_eq!(
            e.to_string(),
            "malformed payload from sensor x on sensors/x/status: \
             length: 2 bytes, a status message is 20 bytes; 2 bytes: 00ff"
        );
    }
}
