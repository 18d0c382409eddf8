//! Messages: small payloads inline in the handle, large ones reference-counted.
//!
//! Owns the message handle [`Msg`]. A payload of up to [`INLINE_CAPACITY`] bytes (every sensor
//! report fits) is copied into the 72-byte handle itself, so making, sending and dropping it
//! never touches the heap. A larger payload is allocated once as an `Arc<[u8]>`; cloning the
//! handle or publishing it to many subscribers shares that block and never copies it. Each
//! message also carries a 32-bit `id`: the correlation id of request/reply, free for other
//! patterns. Never allocates for an inline payload.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The largest payload kept inline in the handle.
pub const INLINE_CAPACITY: usize = 66;

/// A message: an opaque handle over its bytes, as `zmq_msg_t`.
#[derive(Clone)]
pub struct Msg {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    Inline {
        id: u32,
        len: u8,
        buf: [u8; INLINE_CAPACITY],
    },
    Shared {
        id: u32,
        bytes: Arc<[u8]>,
    },
}

const _: () = assert!(
    std::mem::size_of::<Msg>() == 72,
    "a message handle is 72 bytes"
);
const _: () = assert!(
    INLINE_CAPACITY <= u8::MAX as usize,
    "inline length fits a u8"
);

impl Msg {
    /// An empty message.
    pub const fn empty() -> Self {
        Msg {
            repr: Repr::Inline {
                id: 0,
                len: 0,
                buf: [0; INLINE_CAPACITY],
            },
        }
    }

    /// Copies `bytes` into a new message: inline when small, one shared allocation otherwise.
    #[inline(always)]
    pub fn new(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE_CAPACITY {
            let mut buf = [0u8; INLINE_CAPACITY];
            buf[..bytes.len()].copy_from_slice(bytes);
            let len = bytes.len() as u8;
            return Msg {
                repr: Repr::Inline { id: 0, len, buf },
            };
        }
        Msg {
            repr: Repr::Shared {
                id: 0,
                bytes: bytes.into(),
            },
        }
    }

    /// Builds a message from consecutive pieces (a topic and a body, say) with one copy and at
    /// most one allocation.
    #[inline]
    pub fn from_parts(parts: &[&[u8]]) -> Self {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total <= INLINE_CAPACITY {
            let mut buf = [0u8; INLINE_CAPACITY];
            let mut at = 0;
            for part in parts {
                buf[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            let len = total as u8;
            return Msg {
                repr: Repr::Inline { id: 0, len, buf },
            };
        }
        let mut joined = Vec::with_capacity(total);
        for part in parts {
            joined.extend_from_slice(part);
        }
        Msg {
            repr: Repr::Shared {
                id: 0,
                bytes: joined.into(),
            },
        }
    }

    /// Wraps an already shared buffer without copying it, whatever its size.
    pub fn from_shared(bytes: Arc<[u8]>) -> Self {
        Msg {
            repr: Repr::Shared { id: 0, bytes },
        }
    }

    /// The payload.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.repr {
            Repr::Inline { len, buf, .. } => &buf[..usize::from(*len)],
            Repr::Shared { bytes, .. } => bytes,
        }
    }

    /// True when the payload lives in the handle (no heap block).
    pub fn is_inline(&self) -> bool {
        matches!(self.repr, Repr::Inline { .. })
    }

    /// The message id: the correlation id of a request and of its reply.
    #[inline]
    pub fn id(&self) -> u32 {
        match self.repr {
            Repr::Inline { id, .. } | Repr::Shared { id, .. } => id,
        }
    }

    /// Sets the message id.
    #[inline]
    pub fn set_id(&mut self, new: u32) {
        match &mut self.repr {
            Repr::Inline { id, .. } | Repr::Shared { id, .. } => *id = new,
        }
    }

    /// The message with its id set.
    #[inline]
    pub fn with_id(mut self, id: u32) -> Self {
        self.set_id(id);
        self
    }
}

impl Default for Msg {
    fn default() -> Self {
        Msg::empty()
    }
}

impl Deref for Msg {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Msg {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<&[u8]> for Msg {
    fn from(bytes: &[u8]) -> Self {
        Msg::new(bytes)
    }
}

impl From<&str> for Msg {
    fn from(s: &str) -> Self {
        Msg::new(s.as_bytes())
    }
}

impl From<Vec<u8>> for Msg {
    fn from(bytes: Vec<u8>) -> Self {
        if bytes.len() <= INLINE_CAPACITY {
            Msg::new(&bytes)
        } else {
            Msg::from_shared(bytes.into())
        }
    }
}

impl PartialEq for Msg {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id() && self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Msg {}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Msg")
            .field("id", &self.id())
            .field("inline", &self.is_inline())
            .field("bytes", &String::from_utf8_lossy(self.as_bytes()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_payloads_stay_inline() {
        let report = [7u8; 64];
        let m = Msg::new(&report);
        assert!(m.is_inline());
        assert_eq!(m.as_bytes(), &report);
        assert!(Msg::new(&[1u8; INLINE_CAPACITY]).is_inline());
    }

    #[test]
    fn large_payloads_are_shared_not_copied() {
        let m = Msg::new(&[9u8; 1000]);
        assert!(!m.is_inline());
        let copy = m.clone();
        assert_eq!(m.as_bytes().as_ptr(), copy.as_bytes().as_ptr());
    }

    #[test]
    fn parts_are_joined_and_ids_kept() {
        let m = Msg::from_parts(&[b"hives/7/", b"occupancy"]).with_id(42);
        assert_eq!(&*m, b"hives/7/occupancy");
        assert_eq!(m.id(), 42);
        let big = Msg::from_parts(&[&[1u8; 60], &[2u8; 60]]);
        assert_eq!(big.len(), 120);
        assert_eq!(big[60], 2);
    }
}
