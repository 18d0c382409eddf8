//! The hook the MQTT layer calls on every PUBLISH it accepts: the seam where sensor reports
//! leave MQTT for ingest (decoding, storage). A hook may hold the acknowledgement of a QoS 1 or 2
//! message (PUBACK, PUBREC) until the message is durable: it answers [`Ack::Later`] and, when
//! the report is committed, calls [`crate::mqtt::broker::Broker::durable`] with the ticket it
//! was given. Acknowledgements still leave in the order the messages arrived ([MQTT-4.6.0-2]).

use crate::mqtt::session::Message;

/// When to acknowledge an accepted PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Now: nothing to wait for.
    Now,
    /// When the hook calls `Broker::durable` with the ticket it was given.
    Later,
}

/// Who published.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
}

/// Called on the worker's event-loop thread: must not block.
pub trait Ingest {
    /// A PUBLISH the ACL allowed. `ticket` identifies it for a later `Broker::durable`; QoS 0
    /// messages have nothing to acknowledge and their answer is ignored.
    fn publish(&mut self, origin: Origin<'_>, msg: &Message, ticket: u64) -> Ack;
}

/// The hook of this build: every message is acknowledged at once.
#[derive(Debug, Default)]
pub struct NoIngest;

impl Ingest for NoIngest {
    fn publish(&mut self, _origin: Origin<'_>, _msg: &Message, _ticket: u64) -> Ack {
        Ack::Now
    }
}
