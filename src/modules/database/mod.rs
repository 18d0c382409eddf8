//! PostgreSQL, the source of truth: the `[database]` section (URL, pool, spool directory), the
//! schema and `bizzy migrate` that applies it, the connections of a worker's I/O thread
//! (`pool.rs`), LISTEN/NOTIFY for the worker (`listen.rs`), and the questions an HTTP request
//! waits for (`query.rs`).

pub mod conf;
pub mod listen;
pub mod migrate;
pub mod pool;
pub mod query;

pub use conf::DatabaseConf;

/// Whether SQLSTATE `code` says PostgreSQL cannot serve now, rather than refusing what it was
/// asked: classes 08 (connection), 53 (insufficient resources), 57 (operator intervention: a
/// shutdown, a recovery), 58 (system error), and 25006 (a read-only standby after a failover).
/// The ingest writer spools on these; the API answers them 503.
pub fn unavailable(code: &tokio_postgres::error::SqlState) -> bool {
    let code = code.code();
    ["08", "53", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class))
        || code == "25006"
}
