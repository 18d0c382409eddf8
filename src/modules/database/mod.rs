//! PostgreSQL, the source of truth: the `[database]` section (URL, pool, spool directory), and
//! the schema and the worker's I/O thread that grow here.

pub mod conf;

pub use conf::DatabaseConf;
