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

/// Record kinds in a pipe of encoded messages (see [`super::payload`]).
const WORD_INLINE: u64 = 1;
const WORD_SHARED: u64 = 2;

impl Msg {
    /// The number of 8-byte words this message takes in a pipe: a header, then the inline
    /// payload, or the shared block's pointer and length.
    #[inline(always)]
    pub(crate) fn words(&self) -> usize {
        match &self.repr {
            Repr::Inline { len, .. } => 1 + usize::from(*len).div_ceil(8),
            Repr::Shared { .. } => 3,
        }
    }

    /// Word `i` of the encoding. Word 1 of a shared message carries the reference the message
    /// owned: call with every `i` in `0..words()`, then `forget` the message.
    #[inline(always)]
    pub(crate) fn word(&self, i: usize) -> u64 {
        match &self.repr {
            Repr::Inline { id, len, buf } => {
                if i == 0 {
                    return WORD_INLINE | u64::from(*len) << 8 | u64::from(*id) << 32;
                }
                // Every constructor zero-fills the buffer, so a whole 8-byte chunk past `len`
                // reads zeros; only the chunk that would cross the buffer's end is cut.
                let from = (i - 1) * 8;
                match buf.get(from..from + 8) {
                    Some(chunk) => u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
                    None => {
                        let mut chunk = [0u8; 8];
                        chunk[..INLINE_CAPACITY - from].copy_from_slice(&buf[from..]);
                        u64::from_le_bytes(chunk)
                    }
                }
            }
            Repr::Shared { id, bytes } => match i {
                0 => WORD_SHARED | u64::from(*id) << 32,
                1 => bytes.as_ptr() as u64,
                _ => bytes.len() as u64,
            },
        }
    }

    /// Gives up the message's shared reference after [`Msg::word`] encoded it.
    #[inline(always)]
    pub(crate) fn forget_encoded(self) {
        std::mem::forget(self);
    }

    /// Rebuilds a message from its words, `next` yielding them in order.
    ///
    /// # Safety
    /// The words must be exactly those [`Msg::word`] produced for one message that was then
    /// forgotten, each decoded once: a shared message's reference is taken over.
    #[inline(always)]
    pub(crate) unsafe fn from_words(mut next: impl FnMut() -> u64) -> Msg {
        let head = next();
        let id = (head >> 32) as u32;
        if head & 0xff == WORD_SHARED {
            let ptr = next() as usize as *const u8;
            let len = next() as usize;
            // SAFETY: ptr and len are the data pointer and length of an `Arc<[u8]>` whose
            // reference the encoder forgot (caller's contract); `Arc::as_ptr` of a slice
            // points at its data, which is what `from_raw` expects back.
            let bytes = unsafe { Arc::from_raw(std::ptr::slice_from_raw_parts(ptr, len)) };
            return Msg {
                repr: Repr::Shared { id, bytes },
            };
        }
        let len = ((head >> 8) & 0xff) as usize;
        // Built where it is returned and filled in place: no 72-byte copy at the end.
        let mut msg = Msg {
            repr: Repr::Inline {
                id,
                len: len as u8,
                buf: [0; INLINE_CAPACITY],
            },
        };
        if let Repr::Inline { buf, .. } = &mut msg.repr {
            let mut at = 0;
            while at < len {
                let chunk = next().to_le_bytes();
                match buf.get_mut(at..at + 8) {
                    // Bytes past `len` in the last chunk are zeros (see `word`).
                    Some(dst) => dst.copy_from_slice(&chunk),
                    None => buf[at..].copy_from_slice(&chunk[..INLINE_CAPACITY - at]),
                }
                at += 8;
            }
        }
        msg
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
