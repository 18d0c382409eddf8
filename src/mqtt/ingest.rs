//! The hook the MQTT layer calls on every PUBLISH it accepts: the seam where sensor reports
//! leave MQTT for ingest (decoding, storage). The wiring installs one per worker
//! ([`crate::mqtt::service::Hooks`]).
//!
//! A hook may hold the acknowledgement of a QoS 1 or 2 message (PUBACK, PUBREC) until the
//! message is durable: it answers [`Ack::Later`] and, when the report is committed, completes
//! the ticket it was given through its [`Acks`] handle. Acknowledgements still leave in the
//! order the messages arrived ([MQTT-4.6.0-2]), never before their ticket is completed: a
//! session with a held acknowledgement moves to another worker, or ends with a stopping server,
//! only once it is released. The broker calls [`Ingest::flush`] once per loop turn, after every
//! connection had its turn, so a hook can send what a turn gathered as one batch. A hook that
//! cannot take more ([`Ingest::has_room`] false) stops the connections from reading PUBLISH
//! packets until it can: the client's bytes wait in the kernel (TCP back-pressure).

use std::cell::RefCell;
use std::rc::Rc;

use crate::mqtt::session::Message;

/// When to acknowledge an accepted PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Now: nothing to wait for.
    Now,
    /// When the hook completes the ticket through its [`Acks`] handle.
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
    /// A PUBLISH the ACL allowed. `ticket` identifies it for [`Acks::durable`]; QoS 0
    /// messages have nothing to acknowledge and their answer is ignored.
    fn publish(&mut self, origin: Origin<'_>, msg: &Message, ticket: u64) -> Ack;

    /// Once per loop turn, after the turn's packets: send what was gathered.
    fn flush(&mut self) {}

    /// Whether the hook can take another message now. While it cannot, no connection reads a
    /// PUBLISH; the broker asks again every loop turn.
    fn has_room(&self) -> bool {
        true
    }

    /// Whether taken messages are not yet stored: a stopping worker stays until they are.
    fn busy(&self) -> bool {
        false
    }

    /// A retained message this worker keeps from now on as the newest of its topic: published
    /// here (a client, the server's own), at a sibling (over the mesh), or rebuilt from the
    /// database. Not called for removals.
    fn retained(&mut self, _msg: &Message) {}
}

/// The hook's side of held acknowledgements: completes tickets from the loop thread (for
/// example when the worker's I/O thread answers that a batch is committed). Cheap to clone;
/// the broker collects the completed tickets once per loop turn.
#[derive(Debug, Clone, Default)]
pub struct Acks(Rc<RefCell<Vec<u64>>>);

impl Acks {
    /// The message of `ticket` is durable: its acknowledgement may leave.
    pub fn durable(&self, ticket: u64) {
        self.0.borrow_mut().push(ticket);
    }

    /// The tickets completed since the last call.
    pub(crate) fn take(&self) -> Vec<u64> {
        std::mem::take(&mut *self.0.borrow_mut())
    }

    /// Whether tickets wait to be collected.
    pub(crate) fn pending(&self) -> bool {
        !self.0.borrow().is_empty()
    }
}

/// The server's own messages, published from the loop thread by the wiring (a hive's new
/// occupancy once its reports are committed, a configuration for a sensor): the broker routes
/// them once per loop turn like a client's PUBLISH (retained store, this worker's subscribers,
/// the siblings), or restores a retained message this worker lacks. Cheap to clone. They never
/// pass the authority: `commands/#` and `hives/#` are the server's, and this is its way in.
#[derive(Debug, Clone, Default)]
pub struct Outbox(Rc<RefCell<Vec<(Message, Delivery)>>>);

/// How the broker takes a message of the [`Outbox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Published: retained (when it says so), routed here and to the siblings.
    Publish,
    /// A retained message rebuilt from the database: kept only if this worker has none for its
    /// topic, and older than any published one; not routed (the live value, if any, was).
    Restore,
}

impl Outbox {
    /// Publishes `msg` at the broker's next turn.
    pub fn publish(&self, msg: Message) {
        self.0.borrow_mut().push((msg, Delivery::Publish));
    }

    /// Restores the retained `msg` unless this worker already has one for its topic.
    pub fn restore(&self, msg: Message) {
        self.0.borrow_mut().push((msg, Delivery::Restore));
    }

    /// The messages given since the last call.
    pub(crate) fn take(&self) -> Vec<(Message, Delivery)> {
        std::mem::take(&mut *self.0.borrow_mut())
    }

    /// Whether messages wait to be routed.
    pub(crate) fn pending(&self) -> bool {
        !self.0.borrow().is_empty()
    }
}

/// The hook of a worker without ingest: every message is acknowledged at once.
#[derive(Debug, Default)]
pub struct NoIngest;

impl Ingest for NoIngest {
    fn publish(&mut self, _origin: Origin<'_>, _msg: &Message, _ticket: u64) -> Ack {
        Ack::Now
    }
}
