//! Bodies fed over time: a response whose content handler does not have it all when it answers
//! (server-sent events). The connection writes the head, then pulls the stream whenever it can
//! take more and something is due: at once, when the stream's owner woke the connection (a
//! posted wake-up), or when the wait the stream set is up (a heartbeat). Each pull goes through
//! the body filters with `last = false`, the end with `last = true` (the chunked filter frames it,
//! gzip never takes a stream).
//!
//! Back-pressure is the pull's timing: a stream is pulled only when everything it gave before has
//! left the worker for the kernel, so a client that reads slowly holds at most one pull's worth
//! in the worker (plus the socket's send buffer, which [`Stream::send_buffer`] may shrink), and a
//! stream that sends the newest state when pulled conflates what the reader was too slow for.
//!
//! A stopping worker (QUIT, reload) ends every stream at once ([`Stream::stop`], then the end of
//! the body), so that the client sees a whole response and reconnects to a new worker.

use std::time::Duration;

use bytes::Bytes;

use crate::core::event::Posted;

/// What a pull says about the rest of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// More may follow: pull again when woken or when the wait is up.
    More,
    /// The body is complete.
    End,
}

/// What a stream can reach when pulled.
pub struct StreamCx<'a> {
    /// The loop's clock.
    pub now_ms: u64,
    /// The connection's token and the loop's wake-up queue: whoever has news for the stream
    /// posts the token, and the connection pulls it.
    pub token: mio::Token,
    pub posted: &'a Posted,
    /// Set by the stream: be pulled again after this long if nothing wakes it first.
    pub wait: Option<Duration>,
}

/// A body fed over time, owned by its connection.
pub trait Stream {
    /// Puts what is to be sent now in `out` (nothing is fine).
    fn pull(&mut self, cx: &mut StreamCx<'_>, out: &mut Vec<Bytes>) -> Pulled;

    /// The worker is stopping: last words before the body ends.
    fn stop(&mut self, _out: &mut Vec<Bytes>) {}

    /// The socket send buffer the connection should get, in bytes: small for a stream of
    /// states, so that a slow reader's backlog in the kernel is a few states, not megabytes.
    fn send_buffer(&self) -> Option<usize> {
        None
    }
}
