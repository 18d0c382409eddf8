//! The request/reply pattern with correlation: answers may come back in any order.
//!
//! Owns its links and the ids of the requests still waiting for an answer. A request carries
//! its correlation id in the message id; the replier answers through the [`ReplyTo`] it got
//! with the request, which names the link and the id, so an I/O thread can answer a slow query
//! after a fast one. Never blocks.

use std::collections::HashSet;

use super::error::{RecvError, SendError};
use super::link::Link;
use super::Msg;

/// The asking side (a worker's event loop asking its I/O thread).
pub struct Req<L: Link> {
    link: L,
    next_id: u32,
    waiting: HashSet<u32>,
}

impl<L: Link> Req<L> {
    /// A request socket over one link.
    pub fn new(link: L) -> Self {
        Req {
            link,
            next_id: 1,
            waiting: HashSet::new(),
        }
    }

    /// The link, to register its fd in an event loop.
    pub fn link_mut(&mut self) -> &mut L {
        &mut self.link
    }

    /// Sends a request and returns its correlation id (never 0).
    pub fn request(&mut self, msg: Msg) -> Result<u32, SendError<Msg>> {
        let id = self.next_id;
        self.link.send(msg.with_id(id))?;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        self.waiting.insert(id);
        Ok(id)
    }

    /// The next reply, in whatever order they come; its `id()` names the request. A reply to
    /// no outstanding request (a duplicate, say) is an `InvalidData` error, not dropped.
    pub fn try_recv(&mut self) -> Result<Msg, RecvError> {
        let msg = self.link.try_recv()?;
        if self.waiting.remove(&msg.id()) {
            Ok(msg)
        } else {
            Err(RecvError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("reply {} answers no outstanding request", msg.id()),
            )))
        }
    }

    /// Requests sent and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.waiting.len()
    }
}

/// Where a reply goes: the link a request came in on and its correlation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyTo {
    link: usize,
    id: u32,
}

impl ReplyTo {
    /// The correlation id.
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// The answering side (an I/O thread serving several event loops).
pub struct Rep<L: Link> {
    links: Vec<L>,
    next: usize,
}

impl<L: Link> Default for Rep<L> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: Link> Rep<L> {
    /// A reply socket with no links yet.
    pub fn new() -> Self {
        Rep {
            links: Vec::new(),
            next: 0,
        }
    }

    /// Adds a link to a requester. Links stay at their index while the socket lives.
    pub fn attach(&mut self, link: L) {
        self.links.push(link);
    }

    /// The links, to register their fds in an event loop.
    pub fn links_mut(&mut self) -> &mut [L] {
        &mut self.links
    }

    /// The next request from any link, fairly, with where to send its answer.
    pub fn try_recv(&mut self) -> Result<(ReplyTo, Msg), RecvError> {
        // Closed links keep their index, so that every ReplyTo handed out stays valid.
        let n = self.links.len();
        let mut closed = 0;
        for i in 0..n {
            let at = (self.next + i) % n;
            match self.links[at].try_recv() {
                Ok(msg) => {
                    self.next = (at + 1) % n;
                    return Ok((
                        ReplyTo {
                            link: at,
                            id: msg.id(),
                        },
                        msg,
                    ));
                }
                Err(RecvError::WouldBlock) => {}
                Err(RecvError::Closed | RecvError::Discarded(_)) => closed += 1,
                Err(e) => return Err(e),
            }
        }
        if closed == n {
            Err(RecvError::Closed)
        } else {
            Err(RecvError::WouldBlock)
        }
    }

    /// Answers a request, in any order.
    pub fn reply(&mut self, to: ReplyTo, msg: Msg) -> Result<(), SendError<Msg>> {
        match self.links.get_mut(to.link) {
            Some(link) => link.send(msg.with_id(to.id)),
            None => Err(SendError::Closed(msg)),
        }
    }
}
