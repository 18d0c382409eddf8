//! What stops a cycle from being built, the master from starting or a worker from serving,
//! displayed as the error log and the command line print it (nginx's wording:
//! `open() "/var/run/bizzy.pid" failed (Permission denied)`).
//!
//! Errors of the protocol layers and modules reach core as an [`AppError`], which core only
//! displays: it cannot name their types.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// An error of a protocol layer or module (a file it could not load, a zone it did not get),
/// returned through [`super::App`] and [`super::Prepared`].
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// Why a system call failed.
#[derive(Debug)]
pub enum Cause {
    Io(io::Error),
    Nix(nix::Error),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Io(e) => e.fmt(f),
            Cause::Nix(e) => e.fmt(f),
        }
    }
}

/// A cycle, the master or a worker could not go on.
#[derive(Debug)]
pub enum ProcessError {
    /// A system call failed: `call` is what was called, with its arguments as nginx writes
    /// them (`open() "/x"`, `setuid(65534)`); a look-up that finds nothing has no cause.
    Sys { call: String, cause: Option<Cause> },
    /// The sockets a previous binary handed over cannot be taken.
    Inherited(io::Error),
    /// A listening socket cannot be bound (the error names the address).
    Listen(io::Error),
    /// More workers than the shared counters have slots for.
    WorkerProcesses { n: usize, max: usize },
    /// Every worker exited at start.
    WorkersFailed,
    /// The user name holds a NUL byte.
    InvalidUserName,
    /// `-s` with a signal name that is not stop, quit, reload or reopen.
    BadSignal(String),
    /// The pid file does not hold a process id.
    BadPid { text: String, file: PathBuf },
    /// A protocol layer or module refused the cycle.
    App(AppError),
}

impl ProcessError {
    /// `call` failed with an I/O error.
    pub fn io(call: impl Into<String>, err: io::Error) -> ProcessError {
        ProcessError::Sys {
            call: call.into(),
            cause: Some(Cause::Io(err)),
        }
    }

    /// `call` failed with an errno from nix.
    pub fn nix(call: impl Into<String>, err: nix::Error) -> ProcessError {
        ProcessError::Sys {
            call: call.into(),
            cause: Some(Cause::Nix(err)),
        }
    }

    /// `open() "path" failed (reason)`.
    pub fn open(path: &Path, err: io::Error) -> ProcessError {
        ProcessError::io(format!("open() \"{}\"", path.display()), err)
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::Sys { call, cause: None } => write!(f, "{call} failed"),
            ProcessError::Sys {
                call,
                cause: Some(cause),
            } => write!(f, "{call} failed ({cause})"),
            ProcessError::Inherited(e) => write!(f, "inherited sockets: {e}"),
            ProcessError::Listen(e) => e.fmt(f),
            ProcessError::WorkerProcesses { n, max } => {
                write!(f, "main.worker_processes: {n} is out of range (1..{max})")
            }
            ProcessError::WorkersFailed => {
                f.write_str("the worker processes could not start (see the error log)")
            }
            ProcessError::InvalidUserName => f.write_str("invalid user name"),
            ProcessError::BadSignal(name) => write!(
                f,
                "invalid option: \"-s {name}\" (stop, quit, reload or reopen)"
            ),
            ProcessError::BadPid { text, file } => {
                write!(f, "invalid PID number \"{text}\" in \"{}\"", file.display())
            }
            ProcessError::App(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ProcessError {}

impl From<AppError> for ProcessError {
    fn from(e: AppError) -> ProcessError {
        ProcessError::App(e)
    }
}
