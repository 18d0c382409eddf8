//! The worker's event loop: one thread, one mio `Poll`, every connection in a slab.
//!
//! The loop knows no protocol. Each listener belongs to a [`Service`] that turns an accepted
//! socket into a [`Conn`]; the loop then drives the connection by readiness and timeouts:
//! `poll(next timer) -> dispatch -> expire timers -> services' idle work`. A token carries the
//! slab key and a generation, so an event for a slot that was freed and reused is ignored.
//! Listening sockets are added to epoll with `EPOLLEXCLUSIVE` (as nginx does), so one connection
//! wakes one worker and the accept load spreads across workers. A socket of its own (a
//! `reuseport` group's slot) is drained up to `OWN_ACCEPT_BATCH` (64) connections per wake-up; a
//! socket shared by all workers, one at a time. Nothing here ever blocks except the poll itself.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;

use crate::core::stats::ConnStats;
use crate::core::timer::{Clock, Deadline, Fired, Timers};
use crate::log;

/// Readiness reported for a connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
    /// The socket has an error.
    pub closed: bool,
    /// The peer shut its side: reading will end in EOF once the buffered data is read.
    pub read_closed: bool,
    /// Woken through [`Posted`]: something the connection waited for happened.
    pub woken: bool,
}

/// Makes a connection the loop did not accept (a socket passed by a sibling worker, a link to
/// one): called with the new slot's token in `cx`, it registers its source under that token.
pub type Adopt = Box<dyn FnOnce(&mut Cx<'_>) -> Option<Box<dyn Conn>>>;

/// Wake-ups posted for connections by code that is not driven by their socket (an answer from
/// the worker's I/O thread, a message from a sibling worker): the loop calls `ready` with
/// `woken` set. Also carries connections to adopt into the loop.
#[derive(Clone, Default)]
pub struct Posted {
    queue: std::rc::Rc<std::cell::RefCell<Vec<Token>>>,
    adopt: std::rc::Rc<std::cell::RefCell<Vec<(Adopt, bool)>>>,
}

impl std::fmt::Debug for Posted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Posted")
            .field("queue", &self.queue.borrow().len())
            .field("adopt", &self.adopt.borrow().len())
            .finish()
    }
}

impl Posted {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn post(&self, token: Token) {
        self.queue.borrow_mut().push(token);
    }
    /// Asks the loop to take in a connection it did not accept, after the current events.
    /// `client`: it counts among the worker's active connections (a link to a sibling does not).
    pub fn adopt(&self, make: Adopt, client: bool) {
        self.adopt.borrow_mut().push((make, client));
    }
    fn take(&self) -> Vec<Token> {
        std::mem::take(&mut *self.queue.borrow_mut())
    }
    /// The wake-ups posted so far, taken (for tests of code that posts).
    #[cfg(test)]
    pub fn taken(&self) -> Vec<Token> {
        self.take()
    }
    /// Whether wake-ups or connections wait for the loop's next turn.
    fn pending(&self) -> bool {
        !self.queue.borrow().is_empty() || !self.adopt.borrow().is_empty()
    }
    fn take_adopted(&self) -> Vec<(Adopt, bool)> {
        std::mem::take(&mut *self.adopt.borrow_mut())
    }
}

/// A link to a sibling worker, made by the master: the sibling's slot and generation, and this
/// worker's end of their socket pair.
#[derive(Debug)]
pub struct Peer {
    pub slot: usize,
    pub generation: u64,
    pub fd: std::os::fd::OwnedFd,
}

/// What a connection wants after it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Keep,
    Close,
}

/// Why the loop is dropping a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The worker is exiting now (fast stop, or the shutdown timeout expired).
    Abort,
}

