//! A worker process: drops privileges, builds its services from the cycle it inherited, and
//! runs the event loop until told to stop by its master (or by a signal sent to it directly).

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use mio::unix::SourceFd;
use mio::{Interest, Registry};

use crate::core::cycle::Cycle;
use crate::core::event::{
    self, Command as LoopCommand, Control, EventLoop, Listener, LoopFiles, Posted,
};
use crate::core::log;
use crate::core::process::channel::{Command, Received, Receiver};
use crate::core::process::{child, signals, Peer, ProcessError, WorkerCtx};
use crate::core::stats::{self, ConnStats};
use crate::log;

/// Where a worker stands: its stats slot, its place among its generation's workers (which
/// sockets of a `reuseport` group it accepts on) and its generation.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    pub slot: usize,
    pub index: usize,
    pub generation: u64,
}

/// Runs a worker in the child just forked; never returns.
pub fn run(cycle: &Cycle, me: Place, channel: Receiver, peers: Vec<Peer>) -> ! {
    let code = match serve(cycle, me, channel, peers) {
        Ok(()) => 0,
        Err(e) => {
            log!(Crit, "worker process: {e}");
            2
        }
    };
    log!(Info, "exit");
    std::process::exit(code)
}

fn serve(
    cycle: &Cycle,
    me: Place,
    channel: Receiver,
    peers: Vec<Peer>,
) -> Result<(), ProcessError> {
    let Place {
        slot, generation, ..
    } = me;
    let conf = &cycle.conf;
    let wake = child::become_child(conf, "bizzy: worker process")?;
    let posted = Posted::new();
    let ctx = WorkerCtx {
        slot,
        conf,
        zones: &cycle.zones,
        files: &cycle.files,
        posted: posted.clone(),
        generation,
        peers: std::cell::RefCell::new(peers),
    };
    let kinds = cycle.prepared.services(&ctx)?;
    let mut listeners = Vec::new();
    let mut services = Vec::new();
    for (kind, service) in kinds {
        let index = services.len();
        services.push(service);
        let workers = conf.main.worker_processes;
        let mine = cycle
            .listening
            .iter()
            .filter(|l| l.kind == kind && l.serves(me.index, workers));
        for l in mine {
            let sock = l
                .socket
                .try_clone()
                .map_err(|e| ProcessError::io("dup()", e))?;
            let sock = mio::net::TcpListener::from_std(sock);
            listeners.push(Listener::new(sock, l.addr, index).owned(l.reuseport));
        }
    }
    let zone = cycle
        .zones
        .get(stats::ZONE)
        .expect("every cycle has the core stats zone")
        .clone();
    let mut el = EventLoop::new(
        listeners,
        services,
        conf.main.worker_connections,
        ConnStats::new(zone, slot),
        posted,
    )
    .map_err(|e| ProcessError::io("epoll_create()", e))?;
    let mut control = WorkerControl {
        channel,
        wake,
        paths: cycle.files.iter().map(|(p, _)| p.clone()).collect(),
        error_log: conf.main.error_log.clone(),
    };
    let timeout = conf.main.worker_shutdown_timeout.0;
    el.run(&mut control, timeout)
        .map_err(|e| ProcessError::io("event loop", e))
}

struct WorkerControl {
    channel: Receiver,
    wake: OwnedFd,
    /// The cycle's other log files, in order: a Reopen command carries the error log first,
    /// then these.
    paths: Vec<PathBuf>,
    error_log: PathBuf,
}

impl Control for WorkerControl {
    fn register(&mut self, registry: &Registry) -> std::io::Result<()> {
        for fd in [self.channel.as_raw_fd(), self.wake.as_raw_fd()] {
            registry.register(&mut SourceFd(&fd), event::CONTROL, Interest::READABLE)?;
        }
        Ok(())
    }

    fn poll(&mut self, files: &mut LoopFiles<'_>) -> LoopCommand {
        signals::drain_pipe(self.wake.as_raw_fd());
        let mut out = LoopCommand::Continue;
        if signals::take(&signals::REOPEN) {
            self.reopen_self(files);
        }
        if signals::take(&signals::QUIT) {
            out = LoopCommand::Drain;
        }
        if signals::take(&signals::TERMINATE) {
            return LoopCommand::Exit;
        }
        loop {
            match self.channel.recv() {
                Ok(Received::Empty) => return out,
                Ok(Received::Closed) => {
                    log!(Crit, "the master process is gone: shutting down");
                    return LoopCommand::Drain;
                }
                Ok(Received::Command(Command::Quit, _)) => out = LoopCommand::Drain,
                Ok(Received::Command(Command::Terminate, _)) => return LoopCommand::Exit,
                Ok(Received::Command(Command::Reopen, fds)) => self.reopened(files, fds),
                Ok(Received::Command(Command::Peer { slot, generation }, fds)) => {
                    let Some(fd) = fds.into_iter().next() else {
                        log!(Crit, "a link to worker slot {slot} came without its socket");
                        continue;
                    };
                    let mut peer = Some(Peer {
                        slot: usize::from(slot),
                        generation,
                        fd,
                    });
                    for s in files.services.iter_mut() {
                        peer = peer.and_then(|p| s.peer(p));
                    }
                }
                Err(e) => {
                    log!(Crit, "channel recv() failed ({e})");
                    return out;
                }
            }
        }
    }
}

impl WorkerControl {
    /// The master sent newly opened files: error log first, then the others in order.
    fn reopened(&mut self, loop_files: &mut LoopFiles<'_>, fds: Vec<OwnedFd>) {
        let mut it = fds.into_iter().map(File::from);
        if let Some(f) = it.next() {
            log::replace(f);
        }
        let files: Vec<(PathBuf, File)> = self.paths.iter().cloned().zip(it).collect();
        for s in loop_files.services.iter_mut() {
            s.reopen(&files);
        }
        log!(Notice, "reopened log files");
    }

    /// USR1 sent to the worker itself: reopen by path (works when the rights allow it).
    fn reopen_self(&mut self, loop_files: &mut LoopFiles<'_>) {
        let mut fds: Vec<OwnedFd> = Vec::new();
        for p in std::iter::once(&self.error_log).chain(self.paths.iter()) {
            match log::open(p) {
                Ok(f) => fds.push(f.into()),
                Err(e) => {
                    log!(Crit, "reopen \"{}\" failed ({e})", p.display());
                    return;
                }
            }
        }
        self.reopened(loop_files, fds);
    }
}

/// Descriptors of a cycle's log files, error log first, for a Reopen command.
pub fn reopen_fds(cycle: &Cycle) -> Vec<RawFd> {
    std::iter::once(cycle.error_log.as_raw_fd())
        .chain(cycle.files.iter().map(|(_, f)| f.as_raw_fd()))
        .collect()
}
