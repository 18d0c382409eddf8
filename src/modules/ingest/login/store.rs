//! The sensor logins' side of the worker's I/O thread: reads the login columns of the sensor
//! table (all of them for the worker's copy, or one device id's for a CONNECT the copy cannot
//! answer) and a display token's row, and checks a password against its PBKDF2 hash off the
//! event loop.
//!
//! The reads take a connection of the worker's pool (never the batches' own, which a batch
//! holds while PostgreSQL is away). A lookup gives up after [`LOOKUP_TIMEOUT`], waiting for a
//! connection included (the CONNECT waiting for it is then refused, well within its own
//! deadline); the copy's read is tried again a few times before it gives up. Hash checks run on
//! the runtime's blocking pool, one at a time per worker, so a reconnect storm takes one core
//! per worker at most and never stalls the thread's database work.

use std::time::Duration;

use tokio_postgres::types::Type;
use tokio_postgres::Row;

use crate::modules::database::pool::{self, Pool};
use crate::mqtt::auth::secret;

/// Longest a lookup for a CONNECT may take, connecting included.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest the read of every login may take, and how often it is tried.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
const LOAD_TRIES: u32 = 4;

/// A password digest (SHA-256), what the loop remembers of a password it has seen verified.
pub type Digest = [u8; 32];

/// A device id's login as the table has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A live sensor: its secret's PHC string and its hive.
    Live { secret_hash: String, hive_id: i64 },
    /// Only deleted sensors had this device id: it must not log in.
    Deleted,
    /// No sensor ever had it.
    Unknown,
}

/// A display token as the `api_token` table has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFound {
    /// Not revoked: its secret's PHC string and the hives it may follow.
    Live {
        secret_hash: String,
        hive_ids: Vec<i64>,
    },
    /// Revoked: it must not log in.
    Revoked,
    /// No such token.
    Unknown,
}

/// A password to check against a hash, for the CONNECT of `ticket`. `device_id` names whose
/// hash it is: a device id, or a token's user name (`token:{id}`, which no device id can be).
#[derive(Debug)]
pub struct Check {
    pub ticket: u64,
    /// The CONNECT's client id (a check that a notification overtook is asked again with it).
    pub client_id: String,
    pub device_id: String,
    pub phc: String,
    pub password: Vec<u8>,
    pub digest: Digest,
}

/// What the loop asks.
#[derive(Debug)]
pub enum Ask {
    /// Every device id's login (the worker's copy).
    All,
    /// One device id's.
    One(String),
    /// One display token's.
    Token(i64),
    /// Whether a password matches its hash.
    Verify(Box<Check>),
}

/// The answers, in kind.
#[derive(Debug)]
pub enum Reply {
    /// Every device id with a live or deleted sensor.
    All(Result<Vec<(String, Found)>, LoginError>),
    One {
        device_id: String,
        found: Result<Found, LoginError>,
    },
    Token {
        id: i64,
        found: Result<TokenFound, LoginError>,
    },
    /// The check of a [`Check`], given back whole: a login that changed while its password was
    /// checked has the CONNECT asked again.
    Verified { check: Box<Check>, ok: bool },
}

/// Why a read of the sensor table failed.
#[derive(Debug)]
pub enum LoginError {
    Db(tokio_postgres::Error),
    /// No answer within the time allowed.
    Timeout,
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginError::Db(e) => f.write_str(&pool::describe(e)),
            LoginError::Timeout => f.write_str("no answer in time"),
        }
    }
}

impl std::error::Error for LoginError {}

/// Every device id, its live sensor's login when it has one (a deleted sensor's id may be
/// registered again: the live row wins).
const ALL: &str = "SELECT DISTINCT ON (device_id) device_id, secret_hash, hive_id, \
                   deleted_at IS NULL AS live \
                   FROM sensor ORDER BY device_id, deleted_at IS NULL DESC";
const ONE: &str = "SELECT device_id, secret_hash, hive_id, deleted_at IS NULL AS live \
                   FROM sensor WHERE device_id = $1 ORDER BY deleted_at IS NULL DESC LIMIT 1";