/// A connection the loop drives. Implementations read and write until `WouldBlock` (mio is
/// edge-triggered) and keep their own deadline through [`Cx::set_timeout`].
pub trait Conn {
    fn ready(&mut self, cx: &mut Cx<'_>, ev: Ready) -> Next;
    fn timeout(&mut self, cx: &mut Cx<'_>) -> Next;
    /// The worker began a graceful stop: finish what is in flight, then close.
    fn drain(&mut self, cx: &mut Cx<'_>) -> Next;
    /// The connection is being dropped by the loop, not by its own choice.
    fn abort(&mut self, _why: Stop) {}
}

/// A listener's protocol: makes connections and does per-iteration work.
pub trait Service {
    /// A new connection, already registered for read and write readiness under `cx.token()`
    /// unless the service [registers late](Service::registers_late). `listen` is the configured
    /// address of the listener that accepted it.
    fn accept(
        &mut self,
        cx: &mut Cx<'_>,
        stream: TcpStream,
        peer: SocketAddr,
        listen: SocketAddr,
    ) -> Option<Box<dyn Conn>>;
    /// The loop leaves a new connection's socket out of epoll until the connection outlives its
    /// first turn, so that one answered and closed in it costs no `epoll_ctl`. The loop then
    /// registers the socket itself, by the descriptor it accepted, rather than asking the
    /// connection to: no connection can forget it and hang unpolled. So a connection of such a
    /// service keeps that socket open for as long as it lives and leaves its registration to the
    /// loop (mio's debug builds do not know the stream as registered: `reregister` or
    /// `deregister` on it fails there).
    fn registers_late(&self) -> bool {
        false
    }
    /// Called once per loop iteration after all events were handled (flush buffered logs).
    fn idle(&mut self, _now_ms: u64) {}
    /// The worker is about to exit.
    fn stop(&mut self) {}
    /// Log files were reopened (USR1): files in the cycle's order of paths.
    fn reopen(&mut self, _files: &[(std::path::PathBuf, std::fs::File)]) {}
    /// A link to a sibling worker; handed back if this service has no use for it.
    fn peer(&mut self, peer: Peer) -> Option<Peer> {
        Some(peer)
    }
    /// The worker began a graceful stop (after every connection's `drain`).
    fn drain(&mut self, _now_ms: u64) {}
    /// Work is left that must finish before the worker exits (output to a sibling).
    fn busy(&self) -> bool {
        false
    }
}

/// What a connection sees of the loop while it runs.
pub struct Cx<'a> {
    now_ms: u64,
    token: Token,
    deadline: &'a mut Option<u64>,
    registry: &'a Registry,
    draining: bool,
    posted: &'a Posted,
}

impl Cx<'_> {
    /// Runs this connection's `ready` again (with `woken` set) after the other events of this
    /// iteration: for work left undone to let other connections have their turn.
    pub fn yield_now(&self) {
        self.posted.post(self.token);
    }

    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }
    pub fn token(&self) -> Token {
        self.token
    }
    pub fn registry(&self) -> &Registry {
        self.registry
    }
    /// True once the worker is stopping gracefully.
    pub fn draining(&self) -> bool {
        self.draining
    }
    /// Wakes the connection's `timeout` after `d` unless set again first.
    #[inline]
    pub fn set_timeout(&mut self, d: Duration) {
        *self.deadline = Some(self.now_ms + d.as_millis() as u64);
    }
    pub fn clear_timeout(&mut self) {
        *self.deadline = None;
    }
}

struct Slot {
    conn: Box<dyn Conn>,
    gen: u32,
    deadline: Deadline,
    /// Counted among the active connections.
    counted: bool,
}

/// A listening socket and the index of its service.
pub struct Listener {
    pub socket: TcpListener,
    pub addr: SocketAddr,
    pub service: usize,
    /// Connections accepted per wake-up.
    batch: usize,
    registered: bool,
}

impl Listener {
    /// A socket shared by all workers.
    pub fn new(socket: TcpListener, addr: SocketAddr, service: usize) -> Self {
        Listener {
            socket,
            addr,
            service,
            batch: ACCEPT_BATCH,
            registered: false,
        }
    }

    /// `own`: the socket is this worker's slot of a `reuseport` group, not shared by all.
    pub fn owned(mut self, own: bool) -> Self {
        if own {
            self.batch = OWN_ACCEPT_BATCH;
        }
        self
    }
}

/// Connections accepted per wake-up of a socket shared by all workers. One, as nginx's default
/// (`multi_accept off`): the listener is level-triggered and shared with `EPOLLEXCLUSIVE`, so
/// while this worker serves what it took, the next pending connection wakes a sibling that is
/// idle in its poll, and a burst of connections spreads across workers instead of landing on
/// the first awake.
const ACCEPT_BATCH: usize = 1;

/// The same for a socket of this worker's own (`reuseport`): the kernel already chose this
/// worker for what waits in its queue, so taking it all (up to this many, then the other
/// events get their turn) costs no sibling anything and saves an `epoll_wait` per connection.
const OWN_ACCEPT_BATCH: usize = 64;

/// Tokens at the top of the range are the loop's own sources.
const LISTENER_BASE: usize = usize::MAX - 4096;
/// The token of the control channel from the master.
pub const CONTROL: Token = Token(usize::MAX - 1);

