//! The lock-free single-producer single-consumer ring under every inproc pipe.
//!
//! Owns the slots and the two shared counters; nothing else. It is ZeroMQ's `ypipe` on a
//! bounded ring (the capacity is the high-water mark): the producer fills a *pre-write* region
//! that only it can see and publishes all of it with one atomic swap ([`Producer::flush`]); the
//! consumer takes everything published with one atomic load and then reads its *pre-read* region
//! with no synchronisation at all ([`Consumer::pop`]).
//!
//! Sleeping is part of the protocol, as in `ypipe::check_read`: each counter keeps one flag bit.
//! A consumer that finds the ring empty sets the "reader asleep" bit in `tail` with a
//! compare-and-swap against the exact count it saw, so the swap fails if anything was published
//! since; the producer's publishing swap clears the bit and tells the producer that it must wake
//! the reader (once per batch, never per message). The same handshake in `head` puts a producer
//! that met the high-water mark to sleep until the consumer frees space. A sleeper can therefore
//! never miss work: either its compare-and-swap fails, or the other side sees the bit.
//!
//! Never blocks, never allocates after [`ring`], never makes a system call: waking is the
//! caller's job ([`super::pipe`]). Checked with loom (`tests/queue_loom.rs`).

use std::mem::MaybeUninit;

use super::sync::{load_mut, Arc, AtomicUsize, CachePadded, Cell, Ordering};

/// The flag bit of a counter word: "reader asleep" in `tail`, "writer asleep" in `head`.
const ASLEEP: usize = 1;

struct Ring<T> {
    /// Published count << 1, with the reader-asleep bit. Written by the producer's flush and by
    /// the consumer's sleep.
    tail: CachePadded<AtomicUsize>,
    /// Consumed count << 1, with the writer-asleep bit. Written by the consumer's release and by
    /// the producer's sleep.
    head: CachePadded<AtomicUsize>,
    /// Read count, stored (not published) after every read, on the consumer's own line: only
    /// the depth probe reads it, so a shutdown report counts exactly what is still unread.
    taken: CachePadded<AtomicUsize>,
    slots: Box<[Cell<MaybeUninit<T>>]>,
    mask: usize,
    /// The consumer hands freed slots back at least this often while it reads a long batch.
    release_every: usize,
}

// SAFETY: a slot is accessed by one side at a time: the producer writes slots in
// [tail, head + capacity) and the consumer reads slots in [head, published tail); the counters
// that move a slot from one side to the other are published with release and read with acquire.
unsafe impl<T: Send> Sync for Ring<T> {}
// SAFETY: the ring only moves `T` values between threads, which `T: Send` allows.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        let head = load_mut(&mut self.head) >> 1;
        let tail = load_mut(&mut self.tail) >> 1;
        let mut at = head;
        while at != tail {
            let slot = &self.slots[at & self.mask];
            // SAFETY: both sides are gone (this is the last reference) and each published, so
            // exactly the slots in [head, tail) hold values that were written and never read.
            slot.with_mut(|p| unsafe { (*p).assume_init_drop() });
            at = at.wrapping_add(1);
        }
    }
}

/// Creates a ring of `capacity` slots (rounded up to a power of two, at least 2).
/// `batching: false` makes the consumer publish and re-read the counters for every message,
/// the unbatched baseline of the benchmarks.
pub fn ring<T>(capacity: usize, batching: bool) -> (Producer<T>, Consumer<T>) {
    let capacity = capacity.max(2).next_power_of_two();
    let slots = (0..capacity)
        .map(|_| Cell::new(MaybeUninit::uninit()))
        .collect();
    let release_every = if batching { (capacity / 4).max(1) } else { 1 };
    let ring = Arc::new(Ring {
        tail: CachePadded(AtomicUsize::new(0)),
        head: CachePadded(AtomicUsize::new(0)),
        taken: CachePadded(AtomicUsize::new(0)),
        slots,
        mask: capacity - 1,
        release_every,
    });
    let producer = Producer {
        ring: Arc::clone(&ring),
        tail: 0,
        head_seen: 0,
        published: 0,
    };
    let consumer = Consumer {
        ring,
        head: 0,
        tail_seen: 0,
        published: 0,
        batching,
        wake_writer: false,
    };
    (producer, consumer)
}

