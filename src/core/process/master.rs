//! The master process: builds cycles, forks and supervises workers and the cycle's helpers
//! (the cache manager), and acts on signals.
//!
//! Signal handlers only set flags; the master sleeps in `sigsuspend` and then acts on the flags
//! in a fixed order (reap, terminate, quit, reload, reopen, upgrade, stop workers), as nginx's
//! master cycle does. It never serves a client.
//!
//! Its children are of two kinds. Workers have a stats slot, links to each other and the
//! listening sockets. Helpers ([`Helper`]) have none of these: they are started after the
//! workers, restarted with their own back-off, replaced on reload, told to stop on QUIT and
//! TERM like workers, and left alone by WINCH (the old master's cache manager keeps the replica
//! fresh until the old master is told QUIT).

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::core::config::Conf;
use crate::core::cycle::Cycle;
use crate::core::listen;
use crate::core::log;
use crate::core::process::channel::{self, Command, Sender};
use crate::core::process::{helper, signals, title, worker, App, Helper, Peer, ProcessError};
use crate::core::queue::IpcPair;
use crate::core::stats;
use crate::log;

mod system;

use system::daemonize;
pub use system::{read_pid, signal_master, write_pid};

/// Where the master found its configuration, and how it was started.
#[derive(Debug, Clone)]
pub struct Start {
    pub conf_file: PathBuf,
    pub prefix: PathBuf,
    /// The binary to execute on upgrade (resolved at start-up: the file may be replaced later).
    pub exe: PathBuf,
    pub args: Vec<OsString>,
}

/// What a child of the master is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A worker, in its stats slot.
    Worker { slot: usize },
    /// The helper at `index` in its cycle's `Prepared::helpers()`.
    Helper { index: usize, name: &'static str },
}

struct Child {
    pid: Pid,
    kind: Kind,
    /// A worker's place among its generation's workers: which sockets of a `reuseport` group
    /// it accepts on.
    index: usize,
    generation: u64,
    tx: Sender,
    /// Told to stop: its exit is expected.
    exiting: bool,
    started: Instant,
}

impl Child {
    fn slot(&self) -> Option<usize> {
        match self.kind {
            Kind::Worker { slot } => Some(slot),
            Kind::Helper { .. } => None,
        }
    }

    fn is_worker(&self) -> bool {
        self.slot().is_some()
    }

    /// "worker process", "cache manager process": how the logs name it.
    fn what(&self) -> String {
        match self.kind {
            Kind::Worker { .. } => "worker process".to_string(),
            Kind::Helper { name, .. } => format!("{name} process"),
        }
    }
}

/// The restarts of one helper of the current cycle (its own back-off, apart from the workers').
#[derive(Debug, Default)]
struct Respawn {
    /// Deaths in a row, each younger than [`HEALTHY_AFTER`].
    failures: u32,
    /// When it is due to start again, while waiting out its back-off.
    at: Option<Instant>,
}

pub struct Master<'a> {
    app: &'a dyn App,
    start: Start,
    cycle: Cycle,
    generation: u64,
    children: Vec<Child>,
    pid_path: PathBuf,
    new_binary: Option<Pid>,
    noaccepting: bool,
    quitting: bool,
    terminating: Option<Instant>,
    failures: u32,
    respawn_at: Option<Instant>,
    respawn_slots: usize,
    /// The current cycle's helpers, by index in `Prepared::helpers()`.
    helper_respawns: Vec<Respawn>,
    /// Every worker failed fatally: exit with an error.
    failed: bool,
}

/// Longest wait between restarts of a child that keeps dying.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child that lived this long counts as healthy again.
const HEALTHY_AFTER: Duration = Duration::from_secs(2);
/// After a fast stop, children still alive this long are killed.
const KILL_AFTER: Duration = Duration::from_secs(5);
/// Exit code with which a worker says "do not restart me" (a fatal configuration problem).
const FATAL: i32 = 2;

