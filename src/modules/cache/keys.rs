//! The keys of the memcached replica, shared by the cache manager (who writes them) and the
//! workers (who read them, and fill a miss with `add`). Every key carries the version of the
//! stored shapes ([`SHAPE`]): a build that changes a shape reads and writes new keys, and never
//! serves what an older build stored.
//!
//! | key | value (flags 0) | expiry |
//! |---|---|---|
//! | `bizzy:v1:occ:{id}` | the occupancy answer, `"stale":false` | 1 day, refreshed by every change |
//! | `bizzy:v1:hive:{id}` | the hive's details, without the occupancy | 1 day |
//! | `bizzy:v1:types` | the `GET /v1/hive-types` answer | 1 day |
//! | `bizzy:v1:pass` | ASCII decimal unix milliseconds: every change committed before it is in the replica | none |

/// The version of the stored shapes, bumped whenever one changes.
pub const SHAPE: u32 = 1;

/// The occupancy answer of hive `hive`.
pub fn occupancy(hive: i64) -> String {
    format!("bizzy:v{SHAPE}:occ:{hive}")
}

/// The details of hive `hive`.
pub fn hive(hive: i64) -> String {
    format!("bizzy:v{SHAPE}:hive:{hive}")
}

/// The hive types.
pub fn hive_types() -> String {
    format!("bizzy:v{SHAPE}:types")
}

/// When the cache manager's last pass started.
pub fn pass() -> String {
    format!("bizzy:v{SHAPE}:pass")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_versioned() {
        assert_eq!(occupancy(7), "bizzy:v1:occ:7");
        assert_eq!(hive(42), "bizzy:v1:hive:42");
        assert_eq!(hive_types(), "bizzy:v1:types");
        assert_eq!(pass(), "bizzy:v1:pass");
    }
}
