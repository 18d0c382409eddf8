//! The queue engine: ZeroMQ-style messaging between threads and processes.

pub mod context;
pub mod error;
pub mod ipc;
pub mod link;
pub mod msg;
pub mod pipe;
pub mod ring;
pub mod signal;
mod sync;

pub use context::{Context, Linger, Listener, ShutdownReport};
pub use error::{RecvError, SendError};
pub use ipc::{IpcChannel, IpcPair};
pub use link::{Endpoint, Link};
pub use msg::{Msg, INLINE_CAPACITY};
pub use pipe::{EndStats, PipeOptions, Receiver, Sender, DEFAULT_HWM};
pub use signal::Signaller;
