//! Sensors of an account: registration (the MQTT password made, hashed and shown once, on the
//! I/O thread), list, health (`GET /v1/sensors/{device_id}`), edit, delete, and the
//! configuration push's database half: a new configuration id, strictly increasing per sensor.
//! Publishing it is not done here: a trigger on sensor_report_config notifies the MQTT side.

use serde_json::{json, Value};
use tokio_postgres::{Client, Row};

use super::body::checked;
use super::db::{self, allowed_sql, db_error, time, Who};
use super::error::ApiError;
use super::page::Page;
use super::route::{Json, Req};
use crate::mqtt::auth::secret::hash_secret;

/// A call on sensors.
#[derive(Debug)]
pub enum SensorCall {
    Register {
        who: Who,
        account: i64,
        new: NewSensor,
    },
    List {
        who: Who,
        account: i64,
        page: Page,
    },
    Health {
        who: Who,
        device_id: String,
    },
    Patch {
        who: Who,
        device_id: String,
        patch: SensorPatch,
    },
    Delete {
        who: Who,
        device_id: String,
    },
    Config {
        who: Who,
        device_id: String,
        config: Config,
    },
}

/// A registration's body.
#[derive(Debug, PartialEq)]
pub struct NewSensor {
    pub hive_id: i64,
    pub device_id: Option<String>,
    pub direction: Option<String>,
    pub counter_modulus: Option<i32>,
    pub name: Option<String>,
}

/// An edit's body: `None` leaves a field; `Some(None)` clears it (name, counting_mode).
#[derive(Debug, Default, PartialEq)]
pub struct SensorPatch {
    pub direction: Option<String>,
    pub counter_modulus: Option<i32>,
    pub counting_mode: Option<Option<String>>,
    pub name: Option<Option<String>>,
    pub hive_id: Option<i64>,
}

/// A configuration (PROTOCOL.md section 5).
#[derive(Debug, PartialEq, Eq)]
pub struct Config {
    pub threshold_cm: i32,
    pub reporting_interval_min: i32,
    pub status_interval_min: i32,
    pub event_threshold: i32,
}

/// `^[A-Za-z0-9_-]{1,64}$`: a device id (MQTT client id, username and topic segment).
pub fn valid_device_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn device_id(s: &str) -> Result<String, String> {
    if valid_device_id(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "device_id \"{s}\" is not 1 to 64 of A-Z a-z 0-9 _ -"
        ))
    }
}

fn one_of(allowed: &'static [&'static str]) -> impl Fn(&str) -> Result<String, String> {
    move |s| {
        if allowed.contains(&s) {
            Ok(s.to_string())
        } else {
            Err(format!("\"{s}\" is not one of {}", allowed.join(", ")))
        }
    }
}

const DIRECTIONS: &[&str] = &["normal", "reversed"];
const MODES: &[&str] = &["counter", "event"];

/// `POST /v1/accounts/{id}/sensors`.
pub fn register(req: &Req<'_>, account: i64) -> Result<SensorCall, ApiError> {
    let who = req.who()?;
    let keys = [
        "hive_id",
        "device_id",
        "direction",
        "counter_modulus",
        "name",
    ];
    let mut o = req.object(&keys)?;
    let f = o.int("hive_id", 1, i64::MAX)?;
    let hive_id = o.required("hive_id", f)?;
    let f = checked(&mut o, "device_id", 64, device_id)?;
    let device_id = o.not_null("device_id", f)?;
    let f = checked(&mut o, "direction", 16, one_of(DIRECTIONS))?;
    let direction = o.not_null("direction", f)?;
    let f = o.int32("counter_modulus", 2, 65536)?;
    let counter_modulus = o.not_null("counter_modulus", f)?;
    let name = o.string("name", 1, 100)?.value();
    let new = NewSensor {
        hive_id,
        device_id,
        direction,
        counter_modulus,
        name,
    };
    Ok(SensorCall::Register { who, account, new })
}

