//! Signal handling: handlers only set flags (and poke a self-pipe); loops act on the flags.
//!
//! The master blocks its signals and sleeps in `sigsuspend`, so a signal can only arrive while
//! it sleeps (nginx's master cycle). A worker sleeps in `epoll_wait`; its handler also writes a
//! byte to a pipe the event loop watches, so a signal that lands just before the poll still
//! wakes it.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

pub static RELOAD: AtomicBool = AtomicBool::new(false);
pub static QUIT: AtomicBool = AtomicBool::new(false);
pub static TERMINATE: AtomicBool = AtomicBool::new(false);
pub static REOPEN: AtomicBool = AtomicBool::new(false);
pub static UPGRADE: AtomicBool = AtomicBool::new(false);
pub static NOACCEPT: AtomicBool = AtomicBool::new(false);
pub static CHILD: AtomicBool = AtomicBool::new(false);
pub static ALARM: AtomicBool = AtomicBool::new(false);

static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// The signals the master acts on.
pub const MASTER_SIGNALS: [Signal; 9] = [
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCHLD,
    Signal::SIGALRM,
];

extern "C" fn on_signal(sig: libc::c_int) {
    let flag = match sig {
        libc::SIGHUP => &RELOAD,
        libc::SIGQUIT => &QUIT,
        libc::SIGTERM | libc::SIGINT => &TERMINATE,
        libc::SIGUSR1 => &REOPEN,
        libc::SIGUSR2 => &UPGRADE,
        libc::SIGWINCH => &NOACCEPT,
        libc::SIGCHLD => &CHILD,
        libc::SIGALRM => &ALARM,
        _ => return,
    };
    flag.store(true, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking, a full pipe is fine.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

fn set_handler(sig: Signal, handler: SigHandler) {
    let act = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler only touches atomics and calls write(2).
    if let Err(e) = unsafe { signal::sigaction(sig, &act) } {
        crate::log!(Crit, "sigaction({sig}) failed ({e})");
    }
}

fn master_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in MASTER_SIGNALS {
        set.add(s);
    }
    set
}

/// Installs the master's handlers with the signals blocked outside `suspend`.
pub fn install_master() {
    let _ = signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&master_set()), None);
    for s in MASTER_SIGNALS {
        set_handler(s, SigHandler::Handler(on_signal));
    }
}

/// Sleeps until a signal was handled.
pub fn suspend() {
    let _ = SigSet::empty().suspend();
}

/// In a new child: default dispositions for what the master handled, nothing blocked, and the
/// flags cleared (they were copied from the master).
pub fn reset_in_child() {
    for s in MASTER_SIGNALS {
        set_handler(s, SigHandler::SigDfl);
    }
    for f in [
        &RELOAD, &QUIT, &TERMINATE, &REOPEN, &UPGRADE, &NOACCEPT, &CHILD, &ALARM,
    ] {
        f.store(false, Ordering::SeqCst);
    }
    let _ = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// A worker's handlers: QUIT drains, TERM and INT exit, USR1 reopens; the others are ignored
/// (they are the master's). Returns the read end of the wake-up pipe.
pub fn install_worker() -> std::io::Result<OwnedFd> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)?;
    WAKE_FD.store(w.as_raw_fd(), Ordering::SeqCst);
    std::mem::forget(w);
    for s in [
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
    ] {
        set_handler(s, SigHandler::Handler(on_signal));
    }
    for s in [
        Signal::SIGHUP,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGALRM,
    ] {
        set_handler(s, SigHandler::SigIgn);
    }
    Ok(r)
}

/// Empties the wake-up pipe.
pub fn drain_pipe(fd: RawFd) {
    let mut buf = [0u8; 64];
    // SAFETY: reading into a local buffer from our own non-blocking pipe.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// Reads and clears a flag.
pub fn take(flag: &AtomicBool) -> bool {
    flag.swap(false, Ordering::SeqCst)
}
