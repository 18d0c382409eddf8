//! The counting rules (PROTOCOL.md section 6): from sensor reports to live hive occupancy, as
//! pure functions over plain state structs.
//!
//! The storage code owns the state: it locks the sensor's and the hive's rows in the batch
//! transaction, reads them into plain structs, calls these functions in receive order, and
//! writes the structs back. Nothing here does I/O or reads a clock: every instant is passed in,
//! so the same reports always give the same counts, on any worker or node.
//!
//! Files: `time.rs` trusted time.

pub mod time;

pub use time::{trusted, Clock, SensorClock, Trusted};
