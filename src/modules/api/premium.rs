//! The premium reads of a hive (DESIGN.md section 8), from the hourly rollups (`hive_hourly`),
//! never the raw reports:
//!
//! ```text
//! /v1/hives/{id}/history?from=&to=   GET  one item per local clock hour (feature `history`)
//! /v1/hives/{id}/peak-hours?weeks=   GET  weekday x hour, relative to the peak (`peak_hours`)
//! ```
//!
//! Both need a signed-in caller whose subscription carries the feature (402 `payment_required`
//! otherwise; a platform admin is no exception). The query is checked on the event loop
//! ([`history`], [`peak_hours`]); on the I/O thread one statement checks the feature, finds the
//! live hive and reads its rows, so a subscription that ends between a check and a read cannot
//! be seen half-way. The feature is checked before the hive: without it, every hive answers 402.
//!
//! Hours are the hive's local clock hours: a day on which the clocks go back has 25 of them (the
//! repeated hour twice, each with its own offset), one on which they go forward 23.

use serde::Serialize;
use tokio_postgres::{Client, Row};

use super::db::{db_error, Who};
use super::error::ApiError;
use super::route::{Json, Req};

/// The most local days one history call covers.
pub const MAX_DAYS: i64 = 31;
/// The days a history covers when the query names one end or none.
pub const DEFAULT_DAYS: i32 = 7;
/// The weeks peak hours average over when the query does not say.
pub const DEFAULT_WEEKS: i32 = 4;
/// The most weeks peak hours may average over.
pub const MAX_WEEKS: i32 = 12;

/// A premium read, checked on the event loop, run on the I/O thread.
#[derive(Debug)]
pub enum PremiumCall {
    /// `GET /v1/hives/{id}/history`.
    History(History),
    /// `GET /v1/hives/{id}/peak-hours`.
    PeakHours(PeakHours),
}

/// The hourly series of a hive over local days `from..=to`, `YYYY-MM-DD`. A missing end is
/// [`DEFAULT_DAYS`] from the other (within 1970 to 9999), or up to today in the hive's zone:
/// the database's to reckon, as only it knows the zone.
#[derive(Debug)]
pub struct History {
    who: Who,
    hive: i64,
    days: (Option<String>, Option<String>),
}

/// The weekday x hour profile of a hive over the last `weeks` weeks.
#[derive(Debug)]
pub struct PeakHours {
    who: Who,
    hive: i64,
    weeks: i32,
}

/// `GET /v1/hives/{id}/history?from=YYYY-MM-DD&to=YYYY-MM-DD`: 401 anonymous; 400 naming the
/// parameter for an unknown or repeated one, a date that is not one, `to` before `from` or more
/// than [`MAX_DAYS`] days. One date alone spans [`DEFAULT_DAYS`] from (or up to) it.
pub fn history(req: &Req<'_>, hive: i64) -> Result<PremiumCall, ApiError> {
    let who = req.who()?;
    let [from, to] = params(req.query, ["from", "to"])?;
    let from = from.map(|v| date("from", v)).transpose()?;
    let to = to.map(|v| date("to", v)).transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if t < f {
            return Err(ApiError::invalid("to", "to must not be before from"));
        }
        if (t - f).num_days() >= MAX_DAYS {
            return Err(ApiError::invalid(
                "to",
                format!("from to to spans at most {MAX_DAYS} days"),
            ));
        }
    }
    let days = (from.map(|d| d.to_string()), to.map(|d| d.to_string()));
    Ok(PremiumCall::History(History { who, hive, days }))
}

/// `GET /v1/hives/{id}/peak-hours?weeks=N` (1 to [`MAX_WEEKS`], default [`DEFAULT_WEEKS`]):
/// 401 anonymous; 400 naming the parameter for an unknown or repeated one, or a bad `weeks`.
pub fn peak_hours(req: &Req<'_>, hive: i64) -> Result<PremiumCall, ApiError> {
    let who = req.who()?;
    let [weeks] = params(req.query, ["weeks"])?;
    let weeks = match weeks {
        None => DEFAULT_WEEKS,
        Some(v) => match v.parse::<i32>() {
            Ok(n) if (1..=MAX_WEEKS).contains(&n) && !v.starts_with('+') => n,
            _ => {
                return Err(ApiError::invalid(
                    "weeks",
                    format!("weeks must be an integer from 1 to {MAX_WEEKS}"),
                ))
            }
        },
    };
    Ok(PremiumCall::PeakHours(PeakHours { who, hive, weeks }))
}

