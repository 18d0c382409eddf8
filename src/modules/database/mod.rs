//! PostgreSQL, the source of truth: the `[database]` section (URL, pool, spool directory), the
//! schema and `bizzy migrate` that applies it, the connections of a worker's I/O thread
//! (`pool.rs`), and LISTEN/NOTIFY for the worker (`listen.rs`).

pub mod conf;
pub mod listen;
pub mod migrate;
pub mod pool;

pub use conf::DatabaseConf;
