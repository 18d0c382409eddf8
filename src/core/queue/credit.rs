//! Credit-based flow control for streams to slow readers (the ZeroMQ guide, chapter 6).
//!
//! Owns one link and a byte budget. The reader grants the writer a window of bytes up front
//! and tops it up by a slice each time it has consumed a slice; the writer sends only within
//! its credit. Bytes in flight (pipe, socket buffers) therefore never exceed the window,
//! whatever the reader's speed, and the high-water mark is never the limit that bites. Credit
//! travels upstream as a 4-byte little-endian message. Never blocks.

use super::error::{RecvError, SendError};
use super::link::Link;
use super::Msg;

fn grant(bytes: u32) -> Msg {
    Msg::new(&bytes.to_le_bytes())
}

/// The writing end of a credit-controlled stream.
pub struct CreditSender<L: Link> {
    link: L,
    credit: u64,
}

impl<L: Link> CreditSender<L> {
    /// A sender with no credit until the reader grants some.
    pub fn new(link: L) -> Self {
        CreditSender { link, credit: 0 }
    }

    /// The link, to register its fd (credit arrives as readable).
    pub fn link_mut(&mut self) -> &mut L {
        &mut self.link
    }

    /// Bytes the reader currently allows.
    pub fn credit(&self) -> u64 {
        self.credit
    }

    /// Reads the grants that arrived. `Closed` when the reader is gone.
    pub fn pump(&mut self) -> Result<(), RecvError> {
        loop {
            match self.link.try_recv() {
                Ok(msg) => {
                    let bytes: [u8; 4] = msg.as_bytes().try_into().map_err(|_| {
                        RecvError::Io(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "credit grant is not 4 bytes",
                        ))
                    })?;
                    self.credit += u64::from(u32::from_le_bytes(bytes));
                }
                Err(RecvError::WouldBlock) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends within the credit; `WouldBlock` (message back) until the reader grants more.
    pub fn send(&mut self, msg: Msg) -> Result<(), SendError<Msg>> {
        let need = msg.len() as u64;
        if need > self.credit {
            if let Err(RecvError::Closed | RecvError::Discarded(_)) = self.pump() {
                return Err(SendError::Closed(msg));
            }
            if need > self.credit {
                return Err(SendError::WouldBlock(msg));
            }
        }
        self.link.send(msg)?;
        self.credit -= need;
        Ok(())
    }
}

/// The reading end of a credit-controlled stream.
pub struct CreditReceiver<L: Link> {
    link: L,
    slice: u32,
    consumed: u32,
}

impl<L: Link> CreditReceiver<L> {
    /// Grants `window` bytes now, and `window / 4` again after each quarter consumed.
    pub fn new(mut link: L, window: u32) -> Result<Self, SendError<Msg>> {
        link.send(grant(window))?;
        Ok(CreditReceiver {
            link,
            slice: (window / 4).max(1),
            consumed: 0,
        })
    }

    /// The link, to register its fd.
    pub fn link_mut(&mut self) -> &mut L {
        &mut self.link
    }

    /// The next message; tops the writer's credit up after every slice consumed.
    pub fn try_recv(&mut self) -> Result<Msg, RecvError> {
        let msg = self.link.try_recv()?;
        self.consumed = self.consumed.saturating_add(msg.len() as u32);
        if self.consumed >= self.slice {
            // Whole slices only; a grant that does not fit now is retried with the next message.
            let give = self.consumed - self.consumed % self.slice;
            match self.link.send(grant(give)) {
                Ok(()) => self.consumed -= give,
                Err(SendError::Io(e, _)) => return Err(RecvError::Io(e)),
                Err(SendError::WouldBlock(_) | SendError::Closed(_)) => {}
            }
        }
        Ok(msg)
    }
}