/// The values of the parameters `names` in the query string, in that order: 400 naming a
/// parameter the call does not take or one given twice.
fn params<'q, const N: usize>(
    query: Option<&'q str>,
    names: [&str; N],
) -> Result<[Option<&'q str>; N], ApiError> {
    let mut out = [None; N];
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(i) = names.iter().position(|n| *n == k) else {
            return Err(ApiError::invalid(
                k,
                format!("{k} is not a parameter of this call"),
            ));
        };
        if out[i].replace(v).is_some() {
            return Err(ApiError::invalid(k, format!("{k} is given more than once")));
        }
    }
    Ok(out)
}

/// A calendar date written `YYYY-MM-DD`, year 1970 to 9999.
fn date(field: &str, v: &str) -> Result<chrono::NaiveDate, ApiError> {
    let shaped = v.len() == 10
        && v.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let parsed = shaped
        .then(|| chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
        .flatten()
        .filter(|d| v >= "1970-01-01" && d.to_string() == v);
    parsed.ok_or_else(|| {
        ApiError::invalid(
            field,
            format!("{field} must be a date YYYY-MM-DD from 1970-01-01 on"),
        )
    })
}

impl PremiumCall {
    /// The statement and its answer, on the I/O thread.
    pub async fn run(self, db: &Client) -> Result<Json, ApiError> {
        match self {
            PremiumCall::History(h) => h.run(db).await,
            PremiumCall::PeakHours(p) => p.run(db).await,
        }
    }
}

/// The gate and the hive, as both statements begin: `f.ok` (the caller has the feature `$2`)
/// and `h` (the live hive `$3` and its zone, only when `f.ok`), for uid `$1`.
const GATE: &str = "f AS (SELECT user_has_feature($1::text, $2::text) AS ok),
     h AS (SELECT h.id, h.time_zone::text AS tz FROM hive h, f
           WHERE f.ok AND h.id = $3 AND h.deleted_at IS NULL)";

/// The hours of local days `$4..=$5` of hive `h` (a NULL end: `$6` days from or up to the
/// other, or up to today in the hive's zone): the
/// instants each local clock hour starts, a UTC hour apart from the first day's midnight to the
/// day after the last's, so a repeated hour comes twice and a skipped one not at all. Each with
/// its local time, its UTC offset in seconds and its rollup row's figures, if any. (`least`
/// ignores a NULL, so each end is clamped inside a sum that stays NULL when its date is.)
const HISTORY: &str = "r AS (SELECT h.id, h.tz,
            coalesce($4::text::date,
                     $5::text::date - least($6::int - 1, $5::text::date - date '1970-01-01'),
                     (now() AT TIME ZONE h.tz)::date - ($6::int - 1)) AS d0,
            coalesce($5::text::date,
                     $4::text::date + least($6::int - 1, date '9999-12-31' - $4::text::date),
                     (now() AT TIME ZONE h.tz)::date) AS d1
         FROM h),
     s AS (SELECT r.id, r.tz, g.hour FROM r,
           generate_series(r.d0::timestamp AT TIME ZONE r.tz,
                           (r.d1 + 1)::timestamp AT TIME ZONE r.tz - interval '1 hour',
                           interval '1 hour') AS g(hour))
SELECT f.ok, h.tz,
       to_char(s.hour AT TIME ZONE s.tz, 'YYYY-MM-DD\"T\"HH24:MI:SS'),
       extract(epoch FROM (s.hour AT TIME ZONE s.tz) - (s.hour AT TIME ZONE 'UTC'))::int,
       x.average_occupancy, x.peak_occupancy, x.entries, x.exits,
       coalesce(x.observed_ms, 0) / 3600000.0::float8
FROM f LEFT JOIN h ON true
LEFT JOIN s ON true
LEFT JOIN hive_hourly x ON x.hive_id = s.id AND x.hour = s.hour
ORDER BY s.hour";

/// The time-weighted average occupancy of hive `h` per local ISO weekday (1 Monday) and hour
/// over the last `$4` weeks: every person-millisecond over every millisecond observed.
const PEAK_HOURS: &str = "g AS (SELECT extract(isodow FROM x.hour AT TIME ZONE h.tz)::int AS dow,
            extract(hour FROM x.hour AT TIME ZONE h.tz)::int AS hr,
            sum(x.occupancy_ms)::float8 / nullif(sum(x.observed_ms), 0)::float8 AS avg
         FROM h JOIN hive_hourly x ON x.hive_id = h.id
         WHERE x.hour >= now() - make_interval(weeks => $4::int)
         GROUP BY 1, 2)
SELECT f.ok, h.tz, g.dow, g.hr, g.avg
FROM f LEFT JOIN h ON true LEFT JOIN g ON true";

/// The rows of a gated statement, or 402 (no feature) or 404 (no live hive). Every row carries
/// the gate in column 0 and the zone in column 1; there is at least one row (of `f`).
fn gated(rows: Vec<Row>, feature: &str, hive: i64) -> Result<(String, Vec<Row>), ApiError> {
    let first = rows
        .first()
        .ok_or_else(|| ApiError::not_found(format!("hive {hive}")))?;
    if !first.get::<_, bool>(0) {
        return Err(payment_required(feature));
    }
    let tz: Option<String> = first.get(1);
    let tz = tz.ok_or_else(|| ApiError::not_found(format!("hive {hive}")))?;
    Ok((tz, rows))
}