/// What the worker's owner asks of the loop between iterations.
pub enum Command {
    Continue,
    /// Stop accepting and drain connections (QUIT).
    Drain,
    /// Exit now (TERM).
    Exit,
}

/// The loop's owner: reads its control channel and signal flags.
pub trait Control {
    /// The control source was readable, or a signal interrupted the poll.
    fn poll(&mut self, loop_: &mut LoopFiles<'_>) -> Command;
    /// Registers the control source under [`CONTROL`], if there is one.
    fn register(&mut self, registry: &Registry) -> io::Result<()>;
}

/// The services, for a control command that reopens log files.
pub struct LoopFiles<'a> {
    pub services: &'a mut [Box<dyn Service>],
}

pub struct EventLoop {
    poll: Poll,
    slots: Slab<Slot>,
    next_gen: u32,
    timers: Timers,
    clock: Clock,
    listeners: Vec<Listener>,
    services: Vec<Box<dyn Service>>,
    max_conns: usize,
    stats: ConnStats,
    accept_paused_until: Option<u64>,
    draining: bool,
    posted: Posted,
}

impl EventLoop {
    pub fn new(
        listeners: Vec<Listener>,
        services: Vec<Box<dyn Service>>,
        max_conns: usize,
        stats: ConnStats,
        posted: Posted,
    ) -> io::Result<EventLoop> {
        Ok(EventLoop {
            poll: Poll::new()?,
            slots: Slab::with_capacity(max_conns.min(4096)),
            next_gen: 1,
            timers: Timers::new(),
            clock: Clock::new(),
            listeners,
            services,
            max_conns,
            stats,
            accept_paused_until: None,
            draining: false,
            posted,
        })
    }

    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// Runs until the connections are gone after a drain, the drain deadline passes, or an
    /// exit command arrives.
    pub fn run(&mut self, control: &mut dyn Control, shutdown_timeout: Duration) -> io::Result<()> {
        control.register(self.poll.registry())?;
        self.set_accepting(true);
        let mut events = Events::with_capacity(1024);
        let mut drain_deadline: Option<u64> = None;
        self.clock.update();
        loop {
            self.run_adopted();
            let timeout = self.poll_timeout(drain_deadline);
            let interrupted = match self.poll.poll(&mut events, timeout) {
                Ok(()) => false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
                Err(e) => return Err(e),
            };
            let now = self.clock.update();
            let mut control_ready = interrupted;
            for ev in events.iter() {
                match ev.token() {
                    CONTROL => control_ready = true,
                    Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE),
                    token => self.dispatch(token, ev),
                }
            }
            self.run_posted();
            self.expire(now);
            self.run_posted();
            self.resume_accept(now);
            for s in &mut self.services {
                s.idle(now);
            }
            if control_ready {
                let mut files = LoopFiles {
                    services: &mut self.services,
                };
                match control.poll(&mut files) {
                    Command::Continue => {}
                    Command::Drain if !self.draining => {
                        drain_deadline = Some(now + shutdown_timeout.as_millis() as u64);
                        self.begin_drain();
                    }
                    Command::Drain => {}
                    Command::Exit => break,
                }
            }
            if self.draining {
                self.run_posted();
                let clients = self.slots.iter().filter(|(_, s)| s.counted).count();
                if clients == 0 && !self.services.iter().any(|s| s.busy()) {
                    break;
                }
                if drain_deadline.is_some_and(|d| now >= d) {
                    log!(
                        Notice,
                        "shutdown timeout: closing {} connection(s)",
                        self.slots.len()
                    );
                    break;
                }
            }
        }
        self.abort_all();
        for s in &mut self.services {
            s.idle(self.clock.now_ms());
            s.stop();
        }
        Ok(())
    }

    fn poll_timeout(&self, drain_deadline: Option<u64>) -> Option<Duration> {
        // Wake-ups posted after the last run of the queue (by a service's idle work, such as a
        // hook releasing held acknowledgements) must not wait for the next event.
        if self.posted.pending() {
            return Some(Duration::ZERO);
        }
        let now = self.clock.now_ms();
        let next = [self.timers.next(), drain_deadline, self.accept_paused_until]
            .into_iter()
            .flatten()
            .min()?;
        Some(Duration::from_millis(next.saturating_sub(now)))
    }

    fn dispatch(&mut self, token: Token, ev: &mio::event::Event) {
        let ready = Ready {
            readable: ev.is_readable() || ev.is_read_closed(),
            writable: ev.is_writable(),
            closed: ev.is_error(),
            read_closed: ev.is_read_closed(),
            woken: false,
        };
        self.with_conn(token, |c, cx| c.ready(cx, ready));
    }

    /// Runs `f` on the connection of `token` if it is still live, then applies its answer.
    fn with_conn(&mut self, token: Token, f: impl FnOnce(&mut dyn Conn, &mut Cx<'_>) -> Next) {
        let (key, gen) = split(token);
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.gen != gen {
            return;
        }
        let mut cx = Cx {
            now_ms: self.clock.now_ms(),
            token,
            deadline: &mut slot.deadline.at,
            registry: self.poll.registry(),
            draining: self.draining,
            posted: &self.posted,
        };
        let next = f(slot.conn.as_mut(), &mut cx);
        self.after(key, gen, next);
    }

    fn run_posted(&mut self) {
        self.run_adopted();
        for _ in 0..16 {
            let tokens = self.posted.take();
            if tokens.is_empty() {
                return;
            }
            for token in tokens {
                self.wake(token);
            }
        }
    }

    /// Takes in the connections handed over since the last turn, each in a new slot.
    fn run_adopted(&mut self) {
        for (make, client) in self.posted.take_adopted() {
            if client {
                self.stats.adopted();
            }
            self.open(client, |_, cx| make(cx));
        }
    }

    /// Makes a connection in the next free slot and gives it its first turn: the one path of
    /// accepted and adopted connections. `make` gets the services and the connection's view of
    /// the loop under its new token. `counted`: it was counted among the active connections
    /// already, and is uncounted if `make` makes none. The token, if it made one.
    fn open(
        &mut self,
        counted: bool,
        make: impl FnOnce(&mut [Box<dyn Service>], &mut Cx<'_>) -> Option<Box<dyn Conn>>,
    ) -> Option<Token> {
        let gen = self.next_gen;
        self.next_gen = (self.next_gen.wrapping_add(1) & 0x7fff_ffff).max(1);
        let slot = self.slots.vacant_entry();
        let token = join(slot.key(), gen);
        let mut deadline = Deadline::default();
        let mut cx = Cx {
            now_ms: self.clock.now_ms(),
            token,
            deadline: &mut deadline.at,
            registry: self.poll.registry(),
            draining: self.draining,
            posted: &self.posted,
        };
        let Some(conn) = make(&mut self.services, &mut cx) else {
            if counted {
                self.stats.closed();
            }
            return None;
        };
        slot.insert(Slot {
            conn,
            gen,
            deadline,
            counted,
        });
        self.first_turn(token);
        Some(token)
    }

    /// A new connection's first turn, at once: the client usually sent its first bytes with the
    /// handshake's last ACK, so read now rather than after another trip through epoll (nginx
    /// does so with `deferred`). The deadline is armed after this turn, so a connection that is
    /// answered and closed at once leaves no entry in the timer heap.
    fn first_turn(&mut self, token: Token) {
        let first = Ready {
            readable: true,
            writable: true,
            ..Ready::default()
        };
        self.with_conn(token, |c, cx| c.ready(cx, first));
    }

    fn wake(&mut self, token: Token) {
        let ready = Ready {
            woken: true,
            ..Ready::default()
        };
        self.with_conn(token, |c, cx| c.ready(cx, ready));
    }

    fn after(&mut self, key: usize, gen: u32, next: Next) {
        match next {
            Next::Keep => {
                let slot = &mut self.slots[key];
                self.timers.sync(&mut slot.deadline, key, gen);
            }
            Next::Close => self.remove(key),
        }
    }

    fn remove(&mut self, key: usize) {
        if self.slots.remove(key).counted {
            self.stats.closed();
        }
    }

    fn expire(&mut self, now: u64) {
        while let Some((key, gen, t)) = self.timers.pop_due(now) {
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            if slot.gen != gen
                || self.timers.settle(&mut slot.deadline, key, gen, t, now) != Fired::Expired
            {
                continue;
            }
            self.with_conn(join(key, gen), |c, cx| c.timeout(cx));
        }
    }

    fn accept(&mut self, index: usize) {
        for _ in 0..self.listeners[index].batch {
            if self.slots.len() >= self.max_conns {
                log!(Warn, "{} worker_connections are not enough", self.max_conns);
                self.set_accepting(false);
                return;
            }
            let l = &self.listeners[index];
            match l.socket.accept() {
                Ok((stream, peer)) => self.start(stream, peer, l.service, l.addr),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.accept_failed(e),
            }
        }
    }

    /// Makes a connection of an accepted socket and gives it its first turn; registers it with
    /// epoll before (or, for a service that registers late, after, if it stays).
    fn start(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        service: usize,
        listen: SocketAddr,
    ) {
        self.stats.accepted();
        let late = self.services[service].registers_late();
        let fd = stream.as_raw_fd();
        let opened = self.open(true, |services, cx| {
            if !late {
                register(cx.registry(), &mut stream, cx.token(), peer).ok()?;
            }
            services[service].accept(cx, stream, peer, listen)
        });
        let Some(token) = opened else {
            return;
        };
        self.stats.handled();
        if late {
            self.register_late(token, fd, peer);
        }
    }

    /// Puts a connection that outlived its first turn into epoll, by the descriptor of the socket
    /// it was accepted on, which it keeps open as long as it lives (see
    /// [`Service::registers_late`]).
    fn register_late(&mut self, token: Token, fd: RawFd, peer: SocketAddr) {
        let (key, gen) = split(token);
        let live = self.slots.get(key).is_some_and(|s| s.gen == gen);
        if live && register(self.poll.registry(), &mut SourceFd(&fd), token, peer).is_err() {
            self.remove(key);
        }
    }

    /// EMFILE, ENFILE, ENOBUFS: stop accepting for a moment rather than spin (nginx: 500ms).
    fn accept_failed(&mut self, e: io::Error) {
        log!(Crit, "accept() failed ({e})");
        self.set_accepting(false);
        self.accept_paused_until = Some(self.clock.now_ms() + 500);
    }

    fn resume_accept(&mut self, now: u64) {
        if self.draining {
            return;
        }
        let paused = self.accept_paused_until.is_some_and(|t| now < t);
        if !paused && self.slots.len() < self.max_conns * 15 / 16 {
            self.accept_paused_until = None;
            self.set_accepting(true);
        }
    }

    fn set_accepting(&mut self, on: bool) {
        let epfd = self.poll.as_raw_fd();
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if l.registered == on {
                continue;
            }
            let fd = l.socket.as_raw_fd();
            let res = if on {
                epoll_add_exclusive(epfd, fd, (LISTENER_BASE + i) as u64)
            } else {
                epoll_del(epfd, fd)
            };
            match res {
                Ok(()) => l.registered = on,
                Err(e) => log!(Crit, "epoll_ctl() on a listening socket failed ({e})"),
            }
        }
    }

    fn begin_drain(&mut self) {
        // Links to siblings that arrived with the stop command are needed to move clients.
        self.run_adopted();
        self.draining = true;
        self.set_accepting(false);
        log!(
            Notice,
            "gracefully shutting down, {} connection(s) open",
            self.slots.len()
        );
        let tokens: Vec<Token> = self.slots.iter().map(|(k, s)| join(k, s.gen)).collect();
        for token in tokens {
            self.with_conn(token, |c, cx| c.drain(cx));
        }
        let now = self.clock.now_ms();
        for s in &mut self.services {
            s.drain(now);
        }
    }

    fn abort_all(&mut self) {
        for mut slot in self.slots.drain() {
            slot.conn.abort(Stop::Abort);
            if slot.counted {
                self.stats.closed();
            }
        }
    }
}

