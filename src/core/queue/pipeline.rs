//! The pipeline pattern: PUSH distributes messages round-robin over its links, PULL
//! fair-queues them in.
//!
//! Owns its links and a cursor each; nothing is shared with other sockets. A full link is
//! skipped; when every link is full the push answers `WouldBlock` with the message back, which
//! is the producer's cue to stop reading its input. Never blocks.

use std::io;

use super::error::{RecvError, SendError};
use super::link::Link;
use super::Msg;

/// The sending end of a pipeline (reports to the batch writer, say).
pub struct Push<L: Link> {
    links: Vec<L>,
    next: usize,
}

impl<L: Link> Default for Push<L> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: Link> Push<L> {
    /// A push socket with no links yet.
    pub fn new() -> Self {
        Push {
            links: Vec::new(),
            next: 0,
        }
    }

    /// Adds a downstream link; returns its index.
    pub fn attach(&mut self, link: L) -> usize {
        self.links.push(link);
        self.links.len() - 1
    }

    /// The links, to register their fds in an event loop.
    pub fn links_mut(&mut self) -> &mut [L] {
        &mut self.links
    }

    /// Writes a message to the next link that has room (round-robin), without flushing.
    pub fn write(&mut self, mut msg: Msg) -> Result<(), SendError<Msg>> {
        let n = self.links.len();
        let mut closed = 0;
        for i in 0..n {
            let at = (self.next + i) % n;
            match self.links[at].write(msg) {
                Ok(()) => {
                    self.next = (at + 1) % n;
                    return Ok(());
                }
                Err(SendError::WouldBlock(back)) => msg = back,
                Err(SendError::Closed(back)) => {
                    closed += 1;
                    msg = back;
                }
                Err(e) => return Err(e),
            }
        }
        if closed == n {
            Err(SendError::Closed(msg))
        } else {
            Err(SendError::WouldBlock(msg))
        }
    }

    /// Publishes what was written on every link.
    pub fn flush(&mut self) -> io::Result<()> {
        self.links.iter_mut().try_for_each(|l| l.flush())
    }

    /// Writes and flushes one message.
    pub fn send(&mut self, msg: Msg) -> Result<(), SendError<Msg>> {
        self.write(msg)?;
        self.flush().map_err(|e| SendError::Io(e, Msg::empty()))
    }
}

/// Fair-queues messages from several links: one link never starves the others.
pub(crate) fn fair_recv<L: Link>(
    links: &mut Vec<L>,
    next: &mut usize,
) -> Result<(usize, Msg), RecvError> {
    let mut i = 0;
    while i < links.len() {
        let at = (*next + i) % links.len();
        match links[at].try_recv() {
            Ok(msg) => {
                *next = (at + 1) % links.len();
                return Ok((at, msg));
            }
            Err(RecvError::WouldBlock) => i += 1,
            Err(RecvError::Closed | RecvError::Discarded(_)) if links.len() > 1 => {
                links.remove(at);
                *next = 0;
                i = 0;
            }
            Err(e) => return Err(e),
        }
    }
    Err(RecvError::WouldBlock)
}

/// The receiving end of a pipeline.
pub struct Pull<L: Link> {
    links: Vec<L>,
    next: usize,
}

impl<L: Link> Default for Pull<L> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: Link> Pull<L> {
    /// A pull socket with no links yet.
    pub fn new() -> Self {
        Pull {
            links: Vec::new(),
            next: 0,
        }
    }

    /// Adds an upstream link.
    pub fn attach(&mut self, link: L) {
        self.links.push(link);
    }

    /// The links, to register their fds in an event loop.
    pub fn links_mut(&mut self) -> &mut [L] {
        &mut self.links
    }

    /// The next message from any link, fairly. `WouldBlock` when all are empty (and armed);
    /// `Closed` when the last link is closed and drained.
    pub fn try_recv(&mut self) -> Result<Msg, RecvError> {
        if self.links.is_empty() {
            return Err(RecvError::Closed);
        }
        fair_recv(&mut self.links, &mut self.next).map(|(_, msg)| msg)
    }
}