/// Starts the master: builds the first cycle, writes the pid file, forks the workers and
/// supervises them until stopped. Errors before the workers start are returned.
pub fn run(app: &dyn App, start: Start, conf: Conf) -> Result<(), ProcessError> {
    let inherited = listen::inherited().map_err(ProcessError::Inherited)?;
    let upgraded = !inherited.is_empty();
    let cycle = Cycle::build(conf, app, &inherited, None)?;
    drop(inherited);
    check_workers(&cycle.conf)?;
    let level = cycle.conf.main.log_level;
    let err_log = cycle
        .error_log
        .try_clone()
        .map_err(|e| ProcessError::io("dup()", e))?;
    if cycle.conf.main.daemon && !upgraded {
        daemonize()?;
    }
    log::install(err_log, level);
    let pid_path = cycle.conf.main.pid.clone();
    if let Err(e) = write_pid(&pid_path) {
        // A daemon's standard error is /dev/null by now: the error log is where it is read.
        log!(Crit, "{e}");
        return Err(e);
    }
    signals::install_master();
    title::set(&master_title(&start));
    log!(
        Notice,
        "bizzy/{} started, master process {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    let mut m = Master {
        app,
        start,
        cycle,
        generation: 0,
        children: Vec::new(),
        pid_path,
        new_binary: None,
        noaccepting: false,
        quitting: false,
        terminating: None,
        failures: 0,
        respawn_at: None,
        respawn_slots: 0,
        helper_respawns: Vec::new(),
        failed: false,
    };
    app.before_workers(&m.cycle.conf, &m.start.exe);
    m.start_workers();
    m.start_helpers();
    m.cycle_loop();
    if m.failed {
        return Err(ProcessError::WorkersFailed);
    }
    Ok(())
}

fn master_title(s: &Start) -> String {
    let mut t = String::from("bizzy: master process");
    for a in &s.args {
        t.push(' ');
        t.push_str(&a.to_string_lossy());
    }
    t
}

fn check_workers(conf: &Conf) -> Result<(), ProcessError> {
    let n = conf.main.worker_processes;
    if n == 0 || n > stats::MAX_SLOTS / 2 {
        return Err(ProcessError::WorkerProcesses {
            n,
            max: stats::MAX_SLOTS / 2,
        });
    }
    Ok(())
}

