//! A hive's occupancy as clients see it: the answer of `GET /v1/hives/{id}/occupancy` and the
//! payload of its retained MQTT topic `hives/{id}/occupancy` (DESIGN.md sections 6 and 8), one
//! shape for both. The batch writer and the timers read it from PostgreSQL's `hive_occupancy`
//! view; the node's workers publish it; other nodes learn it through `NOTIFY` ([`CHANNEL`]).

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::modules::ingest::count::percent;

/// The `LISTEN/NOTIFY` channel of occupancy changes between nodes. A notification is
/// `<node> <json>`: the node that published it, and the JSON of `Occupancy::notice`.
pub const CHANNEL: &str = "bizzy_occupancy";

/// One hive's occupancy.
#[derive(Debug, Clone, PartialEq)]
pub struct Occupancy {
    pub hive_id: i64,
    pub occupancy: u32,
    pub capacity: Option<u32>,
    pub updated_at: DateTime<Utc>,
    /// The number may be behind (the database unreachable, reports waiting in a spool).
    pub stale: bool,
    /// A sensor of the hive is offline: the number is probably low.
    pub degraded: bool,
}

impl Occupancy {
    /// occupancy / capacity * 100 ([`percent`]), to one decimal, when the hive has a capacity.
    pub fn percent(&self) -> Option<f64> {
        percent(self.occupancy, self.capacity).map(|p| (p * 10.0).round() / 10.0)
    }

    /// The retained topic of the hive's occupancy.
    pub fn topic(&self) -> String {
        topic(self.hive_id)
    }

    /// The JSON answer (DESIGN.md section 8).
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(160);
        let _ = write!(
            s,
            "{{\"hive_id\":{},\"occupancy\":{},\"capacity\":",
            self.hive_id, self.occupancy
        );
        match self.capacity {
            Some(c) => {
                let _ = write!(s, "{c}");
            }
            None => s.push_str("null"),
        }
        s.push_str(",\"percent\":");
        match self.percent() {
            Some(p) => {
                let _ = write!(s, "{p:.1}");
            }
            None => s.push_str("null"),
        }
        let _ = write!(
            s,
            ",\"updated_at\":\"{}\",\"stale\":{},\"degraded\":{}}}",
            self.updated_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.stale,
            self.degraded
        );
        s
    }

    /// A change as a notification carries it: the answer's shape with `updated_at` in
    /// microseconds since the epoch, without what the receiver decides (`percent`, `stale`).
    fn notice(&self, out: &mut String) {
        let _ = write!(
            out,
            "{{\"hive_id\":{},\"occupancy\":{},\"capacity\":",
            self.hive_id, self.occupancy
        );
        match self.capacity {
            Some(c) => {
                let _ = write!(out, "{c}");
            }
            None => out.push_str("null"),
        }
        let _ = write!(
            out,
            ",\"updated_at\":{},\"degraded\":{}}}",
            self.updated_at.timestamp_micros(),
            self.degraded
        );
    }

    fn from_notice(v: &serde_json::Value) -> Option<Occupancy> {
        let micros = v.get("updated_at")?.as_i64()?;
        Some(Occupancy {
            hive_id: v.get("hive_id")?.as_i64()?,
            occupancy: u32::try_from(v.get("occupancy")?.as_u64()?).ok()?,
            capacity: match v.get("capacity")? {
                serde_json::Value::Null => None,
                c => Some(u32::try_from(c.as_u64()?).ok()?),
            },
            updated_at: DateTime::<Utc>::from_timestamp_micros(micros)?,
            stale: false,
            degraded: v.get("degraded")?.as_bool()?,
        })
    }
}

/// The most bytes of changes in one notification (PostgreSQL takes payloads below 8,000 bytes,
/// and the node's name goes in front).
const NOTICE_MAX: usize = 7_000;

/// `changes` as the JSON arrays of the notifications that announce them, each below
/// `NOTICE_MAX` bytes.
pub fn notices(changes: &[Occupancy]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::with_capacity((changes.len() * 128).min(NOTICE_MAX));
    for o in changes {
        // Written in place; a change that overflows a non-empty array starts the next one.
        let at = cur.len();
        cur.push(if at == 0 { '[' } else { ',' });
        o.notice(&mut cur);
        if at > 0 && cur.len() + 1 > NOTICE_MAX {
            let one = cur.split_off(at + 1);
            cur.truncate(at);
            cur.push(']');
            out.push(std::mem::replace(
                &mut cur,
                String::with_capacity(NOTICE_MAX),
            ));
            cur.push('[');
            cur.push_str(&one);
        }
    }
    if !cur.is_empty() {
        cur.push(']');
        out.push(cur);
    }
    out
}

