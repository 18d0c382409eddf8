//! The MQTT hooks with real sockets: an authority that answers a CONNECT later, an ingest hook
//! that holds acknowledgements until the test releases them, and one that runs out of room.
//!
//! The hooks are installed the way the wiring installs them (`mqtt::service::Hooks`), in worker
//! event loops that run in threads of this process (the binary has no hook to hold
//! acknowledgements yet: the ingest module brings the first). Each loop is the real
//! `core::event::EventLoop` with the real MQTT service; two of them are linked by a socket pair
//! as the master links workers, so a "reload" here is what the binary does: a newer worker
//! joins, the older one drains and moves its clients over the link. The test decides when a
//! hook answers by writing a byte to a socket the hook reads in its loop.

mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bizzy::core::config::Conf;
use bizzy::core::event::{
    Command, Conn, Control, Cx, EventLoop, Listener, LoopFiles, Next, Peer, Posted, Ready,
};
use bizzy::core::process::WorkerCtx;
use bizzy::core::queue::IpcPair;
use bizzy::core::shm::Zones;
use bizzy::core::stats::ConnStats;
use bizzy::mqtt::auth::{Authority, FileAuthority, Login, Op, Verdict, Verdicts};
use bizzy::mqtt::ingest::{Ack, Acks, Ingest, Origin, Outbox};
use bizzy::mqtt::service::{Hooks, MqttPrepared};
use bizzy::mqtt::session::Message;
use common::mqtt::{Client, Connect, Packet, Publish, QUIET, WAIT};
use mio::{Interest, Waker};

/// What the test sends a worker's loop.
enum Cmd {
    /// A link to a newer sibling, as the master passes it over the command channel.
    Peer(Peer),
    /// Graceful stop (QUIT).
    Drain,
}

/// The loop's control: commands from the test, woken through a mio `Waker`.
struct TestControl {
    rx: mpsc::Receiver<Cmd>,
    waker: mpsc::Sender<Arc<Waker>>,
}

impl Control for TestControl {
    fn poll(&mut self, files: &mut LoopFiles<'_>) -> Command {
        let mut out = Command::Continue;
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Cmd::Peer(p) => {
                    let left = files.services[0].peer(p);
                    assert!(left.is_none(), "the MQTT service takes every link");
                }
                Cmd::Drain => out = Command::Drain,
            }
        }
        out
    }

    fn register(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
        let w = Arc::new(Waker::new(registry, bizzy::core::event::CONTROL)?);
        let _ = self.waker.send(w);
        Ok(())
    }
}

/// What the hooks of one worker show the test.
#[derive(Default)]
struct Seen {
    /// PUBLISH packets the ingest hook was handed.
    received: AtomicUsize,
    /// Acknowledgements the test let the hook release.
    released: AtomicUsize,
}

/// One worker loop in a thread.
struct Worker {
    tx: mpsc::Sender<Cmd>,
    waker: Arc<Waker>,
    /// The test's end of the hooks' trigger: a byte releases what they hold.
    trigger: UnixStream,
    seen: Arc<Seen>,
    thread: Option<JoinHandle<()>>,
}

/// How a worker's hooks behave.
#[derive(Clone, Copy)]
struct Plan {
    /// The authority answers every CONNECT later, when triggered.
    slow_login: bool,
    /// The ingest hook holds every QoS 1/2 acknowledgement until triggered.
    hold: bool,
    /// The ingest hook takes at most this many messages before it is triggered.
    room: usize,
}

impl Worker {
    fn start(
        plan: Plan,
        slot: usize,
        generation: u64,
        listener: Option<std::net::TcpListener>,
        peers: Vec<Peer>,
    ) -> Worker {
        let (tx, rx) = mpsc::channel();
        let (wtx, wrx) = mpsc::channel();
        let (trigger, hook_end) = UnixStream::pair().unwrap();
        hook_end.set_nonblocking(true).unwrap();
        let seen = Arc::new(Seen::default());
        let seen2 = Arc::clone(&seen);
        let thread = std::thread::spawn(move || {
            run_worker(
                plan, slot, generation, listener, peers, hook_end, seen2, rx, wtx,
            )
        });
        let waker = wrx.recv_timeout(WAIT).expect("the worker loop started");
        Worker {
            tx,
            waker,
            trigger,
            seen,
            thread: Some(thread),
        }
    }

    fn send(&self, cmd: Cmd) {
        self.tx.send(cmd).unwrap();
        self.waker.wake().unwrap();
    }

    /// Lets the hooks answer what they hold.
    fn release(&mut self) {
        self.trigger.write_all(b"r").unwrap();
    }