/// `PATCH /v1/sensors/{device_id}`.
pub fn patch(req: &Req<'_>, device_id: String) -> Result<SensorCall, ApiError> {
    let who = req.who()?;
    let keys = [
        "direction",
        "counter_modulus",
        "counting_mode",
        "name",
        "hive_id",
    ];
    let mut o = req.object(&keys)?;
    let mut p = SensorPatch::default();
    let f = checked(&mut o, "direction", 16, one_of(DIRECTIONS))?;
    p.direction = o.not_null("direction", f)?;
    let f = o.int32("counter_modulus", 2, 65536)?;
    p.counter_modulus = o.not_null("counter_modulus", f)?;
    p.counting_mode = checked(&mut o, "counting_mode", 16, one_of(MODES))?.patch();
    p.name = o.string("name", 1, 100)?.patch();
    let f = o.int("hive_id", 1, i64::MAX)?;
    p.hive_id = o.not_null("hive_id", f)?;
    Ok(SensorCall::Patch {
        who,
        device_id,
        patch: p,
    })
}

/// `PUT /v1/sensors/{device_id}/config`: every field required, in PROTOCOL.md's ranges.
pub fn config(req: &Req<'_>, device_id: String) -> Result<SensorCall, ApiError> {
    let who = req.who()?;
    let keys = [
        "threshold_cm",
        "reporting_interval_min",
        "status_interval_min",
        "event_threshold",
    ];
    let mut o = req.object(&keys)?;
    let mut get = |key: &str, min: i32, max: i32| -> Result<i32, ApiError> {
        let f = o.int32(key, min, max)?;
        o.required(key, f)
    };
    let config = Config {
        threshold_cm: get("threshold_cm", 10, 1000)?,
        reporting_interval_min: get("reporting_interval_min", 1, 1440)?,
        status_interval_min: get("status_interval_min", 1, 1440)?,
        event_threshold: get("event_threshold", 1, 1000)?,
    };
    Ok(SensorCall::Config {
        who,
        device_id,
        config,
    })
}

/// `GET /v1/sensors/{device_id}`.
pub fn health(req: &Req<'_>, device_id: String) -> Result<SensorCall, ApiError> {
    Ok(SensorCall::Health {
        who: req.who()?,
        device_id,
    })
}

/// `DELETE /v1/sensors/{device_id}`.
pub fn delete(req: &Req<'_>, device_id: String) -> Result<SensorCall, ApiError> {
    Ok(SensorCall::Delete {
        who: req.who()?,
        device_id,
    })
}

/// `GET /v1/accounts/{id}/sensors`.
pub fn list(req: &Req<'_>, account: i64) -> Result<SensorCall, ApiError> {
    Ok(SensorCall::List {
        who: req.who()?,
        account,
        page: req.page()?,
    })
}

impl SensorCall {
    pub async fn run(self, db: &Client) -> Result<Json, ApiError> {
        match self {
            SensorCall::Register { who, account, new } => {
                db::authorize(db, &who, account).await?;
                run_register(db, account, new).await
            }
            SensorCall::List { who, account, page } => run_list(db, &who, account, page).await,
            SensorCall::Health { who, device_id } => run_health(db, &who, &device_id).await,
            SensorCall::Patch {
                who,
                device_id,
                patch,
            } => {
                let (sensor, account) = authorize(db, &who, &device_id).await?;
                run_patch(db, sensor, account, &patch).await?;
                run_health(db, &who, &device_id).await
            }
            SensorCall::Delete { who, device_id } => {
                let sql = format!(
                    "WITH x AS (SELECT s.id, {} AS ok FROM sensor s JOIN hive h ON h.id = s.hive_id
                                WHERE s.device_id = $3 AND s.deleted_at IS NULL),
                          d AS (UPDATE sensor SET deleted_at = now(), updated_at = now()
                                WHERE id = (SELECT id FROM x WHERE ok) AND deleted_at IS NULL
                                RETURNING id)
                     SELECT x.ok, (SELECT count(*) FROM d) FROM x",
                    allowed_sql("h.account_id")
                );
                db::guarded_write(db, &who, &sql, &device_id, || format!("sensor {device_id}"))
                    .await
            }
            SensorCall::Config {
                who,
                device_id,
                config,
            } => super::config::store(db, &who, &device_id, &config).await,
        }
    }
}

/// The live sensor `device_id` and its account, when the caller administers it: (sensor id,
/// account id); 404 or 403 otherwise.
async fn authorize(db: &Client, who: &Who, device_id: &str) -> Result<(i64, i64), ApiError> {
    let sql = format!(
        "SELECT {}, s.id, h.account_id FROM sensor s JOIN hive h ON h.id = s.hive_id
         WHERE s.device_id = $3 AND s.deleted_at IS NULL",
        allowed_sql("h.account_id")
    );
    let row = db::find(db, who, &sql, &device_id, || format!("sensor {device_id}")).await?;
    Ok((row.get(1), row.get(2)))
}

