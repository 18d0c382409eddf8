//! Sensor ingest: the `[ingest]` section (how sensor reports are checked: clock skew, counter
//! wraps and deltas), `decode/` (the sensor payloads of PROTOCOL.md sections 1-5: bytes to
//! values and back, the reasons a payload is refused, `bizzy decode`), and `count/` (the counting
//! rules of section 6: trusted time, per-sensor counters, hive occupancy and its daily reset, as
//! pure functions the storage code calls), and `batch.rs` (the reports the event loop hands
//! the database's I/O thread, and its answer). The batch writer and the spool grow here too.

pub mod batch;
pub mod conf;
pub mod count;
pub mod decode;

pub use conf::IngestConf;
