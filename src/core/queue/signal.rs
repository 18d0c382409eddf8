//! The signaller: an eventfd that wakes a sleeping pipe end.
//!
//! Owns one eventfd. The pipe protocol ([`super::ring`]) decides when to signal: once per batch,
//! and only when the other side really sleeps. The fd is non-blocking and close-on-exec, so an
//! event loop can register it (mio: `SourceFd`, edge-triggered: every signal is a new edge) and
//! a thread can wait on it with [`Signaller::wait`]. Never signals on its own; `signal` never
//! blocks.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

/// A wake-up channel between two threads of one process.
#[derive(Debug)]
pub struct Signaller {
    fd: EventFd,
}

impl Signaller {
    /// Creates a non-blocking, close-on-exec eventfd.
    pub fn new() -> io::Result<Self> {
        let fd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(Self { fd })
    }

    /// Wakes the waiter (one `write(2)`). A saturated counter already means "wake", so EAGAIN is
    /// not an error.
    pub fn signal(&self) {
        loop {
            match self.fd.write(1) {
                Ok(_) | Err(nix::Error::EAGAIN) => return,
                Err(nix::Error::EINTR) => continue,
                Err(e) => panic!("eventfd write failed on a valid eventfd: {e}"),
            }
        }
    }

    /// Consumes pending signals without waiting.
    pub fn drain(&self) {
        loop {
            match self.fd.read() {
                Err(nix::Error::EINTR) => continue,
                Ok(_) | Err(_) => return,
            }
        }
    }

    /// Sleeps until signalled or until `deadline`; returns false on timeout. Consumes the
    /// signal. Spurious returns are possible: callers re-check their condition.
    pub fn wait(&self, deadline: Option<Instant>) -> io::Result<bool> {
        loop {
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    poll_timeout(left)
                }
            };
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) => continue,
                Ok(_) => {
                    self.drain();
                    return Ok(true);
                }
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Rounds up to whole milliseconds, capped at what poll(2) takes.
pub(crate) fn poll_timeout(left: Duration) -> PollTimeout {
    let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128);
    PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::MAX)
}

impl AsRawFd for Signaller {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_fd().as_raw_fd()
    }
}

impl AsFd for Signaller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