/// Registers the sensor on a live hive of `account`, with a fresh secret: 201 with the MQTT
/// credentials (the only time the password is shown).
async fn run_register(db: &Client, account: i64, new: NewSensor) -> Result<Json, ApiError> {
    let device_id = new.device_id.unwrap_or_else(db::new_device_id);
    let secret = db::new_secret();
    let hash = hash_secret(secret.as_bytes());
    let row = db
        .query_opt(
            "INSERT INTO sensor (device_id, hive_id, name, secret_hash, direction, counter_modulus)
             SELECT $1::text, h.id, $3::text, $4::text, coalesce($5::text, 'normal'),
                    coalesce($6::int4, 65536)
             FROM hive h WHERE h.id = $2 AND h.account_id = $7 AND h.deleted_at IS NULL
             RETURNING hive_id, name, direction, counter_modulus, counting_mode",
            &[
                &device_id,
                &new.hive_id,
                &new.name,
                &hash,
                &new.direction,
                &new.counter_modulus,
                &account,
            ],
        )
        .await
        .map_err(|e| match db_error(e) {
            c if c.status == 409 => ApiError::conflict(format!("device id {device_id} is in use")),
            other => other,
        })?;
    let row = row.ok_or_else(|| {
        ApiError::invalid(
            "hive_id",
            format!("hive {} is no hive of account {account}", new.hive_id),
        )
    })?;
    let mut v = summary(&device_id, &row, 0);
    v["mqtt_username"] = json!(device_id);
    v["mqtt_password"] = json!(secret);
    Ok(db::json(201, &v))
}

/// A sensor's settings from `row`'s columns hive_id, name, direction, counter_modulus,
/// counting_mode, from `at` on.
fn summary(device_id: &str, r: &Row, at: usize) -> Value {
    json!({
        "device_id": device_id,
        "hive_id": r.get::<_, i64>(at),
        "name": r.get::<_, Option<String>>(at + 1),
        "direction": r.get::<_, String>(at + 2),
        "counter_modulus": r.get::<_, i32>(at + 3),
        "counting_mode": r.get::<_, Option<String>>(at + 4),
    })
}

async fn run_list(db: &Client, who: &Who, account: i64, page: Page) -> Result<Json, ApiError> {
    let list = "SELECT s.id, s.device_id, s.hive_id, s.name, s.direction, s.counter_modulus,
                       s.counting_mode
                FROM sensor s JOIN hive h ON h.id = s.hive_id
                WHERE h.account_id = $3 AND s.deleted_at IS NULL AND s.id > $4
                ORDER BY s.id LIMIT $5";
    let rows = db::page_of(db, who, account, page, list).await?;
    let items = rows
        .iter()
        .map(|r| (r.get(1), summary(r.get(2), r, 3)))
        .collect();
    Ok(db::json(200, &page.answer(items)))
}

/// The health answer of DESIGN.md section 8, with the sensor's settings.
async fn run_health(db: &Client, who: &Who, device_id: &str) -> Result<Json, ApiError> {
    let sql = format!(
        "SELECT {}, sh.hive_id, s.name, s.direction, s.counter_modulus, s.counting_mode,
                sh.online, sh.last_seen, s.firmware_version, s.battery_mv, s.gprs_signal,
                s.sensor_state, s.discarded_events, s.missed_messages, s.restarts,
                s.clock_skew_s, sh.configuration_id, sh.configuration_acknowledged
         FROM sensor_health sh JOIN sensor s ON s.id = sh.sensor_id
         JOIN hive h ON h.id = s.hive_id WHERE sh.device_id = $3",
        allowed_sql("h.account_id")
    );
    let r = db::find(db, who, &sql, &device_id, || format!("sensor {device_id}")).await?;
    let mut v = summary(device_id, &r, 1);
    let fields = [
        ("online", json!(r.get::<_, bool>(6))),
        (
            "last_seen",
            json!(r.get::<_, Option<std::time::SystemTime>>(7).map(time)),
        ),
        ("firmware_version", json!(r.get::<_, Option<i64>>(8))),
        ("battery_mv", json!(r.get::<_, Option<i32>>(9))),
        ("gprs_signal", json!(r.get::<_, Option<i16>>(10))),
        ("sensor_state", json!(r.get::<_, Option<i32>>(11))),
        ("discarded_events", json!(r.get::<_, Option<i32>>(12))),
        ("missed_messages", json!(r.get::<_, i64>(13))),
        ("restarts", json!(r.get::<_, i64>(14))),
        ("clock_skew_s", json!(r.get::<_, Option<i32>>(15))),
        (
            "configuration",
            json!({ "id": r.get::<_, i64>(16), "acknowledged": r.get::<_, bool>(17) }),
        ),
    ];
    for (k, value) in fields {
        v[k] = value;
    }
    Ok(db::json(200, &v))
}

