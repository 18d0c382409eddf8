//! Event report (PROTOCOL.md section 3): 8 bytes per event, 1..64 events in time order in one
//! payload. An event type other than exit, entry or status, or a reserved byte other than 0,
//! makes the whole payload malformed.

use super::Malformed;

/// Length of one event.
pub const EVENT_LEN: usize = 8;

/// Most events in one payload.
pub const MAX_EVENTS: usize = 64;

/// What a sensor saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// 0: someone left (-1).
    Exit,
    /// 1: someone came in (+1).
    Entry,
    /// 2: a heartbeat, no count.
    Status,
}

impl EventType {
    /// The event type of a wire byte; others are malformed.
    pub fn from_byte(b: u8) -> Option<EventType> {
        match b {
            0 => Some(EventType::Exit),
            1 => Some(EventType::Entry),
            2 => Some(EventType::Status),
            _ => None,
        }
    }

    pub fn to_byte(self) -> u8 {
        match self {
            EventType::Exit => 0,
            EventType::Entry => 1,
            EventType::Status => 2,
        }
    }

    /// `exit`, `entry` or `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Exit => "exit",
            EventType::Entry => "entry",
            EventType::Status => "status",
        }
    }

    /// What the event adds to occupancy: +1, -1 or 0.
    pub fn delta(self) -> i32 {
        match self {
            EventType::Exit => -1,
            EventType::Entry => 1,
            EventType::Status => 0,
        }
    }
}

/// One event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    pub event_type: EventType,
    /// Distance measured for the event.
    pub distance_mm: u16,
    /// Seconds since 1970-01-01 UTC; 0 = unknown (see [`known_time`](super::known_time)).
    pub timestamp: u32,
}

impl Event {
    /// The 8 bytes of the event (reserved byte 0).
    pub fn encode(&self) -> [u8; EVENT_LEN] {
        let [d0, d1] = self.distance_mm.to_be_bytes();
        let [t0, t1, t2, t3] = self.timestamp.to_be_bytes();
        [self.event_type.to_byte(), d0, d1, 0, t0, t1, t2, t3]
    }
}

/// Every event of a payload of 8*n bytes, n = 1..=64.
pub(super) fn decode(payload: &[u8]) -> Result<Vec<Event>, Malformed> {
    check_count(payload.len())?;
    payload
        .chunks_exact(EVENT_LEN)
        .enumerate()
        .map(|(index, b)| decode_one(index, b.try_into().expect("chunks_exact gives 8 bytes")))
        .collect()
}

/// A length that is 8*n bytes, n = 1..=64.
fn check_count(len: usize) -> Result<(), Malformed> {
    if len % EVENT_LEN != 0 {
        return Err(Malformed::Length {
            what: "an event report",
            expected: "8 bytes per event",
            len,
        });
    }
    let n = len / EVENT_LEN;
    if !(1..=MAX_EVENTS).contains(&n) {
        return Err(Malformed::EventCount(n));
    }
    Ok(())
}

/// Event `index` from its 8 bytes.
fn decode_one(index: usize, b: &[u8; EVENT_LEN]) -> Result<Event, Malformed> {
    let [kind, d0, d1, reserved, t0, t1, t2, t3] = *b;
    let event_type =
        EventType::from_byte(kind).ok_or(Malformed::EventType { index, value: kind })?;
    if reserved != 0 {
        return Err(Malformed::Reserved {
            offset: index * EVENT_LEN + 3,
            value: u16::from(reserved),
        });
    }
    Ok(Event {
        event_type,
        distance_mm: u16::from_be_bytes([d0, d1]),
        timestamp: u32::from_be_bytes([t0, t1, t2, t3]),
    })
}

/// Appends the events; 0 or more than 64 is an `event_count` error and appends nothing.
pub fn encode(events: &[Event], out: &mut Vec<u8>) -> Result<(), Malformed> {
    if !(1..=MAX_EVENTS).contains(&events.len()) {
        return Err(Malformed::EventCount(events.len()));
    }
    out.reserve(events.len() * EVENT_LEN);
    for e in events {
        out.extend_from_slice(&e.encode());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry at 1 234 mm at 1732300205, then an exit at 0x0100 mm at 1732300210.
    const TWO: [u8; 16] = [
        0x01, 0x04, 0xd2, 0x00, 0x67, 0x40, 0xcd, 0xad, //
        0x00, 0x01, 0x00, 0x00, 0x67, 0x40, 0xcd, 0xb2,
    ];

    fn two() -> Vec<Event> {
        vec![
            Event {
                event_type: EventType::Entry,
                distance_mm: 1234,
                timestamp: 1_732_300_205,
            },
            Event {
                event_type: EventType::Exit,
                distance_mm: 256,
                timestamp: 1_732_300_210,
            },
        ]
    }

    #[test]
    fn fixture_round_trips() {
        assert_eq!(decode(&TWO), Ok(two()));
        let mut out = Vec::new();
        encode(&two(), &mut out).expect("two events");
        assert_eq!(out, TWO);
    }

    #[test]
    fn one_to_64_events() {
        let status = [0x02, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            decode(&status).map(|v| v[0].event_type),
            Ok(EventType::Status)
        );
        let most = status.repeat(MAX_EVENTS);
        assert_eq!(decode(&most).map(|v| v.len()), Ok(64));
        assert_eq!(decode(&status.repeat(65)), Err(Malformed::EventCount(65)));
        assert_eq!(decode(&[]), Err(Malformed::EventCount(0)));
        let e = decode(&status[..7]).expect_err("7 bytes");
        assert_eq!(e.as_str(), "length");
        let e = decode(&status.repeat(2)[..15]).expect_err("15 bytes");
        assert_eq!(e.as_str(), "length");
    }

    #[test]
    fn bad_type_or_reserved_byte_rejects_the_whole_payload() {
        let mut b = TWO;
        b[8] = 3;
        assert_eq!(decode(&b), Err(Malformed::EventType { index: 1, value: 3 }));
        let mut b = TWO;
        b[11] = 7;
        assert_eq!(
            decode(&b),
            Err(Malformed::Reserved {
                offset: 11,
                value: 7
            })
        );
    }

    #[test]
    fn encoding_checks_the_count() {
        let mut out = vec![9];
        assert_eq!(encode(&[], &mut out), Err(Malformed::EventCount(0)));
        let many = vec![two()[0]; 65];
        assert_eq!(encode(&many, &mut out), Err(Malformed::EventCount(65)));
        assert_eq!(out, [9]);
    }

    #[test]
    fn deltas() {
        let sum: i32 = [
            EventType::Entry,
            EventType::Exit,
            EventType::Status,
            EventType::Entry,
        ]
        .iter()
        .map(|t| t.delta())
        .sum();
        assert_eq!(sum, 1);
    }
}