    fn received(&self) -> usize {
        self.seen.received.load(Ordering::SeqCst)
    }

    fn released(&self) -> usize {
        self.seen.released.load(Ordering::SeqCst)
    }

    /// Waits for the loop to end after a drain.
    fn join(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                let _ = self.thread.take().map(|t| t.join());
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.tx.send(Cmd::Drain);
            let _ = self.waker.wake();
            self.join(Duration::from_secs(15));
        }
    }
}

#[allow(clippy::too_many_arguments)] // reason: the thread's whole world, moved in at once
fn run_worker(
    plan: Plan,
    slot: usize,
    generation: u64,
    listener: Option<std::net::TcpListener>,
    peers: Vec<Peer>,
    hook_end: UnixStream,
    seen: Arc<Seen>,
    rx: mpsc::Receiver<Cmd>,
    waker: mpsc::Sender<Arc<Waker>>,
) {
    let text = "[main]\nworker_shutdown_timeout = \"10s\"\n[mqtt]\nallow_anonymous = true\n";
    let sections = bizzy::server::sections(&bizzy::modules::all());
    let conf = Conf::parse(text, Path::new("test.toml"), Path::new("/tmp"), &sections).unwrap();
    let zones = Zones::build(
        &[
            (
                bizzy::mqtt::stats::ZONE.to_string(),
                bizzy::mqtt::stats::zone_size(),
            ),
            (
                bizzy::core::stats::ZONE.to_string(),
                bizzy::core::stats::zone_size(),
            ),
        ],
        None,
    )
    .unwrap();
    let posted = Posted::new();
    let ctx = WorkerCtx {
        slot,
        conf: &conf,
        zones: &zones,
        files: &[],
        posted: posted.clone(),
        generation,
        peers: RefCell::new(peers),
    };
    let hooks = Rc::new(TestHooks {
        plan,
        seen,
        trigger: RefCell::new(Some(hook_end)),
        state: Rc::default(),
    });
    let service = MqttPrepared::build(&conf, hooks)
        .unwrap()
        .service(&ctx)
        .unwrap();
    let listeners = listener
        .into_iter()
        .map(|l| {
            l.set_nonblocking(true).unwrap();
            let addr = l.local_addr().unwrap();
            Listener::new(mio::net::TcpListener::from_std(l), addr, 0)
        })
        .collect();
    let zone = zones.get(bizzy::core::stats::ZONE).unwrap().clone();
    let mut el = EventLoop::new(
        listeners,
        vec![Box::new(service)],
        1024,
        ConnStats::new(zone, slot),
        posted,
    )
    .unwrap();
    let mut control = TestControl { rx, waker };
    el.run(&mut control, Duration::from_secs(10)).unwrap();
}

/// What the hooks of one worker hold until triggered.
#[derive(Default)]
struct HookState {
    logins: Vec<u64>,
    /// Tickets of held acknowledgements (0 for a QoS 0 message, which holds room only).
    held: Vec<u64>,
    verdicts: Option<Verdicts>,
    acks: Option<Acks>,
}

struct TestHooks {
    plan: Plan,
    seen: Arc<Seen>,
    trigger: RefCell<Option<UnixStream>>,
    state: Rc<RefCell<HookState>>,
}

impl TestHooks {
    /// The loop reads the trigger socket: each byte answers what the hooks hold.
    fn watch_trigger(&self, posted: &Posted) {
        let Some(sock) = self.trigger.borrow_mut().take() else {
            return;
        };
        let state = Rc::clone(&self.state);
        let seen = Arc::clone(&self.seen);
        posted.adopt(
            Box::new(move |cx: &mut Cx<'_>| {
                let mut sock = mio::net::UnixStream::from_std(sock);
                cx.registry()
                    .register(&mut sock, cx.token(), Interest::READABLE)
                    .ok()?;
                Some(Box::new(Trigger { sock, state, seen }) as Box<dyn Conn>)
            }),
            false,
        );
    }
}

impl Hooks for TestHooks {
    fn authority(
        &self,
        ctx: &WorkerCtx<'_>,
        files: Rc<FileAuthority>,
        verdicts: &Verdicts,
    ) -> Rc<dyn Authority> {
        self.watch_trigger(&ctx.posted);
        self.state.borrow_mut().verdicts = Some(verdicts.clone());
        if !self.plan.slow_login {
            return files;
        }
        Rc::new(SlowAuthority(Rc::clone(&self.state)))
    }

    fn ingest(&self, _ctx: &WorkerCtx<'_>, acks: &Acks, _outbox: &Outbox) -> Box<dyn Ingest> {
        self.state.borrow_mut().acks = Some(acks.clone());
        Box::new(Holding {
            plan: self.plan,
            seen: Arc::clone(&self.seen),
            state: Rc::clone(&self.state),
        })
    }
}

