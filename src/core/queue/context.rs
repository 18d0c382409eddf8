//! The context: everything that would otherwise be global to the queue engine, per process.
//!
//! Owns the registry of the pipes it created (weakly: each pipe end has exactly one owner, the
//! code that holds it), the named inproc endpoints, and the shutdown state. Two contexts in
//! one process share nothing. Shutting a context down closes every pipe it made, wakes every
//! sleeper on them, and reports what was queued and whether it will be drained or was
//! discarded. Never blocks on a pipe; its locks guard only the registries, never the message
//! path.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::link::Endpoint;
use super::pipe::{channel, PipeOptions, Receiver, Sender, Shared};

/// What a shutdown does with the messages still queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linger {
    /// Readers still receive everything queued, in order, then `Closed`.
    Drain,
    /// Readers get `Discarded(n)` once (the n queued messages are dropped, in order), then
    /// `Closed`.
    Discard,
}

/// What a shutdown found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// What happens to the queued messages.
    pub linger: Linger,
    /// Pipes that were still open.
    pub pipes: usize,
    /// Messages queued in them when they were closed: left for their readers to drain, or
    /// discarded, as `linger` says. A snapshot: a send that completes as the pipe closes (with
    /// what its writer had not flushed yet) lands after it and shares the same fate.
    pub queued: usize,
    /// Messages dropped unread earlier with a receiver that was dropped instead of closed.
    pub dropped_unread: usize,
}

/// Per-process queue engine state, as `zmq_ctx_t`. Share it by reference (it is `Sync`).
pub struct Context {
    pipes: Mutex<Vec<Weak<Shared>>>,
    endpoints: Mutex<HashMap<String, Arc<Backlog>>>,
    shut: AtomicBool,
    dropped_unread: Arc<AtomicUsize>,
    opts: PipeOptions,
}

type Backlog = Mutex<VecDeque<Endpoint>>;

/// A bound inproc endpoint name; connections queue here until accepted.
pub struct Listener {
    backlog: Arc<Backlog>,
}

impl Listener {
    /// The next connected endpoint, if any.
    pub fn accept(&self) -> Option<Endpoint> {
        lock(&self.backlog).pop_front()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a registry lock leaves the registry consistent (every operation
    // on it is a single push, pop or retain), so poisoning carries no information here.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn shut_down() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "queue context is shut down")
}

impl Context {
    /// A context whose pipes use the default options.
    pub fn new() -> Self {
        Self::with_options(PipeOptions::default())
    }

    /// A context whose pipes use `opts` unless told otherwise.
    pub fn with_options(opts: PipeOptions) -> Self {
        Context {
            pipes: Mutex::new(Vec::new()),
            endpoints: Mutex::new(HashMap::new()),
            shut: AtomicBool::new(false),
            dropped_unread: Arc::new(AtomicUsize::new(0)),
            opts,
        }
    }

    /// The options new pipes get.
    pub fn options(&self) -> PipeOptions {
        self.opts
    }

    /// A one-way pipe with the context's options.
    pub fn pipe<T: Send + 'static>(&self) -> io::Result<(Sender<T>, Receiver<T>)> {
        self.pipe_with(self.opts)
    }

    /// A one-way pipe with its own options.
    pub fn pipe_with<T: Send + 'static>(
        &self,
        opts: PipeOptions,
    ) -> io::Result<(Sender<T>, Receiver<T>)> {
        if self.shut.load(Ordering::Acquire) {
            return Err(shut_down());
        }
        let (tx, rx, shared) = channel(opts, Arc::clone(&self.dropped_unread))?;
        let mut pipes = lock(&self.pipes);
        pipes.retain(|w| w.strong_count() > 0);
        pipes.push(Arc::downgrade(&shared));
        Ok((tx, rx))
    }

    /// Two connected bidirectional endpoints (a pipe each way).
    pub fn pair(&self) -> io::Result<(Endpoint, Endpoint)> {
        let (a_tx, b_rx) = self.pipe()?;
        let (b_tx, a_rx) = self.pipe()?;
        Ok((Endpoint::new(a_tx, a_rx), Endpoint::new(b_tx, b_rx)))
    }

    /// Binds an inproc name in this context (`AddrInUse` if taken).
    pub fn bind(&self, name: &str) -> io::Result<Listener> {
        if self.shut.load(Ordering::Acquire) {
            return Err(shut_down());
        }
        let mut endpoints = lock(&self.endpoints);
        if endpoints.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("inproc://{name}"),
            ));
        }
        let backlog = Arc::new(Mutex::new(VecDeque::new()));
        endpoints.insert(name.to_owned(), Arc::clone(&backlog));
        Ok(Listener { backlog })
    }

    /// Connects to an inproc name bound in this context (`ConnectionRefused` if none).
    pub fn connect(&self, name: &str) -> io::Result<Endpoint> {
        let backlog = lock(&self.endpoints).get(name).cloned().ok_or_else(|| {
            io::Error::new(io::ErrorKind::ConnectionRefused, format!("inproc://{name}"))
        })?;
        let (ours, theirs) = self.pair()?;
        lock(&backlog).push_back(theirs);
        Ok(ours)
    }

    /// Removes a bound name; endpoints already connected keep working.
    pub fn unbind(&self, name: &str) -> bool {
        lock(&self.endpoints).remove(name).is_some()
    }

    /// Messages dropped unread so far with receivers that were dropped instead of closed.
    pub fn dropped_unread(&self) -> usize {
        self.dropped_unread.load(Ordering::Acquire)
    }

    /// Closes every pipe of this context and wakes every sleeper on them: senders get `Closed`
    /// with their message back; readers drain or get `Discarded(n)` as `linger` says, then
    /// `Closed`. Connections waiting in listeners are closed the same way. Idempotent: a
    /// second call reports what is still open.
    pub fn shutdown(&self, linger: Linger) -> ShutdownReport {
        self.shut.store(true, Ordering::Release);
        lock(&self.endpoints).clear();
        let live: Vec<Arc<Shared>> = lock(&self.pipes)
            .drain(..)
            .filter_map(|w| w.upgrade())
            .collect();
        let mut report = ShutdownReport {
            linger,
            pipes: 0,
            queued: 0,
            dropped_unread: self.dropped_unread(),
        };
        for shared in live.iter().filter(|s| s.is_open()) {
            report.pipes += 1;
            report.queued += shared.close(linger == Linger::Discard);
        }
        report
    }

    /// True after [`Context::shutdown`].
    pub fn is_shut_down(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Context {
    /// A context that goes away drains: nothing queued is discarded behind anyone's back.
    fn drop(&mut self) {
        if !self.is_shut_down() {
            self.shutdown(Linger::Drain);
        }
    }
}
