//! Process kinds besides the workers (nginx's cache manager): what a cycle asks the master to
//! run beside its workers, and how such a process learns that it must stop.
//!
//! ```text
//!   master: Prepared::helpers() -> fork each after the workers; restart with back-off;
//!           reload: start the new cycle's, then Quit the old ones
//!   child:  core sets the title, drops privileges, and a thread turns the master's commands
//!           and the signals into Stop; the body (Helper::run) checks Stop or polls Stop::fd
//! ```

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::core::config::Conf;
use crate::core::cycle::Cycle;
use crate::core::log;
use crate::core::process::channel::{Command, Received, Receiver};
use crate::core::process::{child, signals, AppError, ProcessError};
use crate::core::shm::Zones;
use crate::log;

/// A process kind besides the workers. core knows nothing of what it does: the body comes from
/// the wiring.
pub trait Helper {
    /// "cache manager": the process title is "bizzy: cache manager process", and the logs
    /// say "start cache manager process 1234".
    fn name(&self) -> &'static str;
    /// The body, in the forked child (signals reset, privileges dropped, title set, error log
    /// installed). Returns when `ctx.stop` asks it to (Ok: exit 0). An error is logged and the
    /// process exits 2; the master restarts it with back-off.
    fn run(&self, ctx: &HelperCtx<'_>) -> Result<(), AppError>;
}

/// What a helper process knows about itself.
pub struct HelperCtx<'a> {
    pub conf: &'a Conf,
    pub zones: &'a Zones,
    /// The cycle's generation (the number of reloads before it).
    pub generation: u64,
    pub stop: &'a Stop,
}

/// How a helper is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// Finish the work under way, then return (QUIT, a reload replacing it).
    Quit,
    /// Return now (TERM, INT).
    Terminate,
}

const GO_ON: u8 = 0;
const QUIT: u8 = 1;
const TERMINATE: u8 = 2;

/// What the master asked of a helper: set by core, read by the body between steps, or waited
/// for through [`Stop::fd`].
pub struct Stop {
    asked: AtomicU8,
    /// Read end: readable once a stop was asked, and it stays so (nobody reads it).
    read: OwnedFd,
    write: OwnedFd,
}

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stop")
            .field("requested", &self.requested())
            .finish()
    }
}

impl Stop {
    /// A stop nobody asked for yet.
    pub fn new() -> std::io::Result<Stop> {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        Ok(Stop {
            asked: AtomicU8::new(GO_ON),
            read,
            write,
        })
    }

    /// Quit or Terminate once asked; None: go on. A Terminate is never turned back into a Quit.
    pub fn requested(&self) -> Option<StopKind> {
        match self.asked.load(Ordering::Acquire) {
            QUIT => Some(StopKind::Quit),
            TERMINATE => Some(StopKind::Terminate),
            _ => None,
        }
    }

    /// Asks the body to stop (core's side).
    pub fn request(&self, kind: StopKind) {
        let v = match kind {
            StopKind::Quit => QUIT,
            StopKind::Terminate => TERMINATE,
        };
        if self.asked.fetch_max(v, Ordering::AcqRel) < v {
            // One byte is enough to keep the read end readable; a full pipe is just as readable.
            let _ = nix::unistd::write(&self.write, &[v]);
        }
    }

    /// A descriptor that becomes readable once a stop is asked and stays readable
    /// (level-triggered; the body never reads it): for poll(2) or tokio's AsyncFd.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

/// Runs `helper` in the child just forked; never returns. Exit code 0 when the body returned
/// after a stop, 2 when it failed (the master restarts it either way unless it asked).
pub fn run(cycle: &Cycle, helper: &dyn Helper, generation: u64, channel: Receiver) -> ! {
    let name = helper.name();
    let code = match serve(cycle, helper, generation, channel) {
        Ok(()) => 0,
        Err(e) => {
            log!(Crit, "{name} process: {e}");
            2
        }
    };
    log!(Info, "exit");
    std::process::exit(code)
}

fn serve(
    cycle: &Cycle,
    helper: &dyn Helper,
    generation: u64,
    channel: Receiver,
) -> Result<(), ProcessError> {
    let conf = &cycle.conf;
    let wake = child::become_child(conf, &format!("bizzy: {} process", helper.name()))?;
    let stop = Arc::new(Stop::new().map_err(|e| ProcessError::io("pipe()", e))?);
    let control = Control {
        channel: Some(channel),
        wake,
        stop: Arc::clone(&stop),
        error_log: conf.main.error_log.clone(),
    };
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || control.run())
        .map_err(|e| ProcessError::io("pthread_create()", e))?;
    let ctx = HelperCtx {
        conf,
        zones: &cycle.zones,
        generation,
        stop: &stop,
    };
    helper.run(&ctx).map_err(ProcessError::App)
}

/// The helper's control thread: turns the master's commands and the signals sent to the
/// helper into its [`Stop`], so that the body never watches either.
struct Control {
    /// None once the master is gone (a closed channel stays readable).
    channel: Option<Receiver>,
    wake: OwnedFd,
    stop: Arc<Stop>,
    error_log: std::path::PathBuf,
}

impl Control {
    fn run(mut self) {
        loop {
            let mut fds = vec![libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if let Some(c) = &self.channel {
                fds.push(libc::pollfd {
                    fd: c.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            // SAFETY: `fds` is a valid array of its length; EINTR is retried by looping.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            self.signals();
            self.commands();
        }
    }

    /// QUIT, TERM, INT and USR1 sent to the helper itself.
    fn signals(&mut self) {
        signals::drain_pipe(self.wake.as_raw_fd());
        if signals::take(&signals::REOPEN) {
            match log::open(&self.error_log) {
                Ok(f) => {
                    log::replace(f);
                    log!(Notice, "reopened log files");
                }
                Err(e) => log!(Crit, "reopen \"{}\" failed ({e})", self.error_log.display()),
            }
        }
        if signals::take(&signals::QUIT) {
            self.stop.request(StopKind::Quit);
        }
        if signals::take(&signals::TERMINATE) {
            self.stop.request(StopKind::Terminate);
        }
    }

    /// Everything the master sent since the last look.
    fn commands(&mut self) {
        let Some(channel) = self.channel.as_mut() else {
            return;
        };
        loop {
            match channel.recv() {
                Ok(Received::Empty) => return,
                Ok(Received::Closed) => {
                    log!(Crit, "the master process is gone: shutting down");
                    self.stop.request(StopKind::Quit);
                    self.channel = None;
                    return;
                }
                Ok(Received::Command(Command::Quit, _)) => self.stop.request(StopKind::Quit),
                Ok(Received::Command(Command::Terminate, _)) => {
                    self.stop.request(StopKind::Terminate)
                }
                Ok(Received::Command(Command::Reopen, fds)) => {
                    if let Some(fd) = fds.into_iter().next() {
                        log::replace(File::from(fd));
                        log!(Notice, "reopened log files");
                    }
                }
                Ok(Received::Command(Command::Peer { .. }, _)) => {}
                Err(e) => {
                    log!(Crit, "channel recv() failed ({e})");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn a_stop_is_seen_and_its_descriptor_stays_readable() {
        let s = Stop::new().unwrap();
        assert_eq!(s.requested(), None);
        assert!(!readable(s.fd()));
        s.request(StopKind::Quit);
        assert_eq!(s.requested(), Some(StopKind::Quit));
        assert!(readable(s.fd()));
        assert!(readable(s.fd()), "level-triggered: still readable");
        s.request(StopKind::Terminate);
        s.request(StopKind::Quit);
        assert_eq!(s.requested(), Some(StopKind::Terminate));
    }
}
