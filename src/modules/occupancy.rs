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

    /// Reads the JSON a [`CHANNEL`] notification carries (the answer's shape with
    /// `updated_at` in microseconds since the epoch, as the database writes it).
    pub fn from_notice(json: &str) -> Option<Occupancy> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
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

/// The SQL expression of a notification's JSON for the `hive_occupancy` row `v`.
pub const NOTICE: &str = "json_build_object('hive_id', v.hive_id, 'occupancy', v.occupancy, \
     'capacity', v.capacity, 'updated_at', (extract(epoch FROM v.updated_at) * 1000000)::int8, \
     'degraded', v.degraded)::text";

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
    fn a_notice_reads_back() {
        let n = r#"{"hive_id":9,"occupancy":5,"capacity":null,"updated_at":1764547200123456,"degraded":true}"#;
        let o = Occupancy::from_notice(n).unwrap();
        assert_eq!(o.hive_id, 9);
        assert_eq!(o.occupancy, 5);
        assert_eq!(o.capacity, None);
        assert!(o.degraded && !o.stale);
        assert_eq!(o.updated_at.timestamp_micros(), 1764547200123456);
        assert!(Occupancy::from_notice("{}").is_none());
        assert!(Occupancy::from_notice("not json").is_none());
    }
}
