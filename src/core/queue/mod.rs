//! The queue engine: ZeroMQ-style messaging between threads and between processes.
//!
//! Owns every hand-off of the server: a worker's event loop and its I/O thread (inproc pipes),
//! the master and its children (ipc channels over socket pairs made before `fork`). It sits at
//! the bottom of the dependency graph: it knows no protocol and imports nothing from the rest
//! of the crate. It never blocks unless a function says so in its name or its docs
//! (`recv`, `recv_deadline`, `write_blocking`, `send_blocking`, `flush_blocking`), and it never
//! loses a message silently: a failed send hands the message back, a shutdown says whether what
//! was queued is drained or discarded and how much.
//!
//! # Pieces
//!
//! - [`Context`]: what would be global, per process (no global state anywhere). It makes the
//!   pipes, names inproc endpoints, and shuts everything down ([`Context::shutdown`]).
//! - [`Msg`]: payloads up to [`INLINE_CAPACITY`] bytes inline in the 72-byte handle, larger
//!   ones in one shared `Arc<[u8]>`; plus a 32-bit id (request/reply correlation).
//! - [`Sender`] / [`Receiver`]: a one-way inproc pipe: lock-free single-producer
//!   single-consumer ring ([`ring`], ZeroMQ's ypipe on a bounded ring, checked with loom),
//!   pre-write / pre-read batching (one atomic operation per batch), a high-water mark, and an
//!   eventfd [`Signaller`] per end that wakes a sleeper once per batch. Both ends are
//!   `mio::event::Source`s. Fast paths: [`Sender::write_with`] builds a message in its slot,
//!   [`Receiver::read_batch`] consumes a whole pre-read batch by reference; threads wait with
//!   [`Sender::wait_writable`] / [`Receiver::wait_readable`] (spin, yield, then sleep).
//! - [`IpcChannel`] / [`IpcPair`]: the ipc transport, framed and batched, with fd passing.
//! - [`Link`]: what the patterns run on; [`Endpoint`] (inproc) and [`IpcChannel`] implement it.
//! - Patterns, each its own socket type: [`pipeline`] (`Push`/`Pull`), [`reqrep`]
//!   (`Req`/`Rep`, out-of-order replies), [`pubsub`] (`Pub`/`Sub`, prefixes, forwarding,
//!   conflation), [`credit`] (credit-based flow control for streams).
//!
//! # Event-loop use (a worker)
//!
//! Register a [`Receiver`] (or an [`IpcChannel`]) in the loop's `mio::Poll` with
//! `Interest::READABLE`; on each event call `try_recv` until `WouldBlock`. `WouldBlock` arms
//! the wake-up, so the fd fires again for the next batch; edge-triggered use is safe. To
//! produce, `write` each message of an input batch and `flush` once; on
//! `SendError::WouldBlock(msg)` keep `msg`, stop reading the input that produced it (TCP
//! back-pressure) and register the [`Sender`] with `Interest::READABLE`: its fd fires when
//! the reader has freed space.
//!
//! # Master and workers over ipc
//!
//! ```no_run
//! use bizzy::core::queue::{IpcPair, Msg, RecvError};
//! # fn fork() -> i32 { 0 }
//! # let n = 2;
//! // Master, before forking: one pair per child.
//! let mut pairs = IpcPair::many(n)?;
//! let mut channels = Vec::new(); // the master's ends, index = worker slot
//! for slot in 0..n {
//!     let pair = pairs.remove(0);
//!     if fork() == 0 {
//!         // Child: keep its own end (closes the master's end here), and close every master
//!         // end inherited for earlier siblings without flushing their copied buffers.
//!         let mut ch = pair.into_child();
//!         channels.into_iter().for_each(bizzy::core::queue::IpcChannel::close_inherited);
//!         // ... register `ch` in the worker's mio Poll (it is a Source), then on readable:
//!         loop {
//!             match ch.try_recv() {
//!                 Ok(cmd) => { let fds = ch.take_fds(); /* act on cmd, adopt fds */ }
//!                 Err(RecvError::WouldBlock) => break,
//!                 Err(_) => break, // master gone or broken: exit
//!             }
//!         }
//!         # return Ok::<(), std::io::Error>(());
//!     }
//!     channels.push(pair.into_parent()); // closes the child's end in the master
//! }
//! // Master: a command to every worker; a reopened log file travels as SCM_RIGHTS.
//! # let log = std::fs::File::open("/dev/null")?;
//! use std::os::fd::AsFd;
//! for ch in &mut channels {
//!     ch.send_with_fds(Msg::new(b"reopen"), &[log.as_fd()]).ok();
//!     ch.send(Msg::new(b"quit")).ok();
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! A worker that died is replaced with a fresh [`IpcPair`] for its slot; the master drops the
//! old end. Replies from a worker come back on the same channel (`try_recv` in the master).
//! Sends are batched: `write` several, `flush` once (one `write(2)`), or `send` for one.

pub mod context;
pub mod credit;
pub mod error;
pub mod ipc;
pub mod link;
pub mod msg;
pub mod pipe;
pub mod pipeline;
pub mod pubsub;
pub mod reqrep;
pub mod ring;
pub mod signal;
mod sync;

pub use context::{Context, Linger, Listener, ShutdownReport};
pub use credit::{CreditReceiver, CreditSender};
pub use error::{RecvError, SendError};
pub use ipc::{IpcChannel, IpcPair};
pub use link::{Endpoint, Link};
pub use msg::{Msg, INLINE_CAPACITY};
pub use pipe::{EndStats, PipeOptions, Receiver, Sender, DEFAULT_HWM};
pub use pipeline::{Pull, Push};
pub use pubsub::{Pub, Published, Sub};
pub use reqrep::{Rep, ReplyTo, Req};
pub use signal::Signaller;