/// The changes a notification's JSON array carries; `None` when it does not read.
pub fn from_notices(json: &str) -> Option<Vec<Occupancy>> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.as_array()?.iter().map(Occupancy::from_notice).collect()
}

/// `hives/{id}/occupancy`.
pub fn topic(hive_id: i64) -> String {
    format!("hives/{hive_id}/occupancy")
}

/// The columns of `hive_occupancy` that make an [`Occupancy`], in the order [`from_row`] reads.
pub const COLUMNS: &str = "v.hive_id, v.occupancy, v.capacity, v.updated_at, v.degraded";

/// An [`Occupancy`] from a row of [`COLUMNS`].
pub fn from_row(r: &tokio_postgres::Row) -> Occupancy {
    Occupancy {
        hive_id: r.get(0),
        occupancy: u32::try_from(r.get::<_, i32>(1)).unwrap_or(0),
        capacity: r
            .get::<_, Option<i32>>(2)
            .and_then(|c| u32::try_from(c).ok()),
        updated_at: r.get::<_, std::time::SystemTime>(3).into(),
        stale: false,
        degraded: r.get(4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_answer_of_design_section_8() {
        let o = Occupancy {
            hive_id: 7,
            occupancy: 42,
            capacity: Some(120),
            updated_at: at("2026-11-22T18:30:05Z"),
            stale: false,
            degraded: false,
        };
        assert_eq!(
            o.to_json(),
            r#"{"hive_id":7,"occupancy":42,"capacity":120,"percent":35.0,"updated_at":"2026-11-22T18:30:05Z","stale":false,"degraded":false}"#
        );
        let v: serde_json::Value = serde_json::from_str(&o.to_json()).unwrap();
        assert_eq!(v["percent"], 35.0);
        assert_eq!(o.topic(), "hives/7/occupancy");
    }

    #[test]
    fn no_capacity_no_percent() {
        let o = Occupancy {
            hive_id: 1,
            occupancy: 3,
            capacity: None,
            updated_at: at("2026-01-01T00:00:00Z"),
            stale: true,
            degraded: true,
        };
        let v: serde_json::Value = serde_json::from_str(&o.to_json()).unwrap();
        assert!(v["capacity"].is_null() && v["percent"].is_null());
        assert_eq!(v["stale"], true);
        assert_eq!(v["degraded"], true);
    }

    #[test]
    fn percent_rounds_to_one_decimal() {
        let o = Occupancy {
            hive_id: 1,
            occupancy: 1,
            capacity: Some(3),
            updated_at: at("2026-01-01T00:00:00Z"),
            stale: false,
            degraded: false,
        };
        assert_eq!(o.percent(), Some(33.3));
    }

    #[test]
    fn notices_read_back_and_stay_below_the_payload_limit() {
        let changes: Vec<Occupancy> = (0..200)
            .map(|i| Occupancy {
                hive_id: i,
                occupancy: 5,
                capacity: (i % 2 == 0).then_some(40),
                updated_at: DateTime::<Utc>::from_timestamp_micros(1_764_547_200_123_456).unwrap(),
                stale: true,
                degraded: i % 3 == 0,
            })
            .collect();
        let cut = notices(&changes);
        assert!(cut.len() > 1, "200 changes do not fit one notification");
        assert!(cut.iter().all(|n| n.len() <= NOTICE_MAX));
        let back: Vec<Occupancy> = cut
            .iter()
            .flat_map(|n| from_notices(n).expect("reads"))
            .collect();
        let want: Vec<Occupancy> = changes
            .into_iter()
            .map(|o| Occupancy { stale: false, ..o })
            .collect();
        assert_eq!(back, want);
        assert!(notices(&[]).is_empty());
        assert!(from_notices("{}").is_none());
        assert!(from_notices("not json").is_none());
        assert!(from_notices(r#"[{"hive_id":1}]"#).is_none());
    }
}