/// The writing half. Dropping it publishes what was written.
pub struct Producer<T> {
    ring: Arc<Ring<T>>,
    /// Written count, including the unpublished pre-write region.
    tail: usize,
    /// The consumed count as last seen.
    head_seen: usize,
    /// Published count.
    published: usize,
}

impl<T> Producer<T> {
    /// The number of slots: the high-water mark.
    pub fn capacity(&self) -> usize {
        self.ring.mask + 1
    }

    /// Writes into the pre-write region (not yet visible to the consumer); hands the value back
    /// when the ring is full.
    #[inline(always)]
    pub fn push(&mut self, value: T) -> Result<(), T> {
        if self.tail.wrapping_sub(self.head_seen) > self.ring.mask {
            self.head_seen = self.ring.head.load(Ordering::Acquire) >> 1;
            if self.tail.wrapping_sub(self.head_seen) > self.ring.mask {
                return Err(value);
            }
        }
        let slot = &self.ring.slots[self.tail & self.ring.mask];
        // SAFETY: tail - head_seen < capacity, so this slot was consumed (or never used) and the
        // consumer released it with the release swap we acquired; only the producer writes it
        // until `flush` publishes it.
        slot.with_mut(|p| unsafe { (*p).write(value) });
        self.tail = self.tail.wrapping_add(1);
        Ok(())
    }

    /// Builds the value directly in its slot (no move through the stack); false, without
    /// calling `make`, when the ring is full.
    #[inline(always)]
    pub fn push_with(&mut self, make: impl FnOnce() -> T) -> bool {
        if !self.has_room() {
            return false;
        }
        let slot = &self.ring.slots[self.tail & self.ring.mask];
        // SAFETY: as in `push`: the slot is free and only the producer touches it until the
        // next flush publishes it.
        slot.with_mut(|p| unsafe { (*p).write(make()) });
        self.tail = self.tail.wrapping_add(1);
        true
    }

    /// Whether a push would succeed now (reads the consumed count again if needed).
    #[inline]
    pub fn has_room(&mut self) -> bool {
        self.tail.wrapping_sub(self.head_seen) <= self.ring.mask || {
            self.head_seen = self.ring.head.load(Ordering::Acquire) >> 1;
            self.tail.wrapping_sub(self.head_seen) <= self.ring.mask
        }
    }

    /// Messages written but not yet published.
    pub fn unflushed(&self) -> usize {
        self.tail.wrapping_sub(self.published)
    }

    /// Messages in the ring as this side last saw them (an upper bound).
    pub fn len_hint(&self) -> usize {
        self.tail.wrapping_sub(self.head_seen)
    }

    /// Publishes the pre-write region with one atomic swap. Returns true when the consumer was
    /// asleep: the caller must wake it.
    #[inline(always)]
    pub fn flush(&mut self) -> bool {
        if self.tail == self.published {
            return false;
        }
        let prev = self.ring.tail.swap(self.tail << 1, Ordering::AcqRel);
        self.published = self.tail;
        prev & ASLEEP != 0
    }