/// Applies an edit; a new hive must be a live hive of the sensor's account (else 400 hive_id).
async fn run_patch(
    db: &Client,
    sensor: i64,
    account: i64,
    p: &SensorPatch,
) -> Result<(), ApiError> {
    let (set_mode, mode) = (p.counting_mode.is_some(), p.counting_mode.clone().flatten());
    let (set_name, name) = (p.name.is_some(), p.name.clone().flatten());
    let row = db
        .query_one(
            "WITH ok AS (SELECT $7::int8 IS NULL OR EXISTS (SELECT 1 FROM hive
                           WHERE id = $7 AND account_id = $8 AND deleted_at IS NULL) AS ok),
                  s AS (UPDATE sensor SET
                          direction = coalesce($2::text, direction),
                          counter_modulus = coalesce($3::int4, counter_modulus),
                          counting_mode = CASE WHEN $4::bool THEN $5::text ELSE counting_mode END,
                          name = CASE WHEN $6::bool THEN $9::text ELSE name END,
                          hive_id = coalesce($7::int8, hive_id),
                          updated_at = now()
                        WHERE id = $1 AND deleted_at IS NULL AND (SELECT ok FROM ok)
                        RETURNING 1)
             SELECT (SELECT ok FROM ok), (SELECT count(*) FROM s)",
            &[
                &sensor,
                &p.direction,
                &p.counter_modulus,
                &set_mode,
                &mode,
                &set_name,
                &p.hive_id,
                &account,
                &name,
            ],
        )
        .await
        .map_err(db_error)?;
    if !row.get::<_, bool>(0) {
        return Err(ApiError::invalid(
            "hive_id",
            "hive_id is no live hive of the sensor's account",
        ));
    }
    if row.get::<_, i64>(1) == 0 {
        return Err(ApiError::not_found("the sensor"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::api::caller::Caller;

    fn req<'a>(body: &'a [u8], caller: &'a Caller) -> Req<'a> {
        Req {
            method: "POST",
            path: "/v1/x",
            query: None,
            body,
            caller: Some(caller),
        }
    }

    fn field(r: Result<SensorCall, ApiError>) -> String {
        r.unwrap_err().field.unwrap_or_default()
    }

    #[test]
    fn registration_and_config_bodies() {
        let c = Caller {
            uid: "u".into(),
            platform_admin: false,
        };
        assert!(valid_device_id("door-1_A") && !valid_device_id("") && !valid_device_id("a b"));
        assert!(!valid_device_id(&"a".repeat(65)));
        assert_eq!(field(register(&req(b"{}", &c), 1)), "hive_id");
        assert_eq!(
            field(register(&req(br#"{"hive_id":1,"device_id":"a/b"}"#, &c), 1)),
            "device_id"
        );
        assert_eq!(
            field(register(&req(br#"{"hive_id":1,"direction":"up"}"#, &c), 1)),
            "direction"
        );
        assert_eq!(
            field(register(
                &req(br#"{"hive_id":1,"counter_modulus":1}"#, &c),
                1
            )),
            "counter_modulus"
        );
        let full = br#"{"threshold_cm":10,"reporting_interval_min":1440,"status_interval_min":1,"event_threshold":1000}"#;
        assert!(config(&req(full, &c), "d".into()).is_ok());
        let low = br#"{"threshold_cm":9,"reporting_interval_min":1,"status_interval_min":1,"event_threshold":1}"#;
        assert_eq!(field(config(&req(low, &c), "d".into())), "threshold_cm");
        let missing = br#"{"threshold_cm":10,"reporting_interval_min":1,"status_interval_min":1}"#;
        assert_eq!(
            field(config(&req(missing, &c), "d".into())),
            "event_threshold"
        );
        assert_eq!(
            field(patch(&req(br#"{"counting_mode":"x"}"#, &c), "d".into())),
            "counting_mode"
        );
    }
}
