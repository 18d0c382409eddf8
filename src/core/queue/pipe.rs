//! Pipes: one-way, single-producer single-consumer message queues between two threads.
//!
//! Owns a [`super::ring`] plus the two signallers that wake its ends and the pipe's state
//! (open, a side gone, or closed by its context). The writer batches: [`Sender::write`] fills
//! the pre-write region and [`Sender::flush`] publishes it with one atomic operation and at
//! most one wake-up; [`Sender::send`] is both. The reader takes whatever was published in one
//! go. At the high-water mark a writer gets [`SendError::WouldBlock`] with its message back and
//! is woken (its fd turns readable) when the reader frees space.
//!
//! Both ends can be registered in a mio `Poll` (they are `mio::event::Source`s over their
//! eventfd) or used from a thread with the blocking `recv`/`send_blocking`. Non-blocking calls
//! never block; the blocking ones are for threads that own nothing else (an I/O thread).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::error::{RecvError, SendError};
use super::ring::{ring, Consumer, Producer};
use super::signal::Signaller;
use super::Msg;

/// The default high-water mark, in messages.
pub const DEFAULT_HWM: usize = 1024;

const WRITER_GONE: u8 = 1;
const READER_GONE: u8 = 2;
const CTX_DRAIN: u8 = 4;
const CTX_DISCARD: u8 = 8;
/// The writer may not send any more.
const NO_SEND: u8 = READER_GONE | CTX_DRAIN | CTX_DISCARD;
/// Nothing more will be published.
const NO_MORE: u8 = WRITER_GONE | CTX_DRAIN | CTX_DISCARD;

/// How long a blocking call spins before it sleeps: a hand-off that is microseconds away costs
/// less than a sleep and a wake-up (two system calls and a context switch on each side).
const SPIN_FOR: Duration = Duration::from_micros(20);

/// Spins, then yields, until `ready` holds (true) or the budget is spent (false). Yielding
/// matters on a busy machine: the other end may be waiting for this very core.
fn spin_until(mut ready: impl FnMut() -> bool) -> bool {
    for _ in 0..64 {
        if ready() {
            return true;
        }
        std::hint::spin_loop();
    }
    let start = Instant::now();
    loop {
        std::thread::yield_now();
        if ready() {
            return true;
        }
        if start.elapsed() >= SPIN_FOR {
            return false;
        }
    }
}

/// What one end of a pipe did on its slow paths: how often it went to sleep and how often it
/// had to wake the other end. Batching shows here: wakes stay far below the message count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndStats {
    /// Times this end armed its wake-up (found the pipe empty, or full).
    pub sleeps: u64,
    /// Times this end signalled the other end's eventfd.
    pub wakes: u64,
}

/// How a pipe is built.
#[derive(Debug, Clone, Copy)]
pub struct PipeOptions {
    /// The high-water mark in messages (rounded up to a power of two).
    pub hwm: usize,
    /// Pre-write / pre-read batching. `false` publishes and re-reads the counters per message:
    /// the unbatched baseline of the benchmarks, never faster.
    pub batching: bool,
}

impl Default for PipeOptions {
    fn default() -> Self {
        PipeOptions {
            hwm: DEFAULT_HWM,
            batching: true,
        }
    }
}

/// What both ends and the context share, apart from the ring.
pub(crate) struct Shared {
    state: AtomicU8,
    reader_sig: Signaller,
    writer_sig: Signaller,
    /// Messages queued at a discard, counted by the reader as it drops them.
    discarded: AtomicUsize,
    /// The context's count of messages dropped unread with a receiver.
    dropped_unread: Arc<AtomicUsize>,
    depth: Box<dyn Fn() -> usize + Send + Sync>,
}

impl Shared {
    /// Closes the pipe for its context and wakes both ends. Returns the queued depth.
    pub(crate) fn close(&self, discard: bool) -> usize {
        let bit = if discard { CTX_DISCARD } else { CTX_DRAIN };
        self.state.fetch_or(bit, Ordering::AcqRel);
        self.reader_sig.signal();
        self.writer_sig.signal();
        (self.depth)()
    }

    /// Whether the context already closed this pipe.
    pub(crate) fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) & (WRITER_GONE | READER_GONE | CTX_DRAIN | CTX_DISCARD)
            == 0
    }

    fn mark_gone(&self, bit: u8) {
        self.state.fetch_or(bit, Ordering::AcqRel);
    }
}