    /// The ring is full: marks the producer asleep unless space was freed meanwhile. Returns
    /// true when asleep (the consumer's next release will ask for a wake), false when there is
    /// room now.
    pub fn sleep(&mut self) -> bool {
        let seen = self.ring.head.load(Ordering::Acquire);
        if seen & ASLEEP != 0 {
            return true;
        }
        if self.tail.wrapping_sub(seen >> 1) <= self.ring.mask {
            self.head_seen = seen >> 1;
            return false;
        }
        match self.ring.head.compare_exchange(
            seen,
            seen | ASLEEP,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => true,
            Err(actual) => {
                self.head_seen = actual >> 1;
                actual & ASLEEP != 0
            }
        }
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The reading half. Dropping it releases what it read; unread values are dropped with the ring.
pub struct Consumer<T> {
    ring: Arc<Ring<T>>,
    /// Read count, including the unreleased part of the pre-read region.
    head: usize,
    /// The published count as last seen: [head, tail_seen) is the pre-read region.
    tail_seen: usize,
    /// Released count.
    published: usize,
    batching: bool,
    /// A release found the producer asleep: the caller must wake it.
    wake_writer: bool,
}

impl<T> Consumer<T> {
    /// Takes the next message: from the pre-read region with no atomic operation, or, when that
    /// is empty, after one acquire load that moves everything published into it.
    #[inline(always)]
    pub fn pop(&mut self) -> Option<T> {
        if self.head == self.tail_seen && !self.refill() {
            return None;
        }
        let slot = &self.ring.slots[self.head & self.ring.mask];
        // SAFETY: head < tail_seen, a count the producer published with release after writing
        // the slot, and which we acquired; the producer will not reuse the slot until we
        // release it.
        let value = slot.with_mut(|p| unsafe { (*p).assume_init_read() });
        self.consumed();
        Some(value)
    }

    /// Steps past the slot just read; hands freed slots back every `release_every` reads.
    #[inline(always)]
    fn consumed(&mut self) {
        self.head = self.head.wrapping_add(1);
        self.ring.taken.store(self.head, Ordering::Relaxed);
        if !self.batching {
            self.tail_seen = self.head;
        }
        if self.head.wrapping_sub(self.published) >= self.ring.release_every {
            self.release();
        }
    }

    /// Hands the next message to `f` by reference and drops it in its slot: no move out.
    #[inline(always)]
    pub fn pop_with<R>(&mut self, f: impl FnOnce(&T) -> R) -> Option<R> {
        if self.head == self.tail_seen && !self.refill() {
            return None;
        }
        let slot = &self.ring.slots[self.head & self.ring.mask];
        // SAFETY: as in `pop`: the slot holds a published value that only the consumer may
        // touch until it releases the slot; it is read, then dropped exactly once here.
        let r = slot.with_mut(|p| unsafe {
            let r = f((*p).assume_init_ref());
            (*p).assume_init_drop();
            r
        });
        self.consumed();
        Some(r)
    }

    fn refill(&mut self) -> bool {
        self.release();
        self.tail_seen = self.ring.tail.load(Ordering::Acquire) >> 1;
        self.tail_seen != self.head
    }

    /// Hands the slots read so far back to the producer (one atomic swap).
    pub fn release(&mut self) {
        if self.head == self.published {
            return;
        }
        let prev = self.ring.head.swap(self.head << 1, Ordering::AcqRel);
        self.published = self.head;
        self.wake_writer |= prev & ASLEEP != 0;
    }

    /// True once after a release found the producer asleep: the caller must wake it.
    #[inline(always)]
    pub fn take_wake_writer(&mut self) -> bool {
        std::mem::take(&mut self.wake_writer)
    }

    /// Messages published and not yet read, as of the last look (a lower bound).
    pub fn len_hint(&self) -> usize {
        self.tail_seen.wrapping_sub(self.head)
    }

    /// A probe of the queued depth (published and not yet released) for the context's
    /// shutdown report; usable from any thread.
    pub fn depth_probe(&self) -> Box<dyn Fn() -> usize + Send + Sync>
    where
        T: Send + 'static,
    {
        let ring = Arc::clone(&self.ring);
        Box::new(move || {
            let taken = ring.taken.load(Ordering::Acquire);
            let tail = ring.tail.load(Ordering::Acquire) >> 1;
            tail.wrapping_sub(taken)
        })
    }

    /// Reads the published count again and reports whether a message is waiting.
    pub fn has_pending(&mut self) -> bool {
        self.head != self.tail_seen || {
            self.tail_seen = self.ring.tail.load(Ordering::Acquire) >> 1;
            self.tail_seen != self.head
        }
    }

    /// The ring looked empty: marks the consumer asleep unless something was published
    /// meanwhile. Returns true when asleep (the producer's next flush will ask for a wake),
    /// false when a message is waiting.
    pub fn sleep(&mut self) -> bool {
        self.release();
        if self.head != self.tail_seen {
            return false;
        }
        let empty = self.head << 1;
        match self.ring.tail.compare_exchange(
            empty,
            empty | ASLEEP,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => true,
            Err(actual) if actual == empty | ASLEEP => true,
            Err(actual) => {
                self.tail_seen = actual >> 1;
                false
            }
        }
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.release();
    }
}
