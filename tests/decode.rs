//! `bizzy decode TOPIC HEX` (DESIGN.md section 3), run as a user would: PROTOCOL.md section 7's
//! worked examples as JSON on standard output, and a malformed payload, a topic that is no
//! sensor's and bad hex on standard error, each with its exit code.

use std::process::{Command, Output};

use serde_json::{json, Value};

fn decode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bizzy"))
        .arg("decode")
        .args(args)
        .output()
        .expect("bizzy runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 0, nothing on standard error, and the JSON printed.
fn decoded(args: &[&str]) -> Value {
    let o = decode(args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("standard output is JSON")
}

/// Exit 1, nothing on standard output; returns standard error.
fn refused(args: &[&str]) -> String {
    let o = decode(args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    stderr(&o)
}

#[test]
fn worked_example_threshold_report() {
    let v = decoded(&[
        "sensors/door-1/counter",
        "0005 0003 04d2 0457 18 0b 16 12 1e 05 ff ff",
    ]);
    assert_eq!(
        v,
        json!({
            "device_id": "door-1",
            "topic": "sensors/door-1/counter",
            "format": "counter_legacy",
            "diff_in": 5,
            "diff_out": 3,
            "total_in": 1234,
            "total_out": 1111,
            "time": "2024-11-22T18:30:05",
            "report_type": { "name": "threshold", "code": 255 },
        })
    );
}

#[test]
fn worked_example_startup_report_in_upper_case_groups() {
    let v = decoded(&[
        "sensors/door-1/counter",
        "0000 0000 0000 0000",
        "18 0B 16 08 00 00 20 FF",
    ]);
    assert_eq!(v["format"], "counter_legacy");
    assert_eq!(
        (v["total_in"].as_u64(), v["total_out"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(v["time"], "2024-11-22T08:00:00");
    assert_eq!(v["report_type"]["name"], "periodic");
}

#[test]
fn every_topic_decodes() {
    let v = decoded(&[
        "sensors/s1/counter",
        "0221 0000 04d2 0457 6740cdad 003c 0005 0003 0000",
    ]);
    assert_eq!(v["format"], "counter_v2");
    assert_eq!(v["time"], "2024-11-22T18:30:05Z");
    assert_eq!(v["tz_offset_min"], 60);
    let v = decoded(&[
        "sensors/s1/event",
        "01 04d2 00 6740cdad  00 0100 00 6740cdb2",
    ]);
    assert_eq!(v["events"][1]["event_type"], "exit");
    let v = decoded(&[
        "sensors/s1/status",
        "67403a00 ffff 0000 0002 0063 00010402 00000003",
    ]);
    assert_eq!(
        (v["mains_powered"].as_bool(), v["firmware"].as_str()),
        (Some(true), Some("1.4.2"))
    );
    let v = decoded(&["commands/sensor/s1", "0050 000f 003c 000a 00000007"]);
    assert_eq!(v["configuration_id"], 7);
}

#[test]
fn malformed_payload_says_why_as_the_server_logs_it() {
    let err = refused(&[
        "sensors/door-1/counter",
        "0005 0003 04d2 0457 18 0b 16 12 1e 05 ff fe",
    ]);
    assert_eq!(
        err.trim_end(),
        "bizzy: malformed payload from sensor door-1 on sensors/door-1/counter: \
         marker: byte 15 is 0xfe, not 0xff; 16 bytes: 0005000304d20457180b16121e05fffe"
    );
    let err = refused(&["sensors/door-1/event", "01 04d2 00 6740cd"]);
    assert!(err.contains("length: 7 bytes"), "{err}");
}

#[test]
fn not_a_sensor_topic_is_told_apart() {
    let err = refused(&["hives/1/occupancy", "00"]);
    assert!(
        err.contains("\"hives/1/occupancy\" is not a sensor topic"),
        "{err}"
    );
    assert!(!err.contains("malformed"), "{err}");
    let err = refused(&["sensors/door.1/counter", "00"]);
    assert!(err.contains("is not a sensor topic"), "{err}");
}

#[test]
fn bad_hex_is_a_clear_error() {
    let err = refused(&["sensors/door-1/counter", "0005 00x3"]);
    assert!(err.contains("bad hex: 'x' at character 7"), "{err}");
    let err = refused(&["sensors/door-1/counter", "000 5"]);
    assert!(err.contains("odd number of digits"), "{err}");
}

#[test]
fn missing_arguments_print_the_usage() {
    let o = decode(&["sensors/door-1/counter"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("usage: bizzy decode TOPIC HEX"),
        "{}",
        stderr(&o)
    );
}
