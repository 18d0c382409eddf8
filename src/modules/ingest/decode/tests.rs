//! Property tests over every format: encode -> decode is the identity, and arbitrary bytes on any
//! topic decode or give a reason, never a panic (the checks of [`fuzz_decode`], which the fuzz
//! targets run too).

use proptest::prelude::*;

use super::*;

const CHANNELS: [Channel; 4] = [
    Channel::Counter,
    Channel::Event,
    Channel::Status,
    Channel::Configuration,
];

/// Near-sensor topics: most prefixes right, device ids of any length, some bad characters.
const TOPIC: &str =
    "[a-z/+#]{0,2}(sensors/|commands/sensor/)[A-Za-z0-9_.+#-]{0,70}(/(counter|event|status|[a-z]{0,8}))?";

fn report_type() -> impl Strategy<Value = ReportType> {
    any::<u8>().prop_map(ReportType::from_byte)
}

/// Any real date and time a two-digit year can carry.
fn clock() -> impl Strategy<Value = chrono::NaiveDateTime> {
    (0u8..=99, 1u8..=12, 1u8..=31, 0u8..24, 0u8..60, 0u8..60)
        .prop_filter_map("not a calendar date", |(y, mo, d, h, mi, s)| {
            decode_clock([y, mo, d, h, mi, s])
        })
}

fn legacy() -> impl Strategy<Value = Payload> {
    (
        any::<[u16; 4]>(),
        proptest::option::of(clock()),
        report_type(),
    )
        .prop_map(
            |([diff_in, diff_out, total_in, total_out], time, report_type)| {
                Payload::Legacy(LegacyCounter {
                    diff_in,
                    diff_out,
                    total_in,
                    total_out,
                    time,
                    report_type,
                })
            },
        )
}

fn counter_v2() -> impl Strategy<Value = Payload> {
    let tz =
        proptest::option::of(any::<i16>().prop_filter("0x7FFF is unknown", |t| *t != TZ_UNKNOWN));
    (report_type(), any::<[u16; 5]>(), any::<u32>(), tz).prop_map(
        |(
            report_type,
            [message_counter, total_in, total_out, diff_in, diff_out],
            timestamp,
            tz,
        )| {
            Payload::Counter(CounterV2 {
                report_type,
                message_counter,
                total_in,
                total_out,
                timestamp,
                tz_offset_min: tz,
                diff_in,
                diff_out,
            })
        },
    )
}

fn events() -> impl Strategy<Value = Payload> {
    let kind = prop_oneof![
        Just(EventType::Exit),
        Just(EventType::Entry),
        Just(EventType::Status)
    ];
    let one =
        (kind, any::<u16>(), any::<u32>()).prop_map(|(event_type, distance_mm, timestamp)| Event {
            event_type,
            distance_mm,
            timestamp,
        });
    proptest::collection::vec(one, 1..=MAX_EVENTS).prop_map(Payload::Events)
}

fn status() -> impl Strategy<Value = Payload> {
    (any::<u32>(), any::<[u16; 4]>(), any::<[u32; 2]>()).prop_map(
        |(startup_time, [battery_mv, sensor_state, discarded_events, gprs_signal], [fw, id])| {
            Payload::Status(Status {
                startup_time,
                battery_mv,
                sensor_state,
                discarded_events,
                gprs_signal,
                firmware_version: fw,
                configuration_id: id,
            })
        },
    )
}

fn configuration() -> impl Strategy<Value = Payload> {
    (10u16..=1000, 1u16..=1440, 1u16..=1440, 1u16..=1000, 1u32..).prop_map(
        |(threshold_cm, reporting, status, event_threshold, configuration_id)| {
            Payload::Configuration(Configuration {
                threshold_cm,
                reporting_interval_min: reporting,
                status_interval_min: status,
                event_threshold,
                configuration_id,
            })
        },
    )
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![legacy(), counter_v2(), events(), status(), configuration()]
}

/// Bytes of the lengths the formats accept (so that most of them get past the length check),
/// and of any length.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid_len = prop_oneof![
        Just(12usize),
        Just(16),
        Just(20),
        Just(59),
        (1usize..=64).prop_map(|n| 8 * n)
    ];
    prop_oneof![
        valid_len.prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n)),
        proptest::collection::vec(any::<u8>(), 0..600),
    ]
}

proptest! {
    #[test]
    fn encode_then_decode_is_the_identity(p in payload()) {
        let mut out = Vec::new();
        encode(&p, &mut out).expect("generated values have a wire form");
        prop_assert_eq!(decode_payload(p.channel(), &out), Ok(p.clone()));
        let id = "sensor_1";
        let topic = match p.channel() {
            Channel::Configuration => format!("commands/sensor/{id}"),
            c => format!("sensors/{id}/{}", c.as_str()),
        };
        let (t, again) = decode(&topic, &out).expect("same bytes, through the topic");
        prop_assert_eq!(t.device_id, id);
        prop_assert_eq!(again, p);
    }

    #[test]
    fn arbitrary_bytes_decode_or_give_a_reason(data in bytes()) {
        for channel in CHANNELS {
            fuzz_decode(channel, &data);
        }
    }

    #[test]
    fn arbitrary_topics_never_panic(topic in TOPIC, data in bytes()) {
        fuzz_topic(topic.as_bytes());
        match decode(&topic, &data) {
            Ok((t, p)) => prop_assert_eq!(t.channel, p.channel()),
            Err(e) => prop_assert!(!e.as_str().is_empty()),
        }
    }
}

#[test]
fn not_a_sensor_topic_is_not_malformed() {
    let worked = [
        0x00, 0x05, 0x00, 0x03, 0x04, 0xd2, 0x04, 0x57, 0x18, 0x0b, 0x16, 0x12, 0x1e, 0x05, 0xff,
        0xff,
    ];
    assert_eq!(
        decode("sensors/a.b/counter", &worked),
        Err(DecodeError::NotSensorTopic)
    );
    assert_eq!(
        decode("sensors/ab/counter", &worked[..15]).map_err(|e| e.as_str()),
        Err("length")
    );
    assert!(decode("sensors/ab/counter", &worked).is_ok());
}

#[test]
fn encode_refuses_what_has_no_wire_form_and_leaves_out_alone() {
    let mut out = vec![1, 2];
    let none = Payload::Events(Vec::new());
    assert_eq!(encode(&none, &mut out), Err(Malformed::EventCount(0)));
    let factory = Payload::Configuration(Configuration::FACTORY);
    assert!(encode(&factory, &mut out).is_err());
    assert_eq!(out, [1, 2]);
}
