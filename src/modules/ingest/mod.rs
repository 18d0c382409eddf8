//! Sensor ingest: the `[ingest]` section (how sensor reports are checked: clock skew, counter
//! wraps and deltas), and the ingest module that grows here (decoders, counting, the batch
//! writer and the spool, PROTOCOL.md).

pub mod conf;

pub use conf::IngestConf;
