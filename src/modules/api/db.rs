//! What every business call shares on the I/O thread: the caller as the SQL sees it, the role
//! check (platform admin, or an admin of the account), PostgreSQL errors mapped to the API's
//! (a connection that fails: 503; a unique violation: 409; a check violation: 400), answers as
//! JSON, and the random secrets and device ids that registration issues.
//!
//! Calls never run `BEGIN` on the shared client (other calls may be pipelined on it at the same
//! time): what must be atomic is one statement.

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use super::caller::Caller;
use super::error::ApiError;
use super::page::Page;
use super::route::Json;
use crate::mqtt::auth::secret::os_random;

/// The caller, owned (a [`Caller`] moved to the I/O thread with its call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub uid: String,
    pub platform_admin: bool,
}

impl From<&Caller> for Who {
    fn from(c: &Caller) -> Who {
        Who {
            uid: c.uid.clone(),
            platform_admin: c.platform_admin,
        }
    }
}

/// SQL: whether the caller (`$1` platform admin, `$2` uid) administers the account `acc`.
pub fn allowed_sql(acc: &str) -> String {
    format!(
        "($1::bool OR EXISTS (SELECT 1 FROM account_admin aa JOIN app_user u ON u.id = aa.user_id \
         WHERE aa.account_id = {acc} AND u.firebase_uid = $2::text))"
    )
}

/// Ok when account `id` exists and `who` administers it; 404, 403 otherwise.
pub async fn authorize(db: &Client, who: &Who, id: i64) -> Result<(), ApiError> {
    let sql = format!(
        "SELECT {} FROM account a WHERE a.id = $3",
        allowed_sql("a.id")
    );
    let row = db
        .query_opt(&sql, &[&who.platform_admin, &who.uid, &id])
        .await
        .map_err(db_error)?;
    check_role(row.map(|r| r.get(0)), || format!("account {id}"))
}

/// The row of `sql` for `key` (`$3`), whose first column is [`allowed_sql`]: 404 when there is
/// none, 403 when the caller does not administer its account.
pub async fn find(
    db: &Client,
    who: &Who,
    sql: &str,
    key: &(dyn ToSql + Sync),
    what: impl Fn() -> String,
) -> Result<Row, ApiError> {
    let row = db
        .query_opt(sql, &[&who.platform_admin, &who.uid, key])
        .await
        .map_err(db_error)?;
    check_role(row.as_ref().map(|r| r.get(0)), &what)?;
    row.ok_or_else(|| ApiError::not_found(what()))
}

/// One page of an account's list with the role check in the same statement. `list` is a
/// SELECT whose first column is the row's id, reading `$3` (the account), `$4` (the id after
/// which the page starts) and `$5` (how many rows). The rows come back with the list's columns
/// from column 1 on; 404 when the account does not exist, 403 when the caller does not
/// administer it.
pub async fn page_of(
    db: &Client,
    who: &Who,
    account: i64,
    page: Page,
    list: &str,
) -> Result<Vec<Row>, ApiError> {
    let allowed = allowed_sql("a.id");
    let sql = format!(
        "SELECT {allowed}, x.* FROM account a LEFT JOIN LATERAL ({list}) x ON {allowed}
         WHERE a.id = $3"
    );
    let params: [&(dyn ToSql + Sync); 5] = [
        &who.platform_admin,
        &who.uid,
        &account,
        &page.after,
        &page.fetch(),
    ];
    let mut rows = db.query(&sql, &params).await.map_err(db_error)?;
    check_role(rows.first().map(|r| r.get(0)), || {
        format!("account {account}")
    })?;
    rows.retain(|r| r.get::<_, Option<i64>>(1).is_some());
    Ok(rows)
}

/// A write guarded by [`allowed_sql`] in the same statement: `sql` answers `(allowed, rows
/// written)`; none written (gone meanwhile) is 404 too.
pub async fn guarded_write(
    db: &Client,
    who: &Who,
    sql: &str,
    key: &(dyn ToSql + Sync),
    what: impl Fn() -> String,
) -> Result<Json, ApiError> {
    let row = find(db, who, sql, key, &what).await?;
    if row.get::<_, i64>(1) == 0 {
        return Err(ApiError::not_found(what()));
    }
    Ok(no_content())
}

