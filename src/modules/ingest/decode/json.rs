//! A decoded payload as JSON, for `bizzy decode` and anyone who shows a payload to a person:
//! the wire fields under their PROTOCOL.md names, plus readable forms of the coded ones (report
//! and event types by name, times as ISO 8601, `null` for unknown). The field names are stable.

use serde_json::{json, Map, Value};

use super::{
    known_time, Configuration, CounterV2, Event, LegacyCounter, Payload, ReportType, SensorTopic,
    Status,
};

/// `{"device_id", "topic", "format", ...fields}`.
pub fn to_json(topic: &SensorTopic<'_>, p: &Payload) -> Value {
    let mut head = Map::new();
    head.insert("device_id".into(), topic.device_id.into());
    head.insert("topic".into(), topic.to_string().into());
    head.insert("format".into(), p.format().into());
    let body = match p {
        Payload::Legacy(c) => legacy(c),
        Payload::Counter(c) => counter_v2(c),
        Payload::Events(e) => json!({ "events": e.iter().map(event).collect::<Vec<_>>() }),
        Payload::Status(s) => status(s),
        Payload::Configuration(c) => configuration(c),
    };
    if let Value::Object(fields) = body {
        head.extend(fields);
    }
    Value::Object(head)
}

fn report_type(t: ReportType) -> Value {
    json!({ "name": t.as_str(), "code": t.to_byte() })
}

/// `2024-11-22T18:30:05Z`, or `null` for 0 (unknown).
fn utc(secs: u32) -> Value {
    known_time(secs)
        .and_then(|s| chrono::DateTime::from_timestamp(i64::from(s), 0))
        .map_or(Value::Null, |t| {
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string().into()
        })
}

fn legacy(c: &LegacyCounter) -> Value {
    let time = c.time.map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string());
    json!({
        "diff_in": c.diff_in,
        "diff_out": c.diff_out,
        "total_in": c.total_in,
        "total_out": c.total_out,
        "time": time,
        "report_type": report_type(c.report_type),
    })
}

fn counter_v2(c: &CounterV2) -> Value {
    json!({
        "report_type": report_type(c.report_type),
        "message_counter": c.message_counter,
        "total_in": c.total_in,
        "total_out": c.total_out,
        "timestamp": c.timestamp,
        "time": utc(c.timestamp),
        "tz_offset_min": c.tz_offset_min,
        "diff_in": c.diff_in,
        "diff_out": c.diff_out,
    })
}

fn event(e: &Event) -> Value {
    json!({
        "event_type": e.event_type.as_str(),
        "distance_mm": e.distance_mm,
        "timestamp": e.timestamp,
        "time": utc(e.timestamp),
    })
}

fn status(s: &Status) -> Value {
    let (major, minor, patch) = s.firmware();
    json!({
        "startup_time": s.startup_time,
        "time": utc(s.startup_time),
        "battery_mv": s.battery_mv,
        "mains_powered": s.battery_mv == Status::MAINS_POWERED,
        "sensor_state": s.sensor_state,
        "discarded_events": s.discarded_events,
        "gprs_signal": s.gprs_signal,
        "firmware_version": s.firmware_version,
        "firmware": format!("{major}.{minor}.{patch}"),
        "configuration_id": s.configuration_id,
    })
}

fn configuration(c: &Configuration) -> Value {
    json!({
        "threshold_cm": c.threshold_cm,
        "reporting_interval_min": c.reporting_interval_min,
        "status_interval_min": c.status_interval_min,
        "event_threshold": c.event_threshold,
        "configuration_id": c.configuration_id,
    })
}

#[cfg(test)]
mod tests {
    use super::super::decode;
    use super::*;

    #[test]
    fn legacy_report_as_json() {
        let bytes = [
            0x00, 0x05, 0x00, 0x03, 0x04, 0xd2, 0x04, 0x57, 0x18, 0x0b, 0x16, 0x12, 0x1e, 0x05,
            0xff, 0xff,
        ];
        let (t, p) = decode("sensors/door-1/counter", &bytes).expect("worked example");
        assert_eq!(
            to_json(&t, &p),
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
    fn unknown_times_are_null() {
        let (t, p) = decode("sensors/d/event", &[1, 0, 9, 0, 0, 0, 0, 0]).expect("one entry");
        let v = to_json(&t, &p);
        assert_eq!(v["events"][0]["time"], Value::Null);
        assert_eq!(v["events"][0]["event_type"], "entry");
        assert_eq!(utc(1_732_300_205), "2024-11-22T18:30:05Z");
    }
}
