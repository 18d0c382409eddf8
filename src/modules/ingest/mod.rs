//! Sensor ingest: the `[ingest]` section (how sensor reports are checked: clock skew, counter
//! wraps and deltas) and `decode/`, the sensor payloads of PROTOCOL.md sections 1-5 (bytes to
//! values and back, the reasons a payload is refused, `bizzy decode`). Counting, the batch
//! writer and the spool grow here too.

pub mod conf;
pub mod decode;

pub use conf::IngestConf;