/// Answers every CONNECT later: yes, when triggered.
struct SlowAuthority(Rc<RefCell<HookState>>);

impl Authority for SlowAuthority {
    fn connect(&self, _login: &Login<'_>, ticket: u64) -> Verdict {
        self.0.borrow_mut().logins.push(ticket);
        Verdict::Later
    }

    fn allows(&self, _id: &str, _user: Option<&str>, _op: Op, _topic: &str) -> bool {
        true
    }
}

/// Holds acknowledgements (and room) until triggered.
struct Holding {
    plan: Plan,
    seen: Arc<Seen>,
    state: Rc<RefCell<HookState>>,
}

impl Ingest for Holding {
    fn publish(&mut self, _origin: Origin<'_>, msg: &Message, ticket: u64) -> Ack {
        self.seen.received.fetch_add(1, Ordering::SeqCst);
        let qos0 = msg.qos == bizzy::mqtt::codec::QoS::AtMostOnce;
        let hold = self.plan.hold && !qos0;
        if hold || self.plan.room < usize::MAX {
            self.state
                .borrow_mut()
                .held
                .push(if hold { ticket } else { 0 });
        }
        if hold {
            Ack::Later
        } else {
            Ack::Now
        }
    }

    fn has_room(&self) -> bool {
        self.state.borrow().held.len() < self.plan.room
    }
}

/// The loop's end of the trigger socket.
struct Trigger {
    sock: mio::net::UnixStream,
    state: Rc<RefCell<HookState>>,
    seen: Arc<Seen>,
}

impl Conn for Trigger {
    fn ready(&mut self, _cx: &mut Cx<'_>, _ev: Ready) -> Next {
        let mut b = [0u8; 64];
        loop {
            match self.sock.read(&mut b) {
                Ok(0) => return Next::Close,
                Ok(_) => self.answer(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Next::Keep,
                Err(_) => return Next::Close,
            }
        }
    }

    fn timeout(&mut self, _cx: &mut Cx<'_>) -> Next {
        Next::Keep
    }

    fn drain(&mut self, _cx: &mut Cx<'_>) -> Next {
        Next::Keep
    }
}

impl Trigger {
    fn answer(&mut self) {
        let mut st = self.state.borrow_mut();
        let logins = std::mem::take(&mut st.logins);
        if let Some(v) = &st.verdicts {
            for t in logins {
                v.answer(t, Ok(()));
            }
        }
        let held = std::mem::take(&mut st.held);
        if let Some(acks) = &st.acks {
            for t in held.into_iter().filter(|&t| t != 0) {
                self.seen.released.fetch_add(1, Ordering::SeqCst);
                acks.durable(t);
            }
        }
    }
}

fn listener() -> (std::net::TcpListener, SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

const HOLD: Plan = Plan {
    slow_login: false,
    hold: true,
    room: usize::MAX,
};

/// PUBACKs for `pids`, in any order mixed with nothing else, each counted against what the hook
/// released at the time it arrived.
fn pubacks_within_released(c: &mut Client, w: &Worker, n: usize) -> Vec<u16> {
    let mut got = Vec::new();
    while got.len() < n {
        match c.recv(WAIT) {
            Some(Packet::Puback(pid)) => {
                got.push(pid);
                assert!(
                    got.len() <= w.released(),
                    "{} PUBACKs for {} released tickets",
                    got.len(),
                    w.released()
                );
            }
            other => panic!("{other:?} while waiting for PUBACK {}", got.len() + 1),
        }
    }
    got
}

fn publish(c: &mut Client, topic: &str, payload: &[u8], qos: u8) -> u16 {
    let pid = c.next_pid();
    c.send(&Publish::new(topic, payload, qos).pid(pid).encode());
    pid
}

#[test]
fn a_login_answered_later_parks_the_connection_until_the_answer() {
    let (l, addr) = listener();
    let plan = Plan {
        slow_login: true,
        ..HOLD
    };
    let mut w = Worker::start(plan, 0, 0, Some(l), Vec::new());
    let mut c = Client::open(addr);
    c.send(&Connect::new("slow").encode());
    let pid = publish(&mut c, "a/b", b"early", 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        c.recv(QUIET),
        None,
        "no CONNACK before the authority answers"
    );
    assert_eq!(
        w.received(),
        0,
        "the PUBLISH behind the CONNECT waits for it"
    );
    w.release();
    assert!(matches!(
        c.recv(WAIT),
        Some(Packet::Connack { code: 0, .. })
    ));
    common::eventually(WAIT, || w.received() == 1);
    w.release();
    assert_eq!(c.recv(WAIT), Some(Packet::Puback(pid)));
}

#[test]
fn a_login_never_answered_ends_at_the_connect_deadline() {
    let (l, addr) = listener();
    let plan = Plan {
        slow_login: true,
        ..HOLD
    };
    let _w = Worker::start(plan, 0, 0, Some(l), Vec::new());
    let mut c = Client::open(addr);
    c.send(&Connect::new("never").encode());
    let t = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(15)),
        "closed at the CONNECT deadline"
    );
    assert!(t.elapsed() >= Duration::from_secs(9), "{:?}", t.elapsed());
    assert_eq!(c.recv(Duration::ZERO), None, "and no CONNACK was sent");
}