/// The hash checker, on the I/O thread.
pub struct Logins {
    /// One hash check at a time.
    cpu: tokio::sync::Semaphore,
}

impl Default for Logins {
    fn default() -> Logins {
        Logins {
            cpu: tokio::sync::Semaphore::new(1),
        }
    }
}

impl Logins {
    /// Answers `ask`, reading through `pool`.
    pub async fn serve(&self, ask: Ask, pool: &Pool) -> Reply {
        match ask {
            Ask::All => Reply::All(all(pool).await),
            Ask::One(device_id) => {
                let found = tokio::time::timeout(LOOKUP_TIMEOUT, one(pool, &device_id))
                    .await
                    .unwrap_or(Err(LoginError::Timeout));
                Reply::One { device_id, found }
            }
            Ask::Token(id) => {
                let found = tokio::time::timeout(LOOKUP_TIMEOUT, token(pool, id))
                    .await
                    .unwrap_or(Err(LoginError::Timeout));
                Reply::Token { id, found }
            }
            Ask::Verify(c) => self.verify(c).await,
        }
    }

    async fn verify(&self, c: Box<Check>) -> Reply {
        let ok = match self.cpu.acquire().await {
            Ok(_permit) => {
                let (phc, password) = (c.phc.clone(), c.password.clone());
                tokio::task::spawn_blocking(move || secret::verify(&phc, &password))
                    .await
                    .unwrap_or(false)
            }
            Err(_) => false,
        };
        Reply::Verified { check: c, ok }
    }
}

/// Every device id's login, tried again a few times.
async fn all(pool: &Pool) -> Result<Vec<(String, Found)>, LoginError> {
    let mut wait = Duration::from_millis(200);
    let mut tries = 0;
    loop {
        tries += 1;
        let read = async {
            let c = pool.get().await.map_err(LoginError::Db)?;
            c.query_typed(ALL, &[]).await.map_err(LoginError::Db)
        };
        match tokio::time::timeout(LOAD_TIMEOUT, read).await {
            Ok(Ok(rows)) => return rows.iter().map(row).collect(),
            Ok(Err(e)) if tries >= LOAD_TRIES => return Err(e),
            Err(_) if tries >= LOAD_TRIES => return Err(LoginError::Timeout),
            _ => {}
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}

/// One device id's login.
async fn one(pool: &Pool, device_id: &str) -> Result<Found, LoginError> {
    let c = pool.get().await.map_err(LoginError::Db)?;
    let rows = c
        .query_typed(ONE, &[(&device_id, Type::TEXT)])
        .await
        .map_err(LoginError::Db)?;
    match rows.first() {
        Some(r) => row(r).map(|(_, found)| found),
        None => Ok(Found::Unknown),
    }
}

const TOKEN: &str = "SELECT secret_hash, hive_ids, revoked_at IS NULL AS live \
                     FROM api_token WHERE id = $1";

/// One display token's login.
async fn token(pool: &Pool, id: i64) -> Result<TokenFound, LoginError> {
    let c = pool.get().await.map_err(LoginError::Db)?;
    let rows = c
        .query_typed(TOKEN, &[(&id, Type::INT8)])
        .await
        .map_err(LoginError::Db)?;
    let Some(r) = rows.first() else {
        return Ok(TokenFound::Unknown);
    };
    if !r.try_get::<_, bool>(2).map_err(LoginError::Db)? {
        return Ok(TokenFound::Revoked);
    }
    Ok(TokenFound::Live {
        secret_hash: r.try_get(0).map_err(LoginError::Db)?,
        hive_ids: r.try_get(1).map_err(LoginError::Db)?,
    })
}

/// A row of [`ALL`] or [`ONE`].
fn row(r: &Row) -> Result<(String, Found), LoginError> {
    let device_id: String = r.try_get(0).map_err(LoginError::Db)?;
    let live: bool = r.try_get(3).map_err(LoginError::Db)?;
    let found = if live {
        Found::Live {
            secret_hash: r.try_get(1).map_err(LoginError::Db)?,
            hive_id: r.try_get(2).map_err(LoginError::Db)?,
        }
    } else {
        Found::Deleted
    };
    Ok((device_id, found))
}
