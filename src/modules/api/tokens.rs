//! Display API tokens: an account admin creates a token limited to named live hives of the
//! account (the MQTT login of an embedded display: username `token:{id}`, the password shown
//! once and stored hashed), lists them, and revokes one (revoked_at set: it exists no more).

use serde_json::json;
use tokio_postgres::Client;

use super::db::{self, allowed_sql, db_error, time, Who};
use super::error::ApiError;
use super::page::Page;
use super::route::{Json, Req};
use crate::mqtt::auth::secret::hash_secret;

/// The most hives one token may name.
pub const MAX_HIVES: usize = 100;

/// A call on display tokens.
#[derive(Debug)]
pub enum TokenCall {
    Create {
        who: Who,
        account: i64,
        name: String,
        hive_ids: Vec<i64>,
    },
    List {
        who: Who,
        account: i64,
        page: Page,
    },
    Revoke {
        who: Who,
        id: i64,
    },
}

/// `POST /v1/accounts/{id}/tokens` `{"name", "hive_ids"}`.
pub fn create(req: &Req<'_>, account: i64) -> Result<TokenCall, ApiError> {
    let who = req.who()?;
    let mut o = req.object(&["name", "hive_ids"])?;
    let f = o.string("name", 1, 100)?;
    let name = o.required("name", f)?;
    let f = o.ids("hive_ids", 1, MAX_HIVES)?;
    let hive_ids = o.required("hive_ids", f)?;
    Ok(TokenCall::Create {
        who,
        account,
        name,
        hive_ids,
    })
}

/// `GET /v1/accounts/{id}/tokens`.
pub fn list(req: &Req<'_>, account: i64) -> Result<TokenCall, ApiError> {
    Ok(TokenCall::List {
        who: req.who()?,
        account,
        page: req.page()?,
    })
}

/// `DELETE /v1/tokens/{id}`.
pub fn revoke(req: &Req<'_>, id: i64) -> Result<TokenCall, ApiError> {
    Ok(TokenCall::Revoke {
        who: req.who()?,
        id,
    })
}

impl TokenCall {
    pub async fn run(self, db: &Client) -> Result<Json, ApiError> {
        match self {
            TokenCall::Create {
                who,
                account,
                name,
                hive_ids,
            } => {
                db::authorize(db, &who, account).await?;
                run_create(db, account, name, hive_ids).await
            }
            TokenCall::List { who, account, page } => run_list(db, &who, account, page).await,
            TokenCall::Revoke { who, id } => {
                let sql = format!(
                    "WITH t AS (SELECT t.id, {} AS ok FROM api_token t
                                WHERE t.id = $3 AND t.revoked_at IS NULL),
                          r AS (UPDATE api_token SET revoked_at = now()
                                WHERE id = (SELECT id FROM t WHERE ok) AND revoked_at IS NULL
                                RETURNING id)
                     SELECT t.ok, (SELECT count(*) FROM r) FROM t",
                    allowed_sql("t.account_id")
                );
                db::guarded_write(db, &who, &sql, &id, || format!("token {id}")).await
            }
        }
    }
}

/// Creates the token when every hive is a live hive of the account (else 400 hive_ids).
async fn run_create(
    db: &Client,
    account: i64,
    name: String,
    hive_ids: Vec<i64>,
) -> Result<Json, ApiError> {
    let secret = db::new_secret();
    let hash = hash_secret(secret.as_bytes());
    let row = db
        .query_opt(
            "WITH ok AS (SELECT count(*) = cardinality($3::int8[]) AS ok FROM hive
                         WHERE id = ANY($3::int8[]) AND account_id = $1 AND deleted_at IS NULL)
             INSERT INTO api_token (account_id, name, secret_hash, hive_ids)
             SELECT $1::int8, $2::text, $4::text, $3::int8[] FROM ok WHERE ok.ok
             RETURNING id",
            &[&account, &name, &hive_ids, &hash],
        )
        .await
        .map_err(db_error)?;
    let row = row.ok_or_else(|| {
        ApiError::invalid(
            "hive_ids",
            "hive_ids names a hive that is no live hive of the account",
        )
    })?;
    let id: i64 = row.get(0);
    let v = json!({
        "id": id,
        "name": name,
        "hive_ids": hive_ids,
        "mqtt_username": format!("token:{id}"),
        "mqtt_password": secret,
    });
    Ok(db::json(201, &v))
}

async fn run_list(db: &Client, who: &Who, account: i64, page: Page) -> Result<Json, ApiError> {
    let list = "SELECT id, name, hive_ids, created_at FROM api_token
                WHERE account_id = $3 AND revoked_at IS NULL AND id > $4
                ORDER BY id LIMIT $5";
    let rows = db::page_of(db, who, account, page, list).await?;
    let items = rows
        .iter()
        .map(|r| {
            let id: i64 = r.get(1);
            let v = json!({
                "id": id,
                "name": r.get::<_, String>(2),
                "hive_ids": r.get::<_, Vec<i64>>(3),
                "mqtt_username": format!("token:{id}"),
                "created_at": time(r.get(4)),
            });
            (id, v)
        })
        .collect();
    Ok(db::json(200, &page.answer(items)))
}
