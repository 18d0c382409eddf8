//! The memcached replica of the public resources (DESIGN.md section 7): the `[cache]` section,
//! and the cache manager process that keeps the replica in step with PostgreSQL.

pub mod conf;
pub mod manager;

pub use conf::CacheConf;