/// 402: the caller's subscription does not carry `feature`.
pub fn payment_required(feature: &str) -> ApiError {
    ApiError::new(
        402,
        "payment_required",
        format!("this call needs a subscription with the feature {feature}"),
    )
}

/// The history answer.
#[derive(Debug, Serialize)]
struct HistoryJson {
    hive_id: i64,
    time_zone: String,
    hours: Vec<Hour>,
}

/// One local clock hour: figures null where no rollup row exists.
#[derive(Debug, Serialize)]
struct Hour {
    hour: String,
    average: Option<f64>,
    peak: Option<i32>,
    entries: Option<i32>,
    exits: Option<i32>,
    completeness: f64,
}

impl History {
    async fn run(self, db: &Client) -> Result<Json, ApiError> {
        let sql = format!("WITH {GATE}, {HISTORY}");
        let (from, to) = &self.days;
        let rows = db
            .query(
                &sql,
                &[
                    &self.who.uid,
                    &"history",
                    &self.hive,
                    from,
                    to,
                    &DEFAULT_DAYS,
                ],
            )
            .await
            .map_err(db_error)?;
        let (time_zone, rows) = gated(rows, "history", self.hive)?;
        let hours = rows
            .iter()
            .filter_map(|r| {
                let local: Option<String> = r.get(2);
                Some(Hour {
                    hour: format!("{}{}", local?, offset(r.get(3))),
                    average: r.get(4),
                    peak: r.get(5),
                    entries: r.get(6),
                    exits: r.get(7),
                    completeness: r.get(8),
                })
            })
            .collect();
        let answer = HistoryJson {
            hive_id: self.hive,
            time_zone,
            hours,
        };
        Ok(to_json(&answer))
    }
}

/// A UTC offset in seconds as RFC 3339 writes it: `+02:00`, `-03:30`, `+00:00`.
fn offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let m = seconds.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// The ISO weekdays by name, Monday first.
const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// The peak hours answer.
#[derive(Debug, Serialize)]
struct PeakJson {
    hive_id: i64,
    time_zone: String,
    weeks: i32,
    days: Vec<Day>,
}

/// One weekday's 24 hours.
#[derive(Debug, Serialize)]
struct Day {
    weekday: &'static str,
    hours: Vec<Slot>,
}

/// One hour of a weekday: its average relative to the week's busiest hour (1.0), null where
/// nothing was observed.
#[derive(Debug, Serialize)]
struct Slot {
    hour: u8,
    relative: Option<f64>,
}

impl PeakHours {
    async fn run(self, db: &Client) -> Result<Json, ApiError> {
        let sql = format!("WITH {GATE}, {PEAK_HOURS}");
        let rows = db
            .query(
                &sql,
                &[&self.who.uid, &"peak_hours", &self.hive, &self.weeks],
            )
            .await
            .map_err(db_error)?;
        let (time_zone, rows) = gated(rows, "peak_hours", self.hive)?;
        let mut grid = [[None; 24]; 7];
        for r in &rows {
            let (dow, hr, avg): (Option<i32>, Option<i32>, Option<f64>) =
                (r.get(2), r.get(3), r.get(4));
            let cell = dow
                .zip(hr)
                .and_then(|(d, h)| Some((usize::try_from(d - 1).ok()?, usize::try_from(h).ok()?)));
            if let Some((d, h)) = cell.filter(|&(d, h)| d < 7 && h < 24) {
                grid[d][h] = avg;
            }
        }
        let answer = PeakJson {
            hive_id: self.hive,
            time_zone,
            weeks: self.weeks,
            days: relative(&grid),
        };
        Ok(to_json(&answer))
    }
}

/// Each average over the highest of them; all observed hours 0.0 when the place was always
/// empty (no peak to be relative to), null where nothing was observed.
fn relative(grid: &[[Option<f64>; 24]; 7]) -> Vec<Day> {
    let peak = grid
        .iter()
        .flatten()
        .flatten()
        .copied()
        .fold(0.0f64, f64::max);
    WEEKDAYS
        .iter()
        .zip(grid)
        .map(|(weekday, hours)| Day {
            weekday,
            hours: (0u8..)
                .zip(hours)
                .map(|(hour, avg)| Slot {
                    hour,
                    relative: avg.map(|a| if peak > 0.0 { a / peak } else { 0.0 }),
                })
                .collect(),
        })
        .collect()
}