impl Master<'_> {
    fn cycle_loop(&mut self) {
        loop {
            // Checked before sleeping: a stop with no children left (after WINCH) brings no
            // SIGCHLD to wake for.
            if self.children.is_empty() && (self.quitting || self.terminating.is_some()) {
                self.exit();
                return;
            }
            signals::suspend();
            if signals::take(&signals::CHILD) {
                self.reap();
            }
            if signals::take(&signals::TERMINATE) {
                self.terminate();
                continue;
            }
            if signals::take(&signals::QUIT) {
                self.quit();
                continue;
            }
            if self.quitting || self.terminating.is_some() {
                self.on_alarm_while_stopping();
                continue;
            }
            if signals::take(&signals::RELOAD) {
                self.reload();
            }
            if signals::take(&signals::REOPEN) {
                self.reopen();
            }
            if signals::take(&signals::UPGRADE) {
                self.upgrade();
            }
            if signals::take(&signals::NOACCEPT) {
                self.stop_workers();
            }
            if signals::take(&signals::ALARM) {
                self.respawn_due();
            }
        }
    }

    fn start_workers(&mut self) {
        for _ in 0..self.cycle.conf.main.worker_processes {
            self.spawn_worker();
        }
    }

    fn free_slot(&self) -> usize {
        (0..stats::MAX_SLOTS)
            .find(|s| !self.children.iter().any(|c| c.slot() == Some(*s)))
            .expect("at most MAX_SLOTS/2 workers per generation, two generations at a time")
    }

    /// The lowest place among the current generation's workers that no live worker holds (a
    /// worker restarted after a crash takes the place, and so the sockets, of the one it
    /// replaces).
    fn free_index(&self) -> usize {
        let taken = |i: usize| {
            self.children.iter().any(|c| {
                c.is_worker() && c.generation == self.generation && !c.exiting && c.index == i
            })
        };
        (0..self.cycle.conf.main.worker_processes)
            .find(|i| !taken(*i))
            .unwrap_or(0)
    }

    fn spawn_worker(&mut self) {
        let slot = self.free_slot();
        let index = self.free_index();
        let pair = match channel::pair() {
            Ok(p) => p,
            Err(e) => return log!(Crit, "socketpair() failed while spawning a worker ({e})"),
        };
        // A link to every running worker (nginx passes its channels the same way): the new
        // worker inherits its ends, the others get theirs over their command channels. Helpers
        // are no part of the mesh.
        let mut links = Vec::new();
        for c in self.children.iter().filter(|c| !c.exiting) {
            let Some(peer_slot) = c.slot() else { continue };
            match IpcPair::new() {
                Ok(p) => links.push((peer_slot, c.generation, p.into_fds())),
                Err(e) => log!(Crit, "socketpair() failed for a worker link ({e})"),
            }
        }
        // SAFETY: the master is single-threaded, so the child may run arbitrary code.
        match unsafe { fork() } {
            Err(e) => log!(Crit, "fork() failed while spawning a worker ({e})"),
            Ok(ForkResult::Child) => {
                for c in self.children.drain(..) {
                    c.tx.close_inherited();
                }
                let peers = links
                    .into_iter()
                    .map(|(slot, generation, (_, mine))| Peer {
                        slot,
                        generation,
                        fd: mine,
                    })
                    .collect();
                let me = worker::Place {
                    slot,
                    index,
                    generation: self.generation,
                };
                worker::run(&self.cycle, me, pair.child(), peers)
            }
            Ok(ForkResult::Parent { child }) => {
                log!(Notice, "start worker process {child}");
                for (peer_slot, _, (theirs, _)) in links {
                    let cmd = Command::Peer {
                        slot: slot as u16,
                        generation: self.generation,
                    };
                    let peer = Kind::Worker { slot: peer_slot };
                    if let Some(c) = self.children.iter_mut().find(|c| c.kind == peer) {
                        if let Err(e) = c.tx.send(cmd, &[std::os::fd::AsRawFd::as_raw_fd(&theirs)])
                        {
                            log!(Crit, "passing a link to worker {} failed ({e})", c.pid);
                        }
                    }
                }
                self.children.push(Child {
                    pid: child,
                    kind: Kind::Worker { slot },
                    index,
                    generation: self.generation,
                    tx: pair.parent(),
                    exiting: false,
                    started: Instant::now(),
                });
            }
        }
    }

    /// Starts each helper of the current cycle that is neither running nor waiting out its
    /// back-off (after WINCH and HUP the helpers still run: none is started twice).
    fn start_helpers(&mut self) {
        let helpers = self.cycle.prepared.helpers();
        self.helper_respawns
            .resize_with(helpers.len(), Respawn::default);
        for (index, h) in helpers.into_iter().enumerate() {
            let kind = Kind::Helper {
                index,
                name: h.name(),
            };
            let running = self
                .children
                .iter()
                .any(|c| c.kind == kind && c.generation == self.generation && !c.exiting);
            if !running && self.helper_respawns[index].at.is_none() {
                self.spawn_helper(index, h);
            }
        }
    }

    /// Forks the current cycle's helper `index` (nginx's `ngx_spawn_process` of its cache
    /// manager): a command channel, no stats slot, no links, no listening sockets.
    fn spawn_helper(&mut self, index: usize, h: Rc<dyn Helper>) {
        let name = h.name();
        let pair = match channel::pair() {
            Ok(p) => p,
            Err(e) => return log!(Crit, "socketpair() failed while spawning the {name} ({e})"),
        };
        // SAFETY: the master is single-threaded, so the child may run arbitrary code.
        match unsafe { fork() } {
            Err(e) => log!(Crit, "fork() failed while spawning the {name} ({e})"),
            Ok(ForkResult::Child) => {
                for c in self.children.drain(..) {
                    c.tx.close_inherited();
                }
                // The helper accepts nothing; an address removed by a later reload must not
                // stay bound while it runs.
                self.cycle.listening.clear();
                helper::run(&self.cycle, h.as_ref(), self.generation, pair.child())
            }
            Ok(ForkResult::Parent { child }) => {
                log!(Notice, "start {name} process {child}");
                self.children.push(Child {
                    pid: child,
                    kind: Kind::Helper { index, name },
                    index: 0,
                    generation: self.generation,
                    tx: pair.parent(),
                    exiting: false,
                    started: Instant::now(),
                });
            }
        }
    }

    /// Sends `cmd` to every child `to` picks and marks them exiting if it stops them.
    fn tell(&mut self, cmd: Command, to: impl Fn(&Child) -> bool, fds: &[RawFd]) {
        for c in self.children.iter_mut().filter(|c| to(c)) {
            if let Err(e) = c.tx.send(cmd, fds) {
                log!(
                    Crit,
                    "channel to {} {} failed ({e}); signalling it",
                    c.what(),
                    c.pid
                );
                let sig = match cmd {
                    Command::Quit => Some(Signal::SIGQUIT),
                    Command::Terminate => Some(Signal::SIGTERM),
                    Command::Reopen => Some(Signal::SIGUSR1),
                    Command::Peer { .. } => None,
                };
                if let Some(sig) = sig {
                    let _ = kill(c.pid, sig);
                }
            }
            if matches!(cmd, Command::Quit | Command::Terminate) {
                c.exiting = true;
            }
        }
    }

    fn reap(&mut self) {
        loop {
            let (pid, how, code) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    (pid, format!("exited with code {code}"), code)
                }
                Ok(WaitStatus::Signaled(pid, sig, core)) => {
                    let core = if core { " (core dumped)" } else { "" };
                    (pid, format!("exited on signal {}{core}", sig as i32), -1)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            if self.new_binary == Some(pid) {
                self.new_binary_exited(&how);
                continue;
            }
            if let Some(i) = self.children.iter().position(|c| c.pid == pid) {
                let c = self.children.swap_remove(i);
                self.child_exited(c, &how, code);
            }
        }
    }

    /// A reaped child: logged, its slot released, and restarted unless it was asked to stop,
    /// belongs to an older cycle, or (a worker) WINCH stopped the workers.
    fn child_exited(&mut self, c: Child, how: &str, code: i32) {
        let (pid, what) = (c.pid, c.what());
        if let Kind::Worker { slot } = c.kind {
            if let Some(z) = self.cycle.zones.get(stats::ZONE) {
                stats::reap(z, slot);
            }
            self.app.reaped(&self.cycle.zones, slot);
        }
        if c.exiting && code == 0 {
            return log!(Notice, "{what} {pid} {how}");
        }
        log!(Crit, "{what} {pid} {how}");
        if c.exiting || c.generation != self.generation {
            return;
        }
        match c.kind {
            Kind::Helper { index, name } => self.respawn_helper(index, name, c.started.elapsed()),
            Kind::Worker { .. } if self.noaccepting => {}
            Kind::Worker { .. } if code == FATAL => self.worker_failed(pid),
            Kind::Worker { .. } => self.schedule_respawn(c.started.elapsed()),
        }
    }

    /// A worker said it cannot run: it is not restarted, and with no worker left the master
    /// stops its helpers and exits with an error.
    fn worker_failed(&mut self, pid: Pid) {
        log!(
            Crit,
            "worker process {pid} failed fatally: not restarting it"
        );
        if self.children.iter().any(Child::is_worker) || self.respawn_at.is_some() {
            return;
        }
        log!(Crit, "no worker process is left: exiting");
        self.failed = true;
        self.terminating = Some(Instant::now());
        self.terminate();
    }

    /// Restarts a dead worker at once the first time, then with a doubling delay while workers
    /// keep dying young.
    fn schedule_respawn(&mut self, lived: Duration) {
        let delay = backoff(&mut self.failures, lived);
        if delay.is_zero() {
            self.spawn_worker();
            return;
        }
        log!(Notice, "respawning the worker in {} ms", delay.as_millis());
        self.respawn_slots += 1;
        let at = Instant::now() + delay;
        self.respawn_at = Some(self.respawn_at.map_or(at, |t| t.min(at)));
        self.arm_alarm();
    }

    /// The same for the current cycle's helper `index`, with its own count of failures.
    fn respawn_helper(&mut self, index: usize, name: &str, lived: Duration) {
        let Some(r) = self.helper_respawns.get_mut(index) else {
            return;
        };
        let delay = backoff(&mut r.failures, lived);
        if !delay.is_zero() {
            log!(Notice, "respawning the {name} in {} ms", delay.as_millis());
            r.at = Some(Instant::now() + delay);
            return self.arm_alarm();
        }
        if let Some(h) = self.cycle.prepared.helpers().into_iter().nth(index) {
            self.spawn_helper(index, h);
        }
    }

    /// SIGALRM: starts the workers and helpers whose back-off is over.
    fn respawn_due(&mut self) {
        let now = Instant::now();
        if self.respawn_at.is_some_and(|at| at <= now) {
            self.respawn_at = None;
            for _ in 0..std::mem::take(&mut self.respawn_slots) {
                self.spawn_worker();
            }
        }
        let helpers = self.cycle.prepared.helpers();
        for (index, h) in helpers.into_iter().enumerate() {
            let Some(r) = self.helper_respawns.get_mut(index) else {
                break;
            };
            if r.at.is_some_and(|at| at <= now) {
                r.at = None;
                self.spawn_helper(index, h);
            }
        }
        self.arm_alarm();
    }

    /// Sets the alarm for the earliest restart still waiting, if any.
    fn arm_alarm(&self) {
        let helpers = self.helper_respawns.iter().filter_map(|r| r.at);
        if let Some(at) = self.respawn_at.into_iter().chain(helpers).min() {
            set_alarm(at.saturating_duration_since(Instant::now()));
        }
    }

    fn terminate(&mut self) {
        if self.terminating.is_none() {
            log!(Notice, "fast shutdown");
            self.terminating = Some(Instant::now());
        }
        self.tell(Command::Terminate, |_| true, &[]);
        for c in &self.children {
            let _ = kill(c.pid, Signal::SIGTERM);
        }
        set_alarm(Duration::from_millis(500));
    }

    fn quit(&mut self) {
        log!(Notice, "graceful shutdown");
        self.quitting = true;
        self.tell(Command::Quit, |_| true, &[]);
    }

    /// While stopping, the alarm escalates a fast stop to SIGKILL.
    fn on_alarm_while_stopping(&mut self) {
        signals::take(&signals::RELOAD);
        signals::take(&signals::UPGRADE);
        if !signals::take(&signals::ALARM) {
            return;
        }
        if let Some(since) = self.terminating {
            if since.elapsed() >= KILL_AFTER {
                for c in &self.children {
                    log!(Crit, "{} {} still alive: sending SIGKILL", c.what(), c.pid);
                    let _ = kill(c.pid, Signal::SIGKILL);
                }
            }
            set_alarm(Duration::from_millis(500));
        }
    }

    fn reload(&mut self) {
        if self.noaccepting {
            log!(Notice, "starting the workers again");
            self.noaccepting = false;
            self.start_workers();
            self.start_helpers();
            return;
        }
        log!(Notice, "reconfiguring");
        let conf = match Conf::load(
            &self.start.conf_file,
            &self.start.prefix,
            self.app.sections(),
        ) {
            Ok(c) => c,
            Err(e) => return log!(Crit, "{e}; keeping the running configuration"),
        };
        if let Err(e) = check_workers(&conf) {
            return log!(Crit, "{e}; keeping the running configuration");
        }
        let cycle = match Cycle::build(
            conf,
            self.app,
            &self.cycle.listening,
            Some(&self.cycle.zones),
        ) {
            Ok(c) => c,
            Err(e) => return log!(Crit, "{e}; keeping the running configuration"),
        };
        match cycle.error_log.try_clone() {
            Ok(f) => log::install(f, cycle.conf.main.log_level),
            Err(e) => log!(Crit, "dup() failed ({e})"),
        }
        // The old cycle closes here, before the fork: a new worker must not inherit the
        // listening sockets of addresses that were removed (they would never close).
        drop(std::mem::replace(&mut self.cycle, cycle));
        let old_generation = self.generation;
        self.generation += 1;
        self.failures = 0;
        // The old cycle's helpers waiting out a back-off are not restarted: the new ones replace
        // them.
        self.helper_respawns.clear();
        self.start_workers();
        self.start_helpers();
        self.tell(Command::Quit, |c| c.generation == old_generation, &[]);
    }

    fn reopen(&mut self) {
        log!(Notice, "reopening logs");
        for e in self.cycle.reopen() {
            log!(Crit, "{e}");
        }
        if let Ok(f) = self.cycle.error_log.try_clone() {
            log::replace(f);
        }
        let fds = worker::reopen_fds(&self.cycle);
        let generation = self.generation;
        self.tell(Command::Reopen, |c| c.generation == generation, &fds);
    }

    /// USR2: starts the new binary with the listening sockets inherited.
    fn upgrade(&mut self) {
        if self.new_binary.is_some() {
            return log!(Notice, "a new binary is already running: upgrade ignored");
        }
        let old = oldbin(&self.pid_path);
        if let Err(e) = std::fs::rename(&self.pid_path, &old) {
            return log!(
                Crit,
                "rename() \"{}\" failed ({e}): upgrade refused",
                self.pid_path.display()
            );
        }
        match self.exec_new_binary() {
            Ok(pid) => {
                log!(Notice, "started new binary, process {pid}");
                self.new_binary = Some(pid);
                self.pid_path = old;
            }
            Err(e) => {
                log!(
                    Crit,
                    "execve() \"{}\" failed ({e})",
                    self.start.exe.display()
                );
                let _ = std::fs::rename(&old, &self.pid_path);
            }
        }
    }

    fn exec_new_binary(&self) -> std::io::Result<Pid> {
        let value = listen::export(&self.cycle.listening)?;
        let spawned = std::process::Command::new(&self.start.exe)
            .args(self.start.args.iter().skip(1))
            .env(listen::INHERIT_ENV, value)
            .spawn();
        for l in &self.cycle.listening {
            listen::set_cloexec(std::os::fd::AsRawFd::as_raw_fd(&l.socket), true)?;
        }
        Ok(Pid::from_raw(spawned?.id() as i32))
    }

    fn new_binary_exited(&mut self, how: &str) {
        log!(Crit, "new binary process {how}");
        self.new_binary = None;
        let current = self.start_pid_path();
        if self.pid_path != current {
            if let Err(e) = std::fs::rename(&self.pid_path, &current) {
                log!(
                    Crit,
                    "rename() \"{}\" back failed ({e})",
                    self.pid_path.display()
                );
            }
            self.pid_path = current;
        }
        if self.noaccepting {
            self.noaccepting = false;
            self.start_workers();
            self.start_helpers();
        }
    }

    fn start_pid_path(&self) -> PathBuf {
        self.cycle.conf.main.pid.clone()
    }

    /// WINCH: gracefully stops the workers; the master and its helpers stay (binary upgrade).
    fn stop_workers(&mut self) {
        log!(Notice, "gracefully shutting down the workers");
        self.noaccepting = true;
        self.tell(Command::Quit, Child::is_worker, &[]);
    }

    fn exit(&mut self) {
        if read_pid(&self.pid_path) == Some(std::process::id()) {
            let _ = std::fs::remove_file(&self.pid_path);
        }
        log!(Notice, "exit");
    }
}

fn oldbin(pid: &Path) -> PathBuf {
    let mut s = pid.as_os_str().to_owned();
    s.push(".oldbin");
    PathBuf::from(s)
}

/// The wait before restarting a child that died after living `lived`: none the first time,
/// then from 100 ms doubling up to [`MAX_BACKOFF`]; `failures` counts the deaths in a row and
/// starts again once a child lived [`HEALTHY_AFTER`].
fn backoff(failures: &mut u32, lived: Duration) -> Duration {
    if lived >= HEALTHY_AFTER {
        *failures = 0;
    }
    let delay = match *failures {
        0 => Duration::ZERO,
        n => (Duration::from_millis(100) * 2u32.saturating_pow(n - 1)).min(MAX_BACKOFF),
    };
    *failures = failures.saturating_add(1);
    delay
}

fn set_alarm(d: Duration) {
    let d = d.max(Duration::from_millis(1));
    let it = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: d.as_secs() as libc::time_t,
            tv_usec: d.subsec_micros() as libc::suseconds_t,
        },
    };
    // SAFETY: setitimer with valid pointers; the old value is not wanted.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) };
}

#[cfg(test)]
mod tests;