/// Creates a pipe. `dropped_unread` counts messages dropped with their receiver.
pub(crate) fn channel<T: Send + 'static>(
    opts: PipeOptions,
    dropped_unread: Arc<AtomicUsize>,
) -> io::Result<(Sender<T>, Receiver<T>, Arc<Shared>)> {
    let (prod, cons) = ring::<T>(opts.hwm, opts.batching);
    let depth = cons.depth_probe();
    let shared = Arc::new(Shared {
        state: AtomicU8::new(0),
        reader_sig: Signaller::new()?,
        writer_sig: Signaller::new()?,
        discarded: AtomicUsize::new(0),
        dropped_unread,
        depth,
    });
    let tx = Sender {
        prod,
        shared: Arc::clone(&shared),
        batching: opts.batching,
        stats: EndStats::default(),
    };
    let rx = Receiver {
        cons,
        shared: Arc::clone(&shared),
        done: false,
        stats: EndStats::default(),
    };
    Ok((tx, rx, shared))
}

/// The writing end of a pipe.
pub struct Sender<T: Send + 'static = Msg> {
    prod: Producer<T>,
    shared: Arc<Shared>,
    batching: bool,
    stats: EndStats,
}

impl<T: Send + 'static> Sender<T> {
    /// Writes a message into the pre-write region; it becomes visible at the next
    /// [`Sender::flush`]. At the high-water mark, flushes what is pending, arms the writable
    /// wake-up and hands the message back in `WouldBlock`.
    #[inline(always)]
    pub fn write(&mut self, msg: T) -> Result<(), SendError<T>> {
        if self.shared.state.load(Ordering::Relaxed) & NO_SEND != 0 {
            return Err(SendError::Closed(msg));
        }
        match self.prod.push(msg) {
            Ok(()) if self.batching => Ok(()),
            Ok(()) => {
                self.flush();
                Ok(())
            }
            Err(msg) => self.full(msg),
        }
    }

    /// Builds the message directly in the pipe (no copy of the handle) from `make`, into the
    /// pre-write region. At the high-water mark `make` is not called: `WouldBlock(())`, with
    /// the writable wake-up armed, and nothing was lost because nothing was built.
    #[inline(always)]
    pub fn write_with(&mut self, make: impl FnOnce() -> T) -> Result<(), SendError<()>> {
        if self.shared.state.load(Ordering::Relaxed) & NO_SEND != 0 {
            return Err(SendError::Closed(()));
        }
        if self.prod.push_with(make) {
            if !self.batching {
                self.flush();
            }
            return Ok(());
        }
        self.flush();
        if self.prod.sleep() {
            self.stats.sleeps += 1;
        }
        Err(SendError::WouldBlock(()))
    }

    #[cold]
    fn full(&mut self, msg: T) -> Result<(), SendError<T>> {
        self.flush();
        if self.prod.sleep() {
            self.stats.sleeps += 1;
            return Err(SendError::WouldBlock(msg));
        }
        self.prod.push(msg).map_err(SendError::WouldBlock)
    }

    /// Publishes the pre-write region (one atomic swap) and wakes the reader if it sleeps.
    #[inline(always)]
    pub fn flush(&mut self) {
        if self.prod.flush() {
            self.wake_reader();
        }
    }

    #[cold]
    fn wake_reader(&mut self) {
        self.stats.wakes += 1;
        self.shared.reader_sig.signal();
    }

    /// What this end did on its slow paths.
    pub fn stats(&self) -> EndStats {
        self.stats
    }

    /// Writes and flushes one message: no added latency.
    #[inline(always)]
    pub fn send(&mut self, msg: T) -> Result<(), SendError<T>> {
        let res = self.write(msg);
        self.flush();
        res
    }

    /// Writes into the pre-write region like [`Sender::write`], but waits (spinning briefly,
    /// then sleeping on the eventfd) while the pipe is at its high-water mark, until
    /// `deadline` if any. For threads only: never call it on an event loop.
    pub fn write_blocking(
        &mut self,
        mut msg: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendError<T>> {
        loop {
            if self.shared.state.load(Ordering::Acquire) & NO_SEND != 0 {
                return Err(SendError::Closed(msg));
            }
            match self.prod.push(msg) {
                Ok(()) if self.batching => return Ok(()),
                Ok(()) => {
                    self.flush();
                    return Ok(());
                }
                Err(back) => msg = back,
            }
            self.flush();
            if spin_until(|| self.prod.has_room()) || !self.prod.sleep() {
                continue;
            }
            self.stats.sleeps += 1;
            match self.shared.writer_sig.wait(deadline) {
                Ok(true) => {}
                Ok(false) => return Err(SendError::WouldBlock(msg)),
                Err(e) => return Err(SendError::Io(e, msg)),
            }
        }
    }

    /// Whether a write would find room now (arms nothing).
    #[inline(always)]
    pub fn has_room(&mut self) -> bool {
        self.prod.has_room()
    }

    /// Waits (spinning briefly, then sleeping on the eventfd) until a write has room or the
    /// pipe is closed, until `deadline` if any (`false` on timeout). For threads only.
    pub fn wait_writable(&mut self, deadline: Option<Instant>) -> io::Result<bool> {
        loop {
            self.flush();
            if self.shared.state.load(Ordering::Acquire) & NO_SEND != 0
                || spin_until(|| self.prod.has_room())
                || !self.prod.sleep()
            {
                return Ok(true);
            }
            self.stats.sleeps += 1;
            if !self.shared.writer_sig.wait(deadline)? {
                return Ok(false);
            }
        }
    }

    /// [`Sender::write_blocking`] and a flush.
    pub fn send_blocking(&mut self, msg: T, deadline: Option<Instant>) -> Result<(), SendError<T>> {
        let res = self.write_blocking(msg, deadline);
        self.flush();
        res
    }

    /// Messages written and not yet flushed.
    pub fn unflushed(&self) -> usize {
        self.prod.unflushed()
    }

    /// The high-water mark.
    pub fn capacity(&self) -> usize {
        self.prod.capacity()
    }

    /// Messages in the pipe as this end last saw them (an upper bound).
    pub fn len_hint(&self) -> usize {
        self.prod.len_hint()
    }

    /// True while the reader and the context accept messages.
    pub fn is_open(&self) -> bool {
        self.shared.state.load(Ordering::Acquire) & NO_SEND == 0
    }

    /// The writable signal's fd: readable after a `WouldBlock` once space is freed (or the pipe
    /// closed). Edge-triggered use is safe.
    pub fn signal_fd(&self) -> RawFd {
        self.shared.writer_sig.as_raw_fd()
    }
}

