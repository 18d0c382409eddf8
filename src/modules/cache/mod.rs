//! The memcached replica of the public resources (DESIGN.md section 7): the `[cache]` section,
//! where each key lives ([`ring`]) and what it is called ([`keys`]), and the cache manager
//! process that keeps the replica in step with PostgreSQL ([`manager`]), and the workers'
//! client that reads it ([`client`]).

pub mod client;
pub mod conf;
pub mod keys;
pub mod manager;
pub mod ring;
mod store;

pub use conf::CacheConf;

/// The `LISTEN/NOTIFY` channel on which the cache manager says which hives it just wrote to
/// the replica: the hive ids, separated by commas ('' for every hive). Workers expire their
/// answers of those hives, so a change shows at once rather than within `cache.micro_ttl`.
pub const REPLICA_CHANNEL: &str = "bizzy_replica";
