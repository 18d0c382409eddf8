//! The queue engine's errors: what a send or a receive can answer instead of a message.
//!
//! Owns nothing but the types. A failed send always hands the message back, so no error path
//! can lose a message silently.

use std::fmt;
use std::io;

/// Why a message was not sent. The message comes back to the caller in every case.
#[derive(Debug)]
pub enum SendError<T> {
    /// The pipe is at its high-water mark: stop reading the input that produced this message
    /// and retry when the pipe's writable signal fires.
    WouldBlock(T),
    /// The peer or the context is gone; nothing more can be sent.
    Closed(T),
    /// An ipc transport failed.
    Io(io::Error, T),
}

impl<T> SendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::WouldBlock(m) | SendError::Closed(m) | SendError::Io(_, m) => m,
        }
    }

    /// True for [`SendError::WouldBlock`].
    pub fn is_would_block(&self) -> bool {
        matches!(self, SendError::WouldBlock(_))
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::WouldBlock(_) => f.write_str("pipe full (high-water mark)"),
            SendError::Closed(_) => f.write_str("pipe closed"),
            SendError::Io(e, _) => write!(f, "ipc send: {e}"),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for SendError<T> {}

/// Why no message was received.
#[derive(Debug)]
pub enum RecvError {
    /// Nothing queued now. For a non-blocking reader this also arms the wake-up: its fd becomes
    /// readable when a message arrives.
    WouldBlock,
    /// Everything queued was delivered and the writer or the context is gone.
    Closed,
    /// The context was shut down with [`super::Linger::Discard`]: this many queued messages
    /// were dropped unread, in order, instead of delivered. Reported once, then `Closed`.
    Discarded(usize),
    /// A blocking receive reached its deadline.
    Timeout,
    /// An ipc transport failed, or its peer broke the framing.
    Io(io::Error),
}

impl RecvError {
    /// True for [`RecvError::WouldBlock`].
    pub fn is_would_block(&self) -> bool {
        matches!(self, RecvError::WouldBlock)
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::WouldBlock => f.write_str("nothing queued"),
            RecvError::Closed => f.write_str("pipe closed"),
            RecvError::Discarded(n) => write!(f, "pipe closed, {n} queued messages discarded"),
            RecvError::Timeout => f.write_str("receive timed out"),
            RecvError::Io(e) => write!(f, "ipc receive: {e}"),
        }
    }
}

impl std::error::Error for RecvError {}

impl From<io::Error> for RecvError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::WouldBlock {
            RecvError::WouldBlock
        } else {
            RecvError::Io(e)
        }
    }
}
