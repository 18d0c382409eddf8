//! The batch between the event loop and the database's I/O thread: the [`Report`]s the ingest
//! hook accepted (decoded on the loop, acknowledgement held), and the [`Written`] answer
//! [`store::write`](super::store::write) gives once the batch is durable.
//!
//! Plain data, shared by both sides: the loop builds reports and reads answers, the I/O thread
//! does the reverse. Nothing here does I/O.

/// One accepted sensor message on its way to the database, decoded on the event loop.
#[derive(Debug, Clone)]
pub struct Report {
    /// The broker's ticket of a held acknowledgement (QoS 1/2); `None` for QoS 0.
    pub ticket: Option<u64>,
    pub device_id: String,
    pub payload: crate::modules::ingest::decode::Payload,
    /// The payload as received (the record, and the duplicate key).
    pub raw: Vec<u8>,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

/// What became of each report, in batch order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored (applied to occupancy or not: the row says why).
    Stored,
    /// An identical payload of this sensor and kind within the duplicate window: stored once,
    /// before; a sign of life all the same.
    Duplicate,
    /// No live sensor has this device id: nothing stored.
    UnknownSensor,
    /// Stored, not counted: a report of the kind the sensor does not count in (PROTOCOL.md,
    /// "General rules").
    ModeMismatch,
    /// PostgreSQL was unreachable: appended and fsynced to the worker's spool, durable, stored
    /// when the spool is replayed (`spool/`).
    Spooled,
}

/// A hive whose occupancy the batch changed, for its retained `hives/{id}/occupancy`.
pub use crate::modules::occupancy::Occupancy;

/// The answer for a batch.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub stored: Vec<Stored>,
    pub hives: Vec<Occupancy>,
}