/// 200 with `v`.
fn to_json<T: Serialize>(v: &T) -> Json {
    Json {
        status: 200,
        body: serde_json::to_vec(v).expect("the premium shapes have string keys"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::api::caller::Caller;

    fn req<'a>(query: Option<&'a str>, caller: Option<&'a Caller>) -> Req<'a> {
        Req {
            method: "GET",
            path: "/v1/hives/1/history",
            query,
            body: b"",
            caller,
        }
    }

    fn user() -> Caller {
        Caller {
            uid: "u".into(),
            platform_admin: false,
        }
    }

    type Days = Result<(Option<String>, Option<String>), (u16, Option<String>)>;

    fn days(query: &str) -> Days {
        let u = user();
        match history(&req(Some(query), Some(&u)), 1) {
            Ok(PremiumCall::History(h)) => Ok(h.days),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err((e.status, e.field)),
        }
    }

    fn bad(field: &str) -> Days {
        Err((400, Some(field.into())))
    }

    #[test]
    fn history_ranges_are_dates_at_most_31_days_apart() {
        let d = |s: &str| Some(s.to_string());
        assert_eq!(days(""), Ok((None, None)));
        assert_eq!(days("from=2026-10-25"), Ok((d("2026-10-25"), None)));
        assert_eq!(days("to=9999-12-31"), Ok((None, d("9999-12-31"))));
        assert_eq!(
            days("from=2026-01-01&to=2026-01-31"),
            Ok((d("2026-01-01"), d("2026-01-31")))
        );
        assert_eq!(days("from=2026-01-01&to=2026-02-01"), bad("to"));
        assert_eq!(days("from=2026-01-02&to=2026-01-01"), bad("to"));
        assert_eq!(days("from=2026-02-30"), bad("from"));
        assert_eq!(days("from=2026-1-01"), bad("from"));
        assert_eq!(days("to=+026-01-01"), bad("to"));
        assert_eq!(days("to=1969-12-31"), bad("to"));
        assert_eq!(days("to="), bad("to"));
        assert_eq!(days("to"), bad("to"));
        assert_eq!(days("from=2026-01-01&from=2026-01-02"), bad("from"));
        assert_eq!(days("form=2026-01-01"), bad("form"));
        let anonymous = history(&req(None, None), 1).unwrap_err();
        assert_eq!(anonymous.status, 401);
    }

    #[test]
    fn peak_hours_take_1_to_12_weeks_and_a_caller() {
        let u = user();
        let weeks = |q: &str| match peak_hours(&req(Some(q), Some(&u)), 1) {
            Ok(PremiumCall::PeakHours(p)) => Ok(p.weeks),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err((e.status, e.field)),
        };
        assert_eq!(weeks(""), Ok(4));
        assert_eq!(weeks("weeks=1"), Ok(1));
        assert_eq!(weeks("weeks=12"), Ok(12));
        for q in ["weeks=0", "weeks=13", "weeks=+2", "weeks=x", "weeks="] {
            assert_eq!(weeks(q), Err((400, Some("weeks".into()))), "{q}");
        }
        assert_eq!(weeks("limit=2"), Err((400, Some("limit".into()))));
        let anonymous = peak_hours(&req(None, None), 1).unwrap_err();
        assert_eq!(anonymous.status, 401);
    }

    proptest::proptest! {
        #[test]
        fn no_query_panics(query in "[ -~]{0,60}", peaks in proptest::prelude::any::<bool>()) {
            let u = user();
            let r = req(Some(&query), Some(&u));
            let answer = if peaks { peak_hours(&r, 1) } else { history(&r, 1) };
            if let Err(e) = answer {
                proptest::prop_assert_eq!(e.status, 400);
            }
        }
    }

    #[test]
    fn offsets_are_written_as_rfc_3339_does() {
        assert_eq!(offset(7200), "+02:00");
        assert_eq!(offset(10800), "+03:00");
        assert_eq!(offset(0), "+00:00");
        assert_eq!(offset(-12600), "-03:30");
        assert_eq!(offset(19800), "+05:30");
    }

    #[test]
    fn the_busiest_hour_is_one_and_unobserved_hours_null() {
        let mut grid = [[None; 24]; 7];
        grid[0][18] = Some(40.0);
        grid[4][22] = Some(80.0);
        grid[6][3] = Some(0.0);
        let days = relative(&grid);
        assert_eq!(days[0].weekday, "monday");
        assert_eq!(days[6].weekday, "sunday");
        assert_eq!(days[0].hours[18].relative, Some(0.5));
        assert_eq!(days[4].hours[22].relative, Some(1.0));
        assert_eq!(days[6].hours[3].relative, Some(0.0));
        assert_eq!(days[1].hours[0].relative, None);
        assert_eq!(days[3].hours.len(), 24);
        let mut empty = [[None; 24]; 7];
        empty[2][5] = Some(0.0);
        assert_eq!(relative(&empty)[2].hours[5].relative, Some(0.0));
    }
}
