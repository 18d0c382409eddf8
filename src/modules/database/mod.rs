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