#[inline]
fn join(key: usize, gen: u32) -> Token {
    Token(((gen as usize) << 32) | key)
}

#[inline]
fn split(token: Token) -> (usize, u32) {
    (token.0 & 0xffff_ffff, (token.0 >> 32) as u32)
}

/// Adds a connection's socket to epoll for read and write readiness. Edge-triggered: readiness
/// that came before (during a first turn) is reported at once.
fn register(
    registry: &Registry,
    socket: &mut impl Source,
    token: Token,
    peer: SocketAddr,
) -> io::Result<()> {
    let interest = Interest::READABLE | Interest::WRITABLE;
    registry
        .register(socket, token, interest)
        .inspect_err(|e| log!(Error, "epoll_ctl(ADD) for {peer} failed ({e})"))
}

fn epoll_add_exclusive(epfd: RawFd, fd: RawFd, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32,
        u64: data,
    };
    // SAFETY: both descriptors are open and owned by this loop; `ev` outlives the call.
    if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn epoll_del(epfd: RawFd, fd: RawFd) -> io::Result<()> {
    // SAFETY: as above; the event argument may be null for EPOLL_CTL_DEL.
    if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip() {
        let t = join(12345, 0xdead_beef);
        assert_eq!(split(t), (12345, 0xdead_beef));
        assert!(t.0 < LISTENER_BASE);
    }
}
