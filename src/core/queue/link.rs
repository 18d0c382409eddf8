//! Links: the bidirectional message connections that the pattern sockets are built on.
//!
//! Owns the [`Link`] trait, which both transports implement (inproc: [`Endpoint`], a pipe each
//! way; ipc: [`super::ipc::IpcChannel`]), so every pattern works over either. A link never
//! blocks: a full link answers `WouldBlock` with the message back, an empty one `WouldBlock`.

use std::io;

use super::error::{RecvError, SendError};
use super::pipe::{Receiver, Sender};
use super::Msg;

/// A non-blocking, bidirectional, message-preserving connection.
pub trait Link {
    /// Queues a message for sending; it may stay in a pre-write batch until
    /// [`Link::flush`]. `WouldBlock` at the high-water mark hands the message back.
    fn write(&mut self, msg: Msg) -> Result<(), SendError<Msg>>;

    /// Publishes the pending batch (one atomic operation, or one system call for ipc).
    fn flush(&mut self) -> io::Result<()>;

    /// Takes the next incoming message. `WouldBlock` arms the link's readable wake-up.
    fn try_recv(&mut self) -> Result<Msg, RecvError>;

    /// Writes and flushes one message.
    fn send(&mut self, msg: Msg) -> Result<(), SendError<Msg>> {
        self.write(msg)?;
        self.flush().map_err(|e| SendError::Io(e, Msg::empty()))
    }
}

/// One end of an inproc connection: a pipe out and a pipe in.
pub struct Endpoint {
    /// The outgoing pipe.
    pub tx: Sender<Msg>,
    /// The incoming pipe.
    pub rx: Receiver<Msg>,
}

impl Endpoint {
    /// Joins two pipe ends into an endpoint.
    pub fn new(tx: Sender<Msg>, rx: Receiver<Msg>) -> Self {
        Endpoint { tx, rx }
    }
}

impl Link for Endpoint {
    #[inline]
    fn write(&mut self, msg: Msg) -> Result<(), SendError<Msg>> {
        self.tx.write(msg)
    }

    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        self.tx.flush();
        Ok(())
    }

    #[inline]
    fn try_recv(&mut self) -> Result<Msg, RecvError> {
        self.rx.try_recv()
    }
}