/// `allowed` of a thing found (Some) or not (None): 404 or 403 unless allowed.
pub fn check_role(allowed: Option<bool>, what: impl Fn() -> String) -> Result<(), ApiError> {
    match allowed {
        None => Err(ApiError::not_found(what())),
        Some(false) => Err(ApiError::forbidden(format!(
            "you do not administer the account of {}",
            what()
        ))),
        Some(true) => Ok(()),
    }
}

/// A PostgreSQL error as the API answers it. The database cannot answer (503) as the ingest
/// writer judges it (`modules::ingest::writer`: connection 08, resources 53, operator 57, system
/// 58, and a read-only standby, 25006), and a transaction rolled back (40: serialization,
/// deadlock), which a client may try again.
pub fn db_error(e: tokio_postgres::Error) -> ApiError {
    let Some(db) = e.as_db_error() else {
        return ApiError::unavailable(format!("the database cannot answer: {e}"));
    };
    let code = db.code();
    let class = code.code().get(..2).unwrap_or("");
    if *code == SqlState::UNIQUE_VIOLATION {
        ApiError::conflict(db.detail().unwrap_or(db.message()).to_string())
    } else if *code == SqlState::CHECK_VIOLATION || class == "22" {
        let field = db
            .column()
            .map(str::to_string)
            .or_else(|| db.constraint().map(constraint_field))
            .unwrap_or_else(|| "body".into());
        ApiError::invalid(field, db.message().to_string())
    } else if crate::modules::database::unavailable(code) || class == "40" {
        ApiError::unavailable(format!("the database cannot answer: {}", db.message()))
    } else {
        ApiError::new(500, "internal", "the database refused the call")
    }
}

/// `hive_capacity_check` -> `capacity`: the column a CHECK constraint is named after.
fn constraint_field(name: &str) -> String {
    let base = name.strip_suffix("_check").unwrap_or(name);
    if base == "time_zone_name" {
        return "time_zone".into();
    }
    for table in [
        "sensor_report_config_",
        "address_",
        "hive_",
        "sensor_",
        "api_token_",
        "account_",
    ] {
        if let Some(col) = base.strip_prefix(table) {
            return col.to_string();
        }
    }
    base.to_string()
}

/// An answer of `status` with the JSON `v`.
pub fn json(status: u16, v: &Value) -> Json {
    Json {
        status,
        body: serde_json::to_vec(v).expect("a JSON value, whose keys are strings, serializes"),
    }
}

/// 204, no body.
pub fn no_content() -> Json {
    Json {
        status: 204,
        body: Vec::new(),
    }
}

/// An instant as the API writes it: RFC 3339, UTC, whole seconds, `Z`.
pub fn time(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A secret of 192 random bits, printable (base64url, 32 characters): an MQTT password.
pub fn new_secret() -> String {
    use base64::Engine;
    let mut b = [0u8; 24];
    os_random(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A device id for a sensor registered without one: `s-` and 16 lowercase hex digits.
pub fn new_device_id() -> String {
    let mut b = [0u8; 8];
    os_random(&mut b);
    let mut s = String::from("s-");
    for byte in b {
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_device_ids_are_random_and_well_formed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        let d = new_device_id();
        assert_eq!(d.len(), 18);
        assert!(d[2..]
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn constraints_name_their_column() {
        assert_eq!(constraint_field("hive_capacity_check"), "capacity");
        assert_eq!(constraint_field("address_country_check"), "country");
        assert_eq!(constraint_field("odd"), "odd");
    }

    #[test]
    fn roles_answer_404_then_403() {
        assert_eq!(
            check_role(None, || "hive 1".into()).unwrap_err().status,
            404
        );
        assert_eq!(
            check_role(Some(false), || "hive 1".into())
                .unwrap_err()
                .status,
            403
        );
        assert!(check_role(Some(true), || "hive 1".into()).is_ok());
    }
}