impl<T: Send + 'static> Drop for Sender<T> {
    fn drop(&mut self) {
        self.flush();
        self.shared.mark_gone(WRITER_GONE);
        self.shared.reader_sig.signal();
    }
}

/// The reading end of a pipe.
pub struct Receiver<T: Send + 'static = Msg> {
    cons: Consumer<T>,
    shared: Arc<Shared>,
    /// `Closed` or `Discarded` was reported.
    done: bool,
    stats: EndStats,
}

impl<T: Send + 'static> Receiver<T> {
    /// Takes the next message without blocking. `WouldBlock` also arms the wake-up: the
    /// receiver's fd becomes readable when the writer publishes more.
    #[inline(always)]
    pub fn try_recv(&mut self) -> Result<T, RecvError> {
        if self.shared.state.load(Ordering::Relaxed) & CTX_DISCARD != 0 {
            return Err(self.discard());
        }
        match self.cons.pop() {
            Some(msg) => {
                if self.cons.take_wake_writer() {
                    self.wake_writer();
                }
                Ok(msg)
            }
            None => self.empty(),
        }
    }

    /// Takes up to `max` messages in one go, handing each to `f` in order: the pre-read batch
    /// without a per-message return value. Returns how many; an empty pipe answers like
    /// [`Receiver::try_recv`] (`WouldBlock` arms the wake-up).
    #[inline]
    pub fn recv_batch(&mut self, max: usize, mut f: impl FnMut(T)) -> Result<usize, RecvError> {
        if self.shared.state.load(Ordering::Relaxed) & CTX_DISCARD != 0 {
            return Err(self.discard());
        }
        let mut n = 0;
        while n < max {
            match self.cons.pop() {
                Some(msg) => f(msg),
                None => break,
            }
            n += 1;
        }
        if self.cons.take_wake_writer() {
            self.wake_writer();
        }
        if n > 0 || max == 0 {
            return Ok(n);
        }
        self.empty().map(|msg| {
            f(msg);
            1
        })
    }

    /// Like [`Receiver::recv_batch`], but hands each message to `f` by reference and drops it
    /// where it lies: the cheapest way to consume (no move of the handle out of the pipe).
    #[inline]
    pub fn read_batch(&mut self, max: usize, mut f: impl FnMut(&T)) -> Result<usize, RecvError> {
        if self.shared.state.load(Ordering::Relaxed) & CTX_DISCARD != 0 {
            return Err(self.discard());
        }
        let mut n = 0;
        while n < max && self.cons.pop_with(&mut f).is_some() {
            n += 1;
        }
        if self.cons.take_wake_writer() {
            self.wake_writer();
        }
        if n > 0 || max == 0 {
            return Ok(n);
        }
        self.empty().map(|msg| {
            f(&msg);
            1
        })
    }

    #[cold]
    fn wake_writer(&mut self) {
        self.stats.wakes += 1;
        self.shared.writer_sig.signal();
    }

    /// What this end did on its slow paths.
    pub fn stats(&self) -> EndStats {
        self.stats
    }

    #[cold]
    fn empty(&mut self) -> Result<T, RecvError> {
        if self.cons.take_wake_writer() {
            self.wake_writer();
        }
        loop {
            let state = self.shared.state.load(Ordering::Acquire);
            if state & NO_MORE != 0 {
                // Whatever the writer published before it left is still delivered, in order.
                return self.cons.pop().ok_or_else(|| self.closed());
            }
            if self.cons.sleep() {
                self.stats.sleeps += 1;
                if self.cons.take_wake_writer() {
                    self.wake_writer();
                }
                return Err(RecvError::WouldBlock);
            }
            if let Some(msg) = self.cons.pop() {
                return Ok(msg);
            }
        }
    }

    fn closed(&mut self) -> RecvError {
        self.done = true;
        RecvError::Closed
    }

    #[cold]
    fn discard(&mut self) -> RecvError {
        if self.done {
            return RecvError::Closed;
        }
        let mut n = 0;
        while self.cons.pop().is_some() {
            n += 1;
        }
        self.cons.release();
        self.shared.discarded.fetch_add(n, Ordering::AcqRel);
        self.done = true;
        RecvError::Discarded(n)
    }

    /// Takes the next message, sleeping until one arrives, the pipe closes, or `deadline`.
    pub fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<T, RecvError> {
        loop {
            if !self.cons.has_pending() {
                spin_until(|| self.cons.has_pending());
            }
            match self.try_recv() {
                Err(RecvError::WouldBlock) => {}
                other => return other,
            }
            if !self.shared.reader_sig.wait(deadline)? {
                return Err(RecvError::Timeout);
            }
        }
    }

    /// Whether a message is pending now (arms nothing).
    #[inline(always)]
    pub fn has_pending(&mut self) -> bool {
        self.cons.has_pending()
    }

    /// Waits (spinning briefly, then sleeping on the eventfd) until a message is pending or the
    /// pipe is closed, until `deadline` if any (`false` on timeout). For threads only.
    pub fn wait_readable(&mut self, deadline: Option<Instant>) -> io::Result<bool> {
        loop {
            if self.cons.has_pending()
                || spin_until(|| self.cons.has_pending())
                || self.shared.state.load(Ordering::Acquire) & NO_MORE != 0
            {
                return Ok(true);
            }
            let asleep = self.cons.sleep();
            if self.cons.take_wake_writer() {
                self.wake_writer();
            }
            if !asleep {
                return Ok(true);
            }
            self.stats.sleeps += 1;
            if !self.shared.reader_sig.wait(deadline)? {
                return Ok(false);
            }
        }
    }

    /// Takes the next message, sleeping as long as it takes.
    pub fn recv(&mut self) -> Result<T, RecvError> {
        self.recv_deadline(None)
    }

    /// Closes the reading end and hands back every message still queued, in order, so that
    /// none is lost silently. The writer's next send gets `Closed`.
    pub fn close(mut self) -> Vec<T> {
        self.shared.mark_gone(READER_GONE);
        self.shared.writer_sig.signal();
        let mut left = Vec::new();
        while let Some(msg) = self.cons.pop() {
            left.push(msg);
        }
        self.done = true;
        left
    }

    /// Messages published and not yet taken, as of the last look (a lower bound).
    pub fn len_hint(&self) -> usize {
        self.cons.len_hint()
    }

    /// The readable signal's fd: readable when messages arrive after a `WouldBlock` (or the
    /// pipe closed). Edge-triggered use is safe: read until `WouldBlock` after every event.
    pub fn signal_fd(&self) -> RawFd {
        self.shared.reader_sig.as_raw_fd()
    }
}

impl<T: Send + 'static> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.mark_gone(READER_GONE);
        self.shared.writer_sig.signal();
        if self.done {
            return;
        }
        let mut n = 0;
        while self.cons.pop().is_some() {
            n += 1;
        }
        self.shared.dropped_unread.fetch_add(n, Ordering::AcqRel);
    }
}

macro_rules! fd_source {
    ($ty:ident) => {
        impl<T: Send + 'static> mio::event::Source for $ty<T> {
            fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
                SourceFd(&self.signal_fd()).register(r, t, i)
            }
            fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
                SourceFd(&self.signal_fd()).reregister(r, t, i)
            }
            fn deregister(&mut self, r: &Registry) -> io::Result<()> {
                SourceFd(&self.signal_fd()).deregister(r)
            }
        }
    };
}

fd_source!(Sender);
fd_source!(Receiver);
