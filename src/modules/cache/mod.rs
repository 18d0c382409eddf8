//! The memcached replica of the public resources (DESIGN.md section 7): the `[cache]` section,
//! where each key lives ([`ring`]) and what it is called ([`keys`]), and the cache manager
//! process that keeps the replica in step with PostgreSQL ([`manager`]).

pub mod conf;
pub mod keys;
pub mod manager;
pub mod ring;

pub use conf::CacheConf;
