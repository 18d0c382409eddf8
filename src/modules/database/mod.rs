//! PostgreSQL, the source of truth: the `[database]` section (URL, pool, spool directory), the
//! schema and `bizzy migrate` that applies it, and the worker's I/O thread that grows here.

pub mod conf;
pub mod migrate;
pub mod pool;

pub use conf::DatabaseConf;
