//! Sensor ingest: the `[ingest]` section (how sensor reports are checked: clock skew, counter
//! wraps and deltas), the counting rules in `count/` (trusted time, per-sensor counters, hive
//! occupancy and its daily reset, as pure functions the storage code calls), and the ingest
//! module that grows here (decoders, the batch writer and the spool, PROTOCOL.md).

pub mod conf;
pub mod count;

pub use conf::IngestConf;