#[test]
fn a_stopping_server_sends_held_acknowledgements_before_it_closes() {
    let (l, addr) = listener();
    let mut w = Worker::start(HOLD, 0, 0, Some(l), Vec::new());
    let mut c = common::mqtt::connect(addr, &Connect::new("sensor")).0;
    let pids: Vec<u16> = (0..3).map(|i| publish(&mut c, "s/1", &[i], 1)).collect();
    assert!(common::eventually(WAIT, || w.received() == 3));
    w.send(Cmd::Drain);
    assert_eq!(c.recv(QUIET), None, "no PUBACK before the hook releases it");
    assert!(!c.is_closed(), "the connection waits for its held PUBACKs");
    publish(&mut c, "s/1", b"after QUIT", 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(w.received(), 3, "nothing is read after QUIT");
    w.release();
    assert_eq!(pubacks_within_released(&mut c, &w, 3), pids);
    assert!(c.closed_within(WAIT), "then the connection closes");
    assert!(w.join(WAIT), "and the worker exits");
}

#[test]
fn a_full_ingest_hook_stops_reading_publishes_until_it_has_room() {
    let (l, addr) = listener();
    let plan = Plan {
        slow_login: false,
        hold: false,
        room: 4,
    };
    let mut w = Worker::start(plan, 0, 0, Some(l), Vec::new());
    let mut c = common::mqtt::connect(addr, &Connect::new("flood")).0;
    for i in 0..20u8 {
        publish(&mut c, "s/1", &[i], 0);
    }
    assert!(common::eventually(WAIT, || w.received() == 4));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(w.received(), 4, "QoS 0 too waits for room");
    let mut rounds = 0;
    while w.received() < 20 && rounds < 10 {
        let before = w.received();
        w.release();
        assert!(common::eventually(WAIT, || w.received() >= before.min(16) + 4));
        rounds += 1;
    }
    assert_eq!(w.received(), 20, "every message arrives once there is room");
    c.send(&common::mqtt::PINGREQ);
    assert_eq!(
        c.recv(WAIT),
        Some(Packet::Pingresp),
        "and the client is served"
    );
}

#[test]
fn a_session_with_held_acknowledgements_moves_only_once_they_are_sent() {
    let (l, addr) = listener();
    let mut old = Worker::start(HOLD, 0, 0, Some(l), Vec::new());
    let mut c = common::mqtt::connect(addr, &Connect::new("sensor").clean(false)).0;
    let pids: Vec<u16> = (0..3).map(|i| publish(&mut c, "s/1", &[i], 1)).collect();
    assert!(common::eventually(WAIT, || old.received() == 3));
    // A reload: a newer worker is linked to the old one, which then drains.
    let (a, b) = IpcPair::new().unwrap().into_fds();
    let new = Worker::start(HOLD, 1, 1, None, vec![peer(0, 0, b)]);
    old.send(Cmd::Peer(peer(1, 1, a)));
    std::thread::sleep(Duration::from_millis(100));
    old.send(Cmd::Drain);
    assert_eq!(c.recv(QUIET), None, "no PUBACK before the hook releases it");
    assert!(
        !old.join(Duration::ZERO),
        "the old worker waits with the session"
    );
    old.release();
    assert_eq!(pubacks_within_released(&mut c, &old, 3), pids);
    assert!(
        old.join(WAIT),
        "the session moved and the old worker exited"
    );
    // The same connection goes on at the new worker, whose hook holds the next PUBACK.
    let pid = publish(&mut c, "s/1", b"moved", 1);
    assert!(common::eventually(WAIT, || new.received() == 1));
    assert_eq!(c.recv(QUIET), None);
    let mut new = new;
    new.release();
    assert_eq!(c.recv(WAIT), Some(Packet::Puback(pid)));
    assert!(!c.is_closed());
}

fn peer(slot: usize, generation: u64, fd: OwnedFd) -> Peer {
    Peer {
        slot,
        generation,
        fd,
    }
}
