//! Accounts (businesses) and their admins: a platform admin creates accounts and names each
//! account's admins; an admin sees the accounts they administer.

use serde_json::json;
use tokio_postgres::Client;

use super::db::{self, allowed_sql, db_error, Who};
use super::error::ApiError;
use super::page::Page;
use super::route::{Json, Req};

/// A call on accounts.
#[derive(Debug)]
pub enum AccountCall {
    Create { name: String },
    List { who: Who, page: Page },
    Get { who: Who, id: i64 },
    AddAdmin { id: i64, uid: String },
    RemoveAdmin { id: i64, uid: String },
}

/// `POST /v1/accounts` `{"name"}` (platform admin).
pub fn create(req: &Req<'_>) -> Result<AccountCall, ApiError> {
    req.platform_admin()?;
    let mut o = req.object(&["name"])?;
    let name = o.string("name", 1, 200)?;
    let name = o.required("name", name)?;
    Ok(AccountCall::Create { name })
}

/// `GET /v1/accounts`: all of them for a platform admin, else those the caller administers.
pub fn list(req: &Req<'_>) -> Result<AccountCall, ApiError> {
    Ok(AccountCall::List {
        who: req.who()?,
        page: req.page()?,
    })
}

/// `GET /v1/accounts/{id}`.
pub fn get(req: &Req<'_>, id: i64) -> Result<AccountCall, ApiError> {
    Ok(AccountCall::Get {
        who: req.who()?,
        id,
    })
}

/// `PUT /v1/accounts/{id}/admins/{uid}` (platform admin).
pub fn add_admin(req: &Req<'_>, id: i64, uid: &str) -> Result<AccountCall, ApiError> {
    req.platform_admin()?;
    Ok(AccountCall::AddAdmin {
        id,
        uid: uid_of(uid)?,
    })
}

/// `DELETE /v1/accounts/{id}/admins/{uid}` (platform admin).
pub fn remove_admin(req: &Req<'_>, id: i64, uid: &str) -> Result<AccountCall, ApiError> {
    req.platform_admin()?;
    Ok(AccountCall::RemoveAdmin {
        id,
        uid: uid_of(uid)?,
    })
}

/// A Firebase uid: 1 to 128 characters.
fn uid_of(uid: &str) -> Result<String, ApiError> {
    match uid.chars().count() {
        1..=128 => Ok(uid.to_string()),
        _ => Err(ApiError::invalid("uid", "uid must be 1 to 128 characters")),
    }
}

impl AccountCall {
    pub async fn run(self, db: &Client) -> Result<Json, ApiError> {
        match self {
            AccountCall::Create { name } => {
                let row = db
                    .query_one(
                        "INSERT INTO account (name) VALUES ($1) RETURNING id",
                        &[&name],
                    )
                    .await
                    .map_err(db_error)?;
                let id: i64 = row.get(0);
                Ok(db::json(201, &json!({ "id": id, "name": name })))
            }
            AccountCall::List { who, page } => run_list(db, &who, page).await,
            AccountCall::Get { who, id } => {
                let sql = format!(
                    "SELECT {}, a.name FROM account a WHERE a.id = $3",
                    allowed_sql("a.id")
                );
                let row = db::find(db, &who, &sql, &id, || format!("account {id}")).await?;
                let name: String = row.get(1);
                Ok(db::json(200, &json!({ "id": id, "name": name })))
            }
            AccountCall::AddAdmin { id, uid } => run_add_admin(db, id, &uid).await,
            AccountCall::RemoveAdmin { id, uid } => {
                let n = db
                    .execute(
                        "DELETE FROM account_admin aa USING app_user u
                         WHERE aa.account_id = $1 AND aa.user_id = u.id AND u.firebase_uid = $2",
                        &[&id, &uid],
                    )
                    .await
                    .map_err(db_error)?;
                if n == 0 {
                    return Err(ApiError::not_found(format!("admin {uid} of account {id}")));
                }
                Ok(db::no_content())
            }
        }
    }
}

async fn run_list(db: &Client, who: &Who, page: Page) -> Result<Json, ApiError> {
    let sql = format!(
        "SELECT a.id, a.name FROM account a WHERE a.id > $3 AND {}
         ORDER BY a.id LIMIT $4",
        allowed_sql("a.id")
    );
    let rows = db
        .query(
            &sql,
            &[&who.platform_admin, &who.uid, &page.after, &page.fetch()],
        )
        .await
        .map_err(db_error)?;
    let items = rows
        .iter()
        .map(|r| {
            let id: i64 = r.get(0);
            let name: String = r.get(1);
            (id, json!({ "id": id, "name": name }))
        })
        .collect();
    Ok(db::json(200, &page.answer(items)))
}

/// Names `uid` an admin of account `id`, making its user row when the uid never signed in.
async fn run_add_admin(db: &Client, id: i64, uid: &str) -> Result<Json, ApiError> {
    let row = db
        .query_one(
            "WITH acc AS (SELECT id FROM account WHERE id = $1),
                  u AS (INSERT INTO app_user (firebase_uid)
                        SELECT $2::text WHERE EXISTS (SELECT 1 FROM acc)
                        ON CONFLICT (firebase_uid) DO UPDATE SET firebase_uid = EXCLUDED.firebase_uid
                        RETURNING id),
                  ins AS (INSERT INTO account_admin (account_id, user_id)
                          SELECT acc.id, u.id FROM acc, u ON CONFLICT DO NOTHING)
             SELECT count(*) FROM acc",
            &[&id, &uid],
        )
        .await
        .map_err(db_error)?;
    if row.get::<_, i64>(0) == 0 {
        return Err(ApiError::not_found(format!("account {id}")));
    }
    Ok(db::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_1_to_128_characters() {
        assert!(uid_of("a").is_ok());
        assert!(uid_of(&"é".repeat(128)).is_ok());
        assert_eq!(
            uid_of(&"a".repeat(129)).unwrap_err().field.as_deref(),
            Some("uid")
        );
        assert!(uid_of("").is_err());
    }
}
