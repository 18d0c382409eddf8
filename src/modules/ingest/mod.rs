//! Sensor ingest: the `[ingest]` section (how sensor reports are checked: clock skew, counter
//! wraps and deltas), `decode/` (the sensor payloads of PROTOCOL.md sections 1-5: bytes to
//! values and back, the reasons a payload is refused, `bizzy decode`), `count/` (the counting
//! rules of section 6: trusted time, per-sensor counters, hive occupancy and its daily reset, as
//! pure functions the storage code calls), `batch.rs` (the reports the event loop hands the
//! database's I/O thread, and its answer), `store/` (the batch writer: one transaction per
//! batch through the counting rules), and the module's two halves: `hook.rs` on the event loop
//! (the MQTT ingest hook) and `writer.rs` on the worker's I/O thread, with `spool/` (where
//! batches wait, fsynced and acknowledged, while PostgreSQL is unreachable, and their replay)
//! and `stats.rs` for `/metrics`. `sim/` is `bizzy sim`, the simulated sensors that drive all
//! of it from outside (a client process, never part of the server).

pub mod batch;
pub mod conf;
pub mod count;
pub mod decode;
pub mod hook;
pub mod login;
pub mod push;
pub mod sim;
pub mod spool;
pub mod stats;
pub mod store;
pub mod worker;
pub mod writer;

pub use conf::IngestConf;
