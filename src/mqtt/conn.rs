//! One MQTT client connection in a worker's event loop: bytes in, packets to the broker, the
//! session's output back out, and the connection's clocks (the CONNECT deadline, keep-alive,
//! and the check for a client that stopped reading).
//!
//! Owns the socket, the read buffer and the decoder. A CONNECT whose client belongs to a sibling
//! worker (see [`crate::mqtt::mesh::Mesh::owner`]) is not served here: the socket and the bytes
//! read so far go to that worker (`Frame::Handed`). Never blocks.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use mio::net::TcpStream;

use crate::core::event::{Conn, Cx, Next, Ready};
use crate::log;
use crate::mqtt::broker::{Admission, Broker, Close, Connected, Hold, SessionRef};
use crate::mqtt::codec::{self, Connack, ConnackCode, Connect, Decode, Decoder, Packet};
use crate::mqtt::mesh::Frame;

/// Time a new connection has to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read in one turn before other connections get theirs.
const READ_BUDGET: usize = 256 * 1024;
const READ_CHUNK: usize = 4096;

enum State {
    /// Waiting for CONNECT. `handed`: a sibling passed this connection here, so it is served
    /// here whatever the owner map says now.
    Connect { handed: bool },
    /// The authority answers the CONNECT later (ticket `ticket`): nothing else is read until
    /// it has, and the CONNECT deadline still runs.
    Authorizing { connect: Box<Connect>, ticket: u64 },
    Live {
        session: SessionRef,
        /// Silence allowed, ms (1.5 x keep-alive, [MQTT-3.1.2-24]); 0: none.
        idle_ms: u64,
    },
    /// Refused or failed: write what is left (a CONNACK) and close.
    Closing,
}

pub struct MqttConn {
    broker: Rc<RefCell<Broker>>,
    stream: TcpStream,
    peer: SocketAddr,
    buf: BytesMut,
    decoder: Decoder,
    state: State,
    /// Output of a connection without a session (a refusing CONNACK).
    out: Vec<u8>,
    last_in_ms: u64,
    /// Since when output has been waiting for the socket.
    blocked_since: Option<u64>,
    /// A PUBLISH waits in `buf` for the ingest hook to have room; nothing more is read.
    ingest_blocked: bool,
    /// The server is stopping: the connection closes once the acknowledgements the ingest hook
    /// holds for it are sent, and reads nothing meanwhile.
    quitting: bool,
    /// The last read returned less than it asked for and no readiness came since: the socket
    /// is empty until its next edge (mio is edge-triggered), so a read now would only return
    /// EAGAIN (nginx's `rev->ready = 0` after a short `recv`). Saves a syscall per message
    /// for a client that sends one packet at a time.
    drained: bool,
    /// The peer shut its side (or the socket failed): no later edge will announce the end of
    /// the stream, so reading goes on to it whatever turn reads, even one the loop woke after
    /// the read budget ran out.
    peer_shut: bool,
}

thread_local! {
    /// The worker's read buffer, lent to the connection that reads: thousands of sensors that
    /// send a packet now and then hold no heap buffer between packets, and reading one
    /// allocates nothing. A connection left with part of a packet keeps the buffer that holds
    /// it; the next reader gets a fresh one.
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

impl MqttConn {
    pub fn new(
        broker: Rc<RefCell<Broker>>,
        stream: TcpStream,
        peer: SocketAddr,
        max_packet_size: usize,
        now_ms: u64,
    ) -> MqttConn {
        MqttConn {
            broker,
            stream,
            peer,
            buf: BytesMut::new(),
            decoder: Decoder { max_packet_size },
            state: State::Connect { handed: false },
            out: Vec::new(),
            last_in_ms: now_ms,
            blocked_since: None,
            ingest_blocked: false,
            quitting: false,
            drained: false,
            peer_shut: false,
        }
    }

    /// A connection a sibling handed over before CONNECT: `read` holds the bytes it read.
    pub fn handed(mut self, read: &[u8]) -> MqttConn {
        self.buf.extend_from_slice(read);
        self.state = State::Connect { handed: true };
        self
    }

    /// A connection a stopping sibling passed on before CONNECT: served wherever its client
    /// belongs, like one accepted here.
    pub fn with_read(mut self, read: &[u8]) -> MqttConn {
        self.buf.extend_from_slice(read);
        self
    }

    /// A live connection a sibling moved here with its session.
    pub fn live(mut self, session: SessionRef, keep_alive: u16, read: &[u8]) -> MqttConn {
        self.buf.extend_from_slice(read);
        self.state = State::Live {
            session,
            idle_ms: u64::from(keep_alive) * 1500,
        };
        self
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Reads what the socket has, up to the turn's budget. `Ok(false)`: end of stream. A short
    /// read ends it: the socket is empty (see `drained`), unless the peer shut its side (see
    /// `peer_shut`).
    fn fill(&mut self, cx: &Cx<'_>) -> io::Result<bool> {
        let mut total = 0;
        loop {
            if self.buf.capacity() - self.buf.len() < READ_CHUNK {
                self.buf.reserve(READ_CHUNK);
            }
            let spare = self.buf.spare_capacity_mut();
            // SAFETY: `read` only writes into the slice; MaybeUninit<u8> and u8 share a layout,
            // and only the `n` bytes read are marked initialised below.
            let dst = unsafe { &mut *(spare as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
            let want = dst.len();
            match self.stream.read(dst) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    // SAFETY: `read` initialised `n` bytes past the old length.
                    unsafe { self.buf.set_len(self.buf.len() + n) };
                    total += n;
                    self.last_in_ms = cx.now_ms();
                    if total >= READ_BUDGET {
                        cx.yield_now();
                        return Ok(true);
                    }
                    if n < want && !self.peer_shut {
                        self.drained = true;
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained = true;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the session's output (or the connection's own). `Err`: the socket failed.
    fn flush(&mut self, now_ms: u64) -> io::Result<()> {
        let mut b = self.broker.borrow_mut();
        let out = match &self.state {
            State::Live { session, .. } => match b.session_mut(*session) {
                Some(s) => {
                    s.woken = false;
                    &mut s.out
                }
                None => return Ok(()),
            },
            _ => &mut self.out,
        };
        let mut done = 0;
        while done < out.len() {
            match self.stream.write(&out[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if done == out.len() {
            if out.capacity() > 64 * 1024 {
                *out = Vec::new();
            } else {
                out.clear();
            }
            self.blocked_since = None;
        } else {
            out.drain(..done);
            if done > 0 || self.blocked_since.is_none() {
                self.blocked_since = Some(now_ms);
            }
        }
        Ok(())
    }

    fn pending_out(&self) -> bool {
        let b = self.broker.borrow();
        match &self.state {
            State::Live { session, .. } => b.session(*session).is_some_and(|s| !s.out.is_empty()),
            _ => !self.out.is_empty(),
        }
    }

    /// Decodes and acts on every whole packet in the buffer.
    fn process(&mut self, cx: &mut Cx<'_>) -> Next {
        loop {
            if self.publish_waits(cx) {
                self.ingest_blocked = true;
                return Next::Keep;
            }
            let packet = match self.decoder.decode(&mut self.buf) {
                Ok(Some(p)) => p,
                Ok(None) => return Next::Keep,
                Err(e) => return self.malformed(cx, e),
            };
            let next = match self.state {
                State::Connect { handed } => self.on_connect(cx, packet, handed),
                State::Live { session, .. } => {
                    let r = self
                        .broker
                        .borrow_mut()
                        .packet(session, packet, cx.now_ms());
                    match r {
                        Ok(()) => Next::Keep,
                        Err(Close::Disconnect) => self.end(cx, false),
                        Err(Close::Violation(why)) => {
                            log!(Info, "mqtt client {}: {why}: closing", self.peer);
                            self.end(cx, true)
                        }
                    }
                }
                State::Authorizing { .. } | State::Closing => return Next::Keep,
            };
            if next == Next::Close {
                return next;
            }
            if !matches!(self.state, State::Live { .. }) {
                return Next::Keep;
            }
        }
    }

    /// Whether the next packet is a PUBLISH the ingest hook has no room for (the hook wakes
    /// the connection when it has).
    fn publish_waits(&mut self, cx: &Cx<'_>) -> bool {
        matches!(self.state, State::Live { .. })
            && self.buf.first().is_some_and(|b| b >> 4 == 3)
            && !self.broker.borrow_mut().ingest_room(cx.token())
    }

    fn on_connect(&mut self, cx: &mut Cx<'_>, p: Packet, handed: bool) -> Next {
        let Packet::Connect(mut c) = p else {
            // [MQTT-3.1.0-1]: the first packet must be CONNECT.
            log!(
                Info,
                "mqtt client {}: first packet is not CONNECT",
                self.peer
            );
            return Next::Close;
        };
        if !handed && !c.client_id.is_empty() {
            let owner = self.broker.borrow().owner(&c.client_id);
            if let Some(link) = owner {
                return self.hand_over(cx, link, c);
            }
        }
        let token = cx.token();
        let res = self.broker.borrow_mut().connect(&mut c, token, cx.now_ms());
        match res {
            Admission::Accepted(done) => self.go_live(done),
            Admission::Refused(code) => self.refuse(code),
            Admission::Waiting(ticket) => {
                self.state = State::Authorizing {
                    connect: Box::new(c),
                    ticket,
                };
            }
        }
        self.arm(cx);
        Next::Keep
    }

    fn go_live(&mut self, done: Connected) {
        self.state = State::Live {
            session: done.session,
            idle_ms: u64::from(done.keep_alive) * 1500,
        };
    }

    /// A parked CONNECT: the authority's answer, if it came. `None`: go on reading.
    fn authorized(&mut self, cx: &mut Cx<'_>) -> Option<Next> {
        let State::Authorizing { ticket, .. } = self.state else {
            return None;
        };
        let answer = self.broker.borrow_mut().login_answer(ticket);
        let State::Authorizing { mut connect, .. } =
            std::mem::replace(&mut self.state, State::Closing)
        else {
            return None;
        };
        match answer {
            None => {
                self.state = State::Authorizing { connect, ticket };
                return Some(self.write_only(cx));
            }
            Some(Ok(())) => {
                let done = self
                    .broker
                    .borrow_mut()
                    .admit(&mut connect, cx.token(), cx.now_ms());
                self.go_live(done);
            }
            Some(Err(r)) => {
                let code = self.broker.borrow().refused(r);
                self.refuse(code);
            }
        }
        None
    }

    /// Answers CONNACK with a refusal, then closes once it is written ([MQTT-3.2.2-5]).
    fn refuse(&mut self, code: ConnackCode) {
        log!(
            Info,
            "mqtt client {}: CONNECT refused ({code:?})",
            self.peer
        );
        let connack = Packet::Connack(Connack {
            session_present: false,
            code,
        });
        if codec::encode(&connack, &mut self.out).is_err() {
            self.out.clear();
        }
        self.state = State::Closing;
    }

    /// Passes the socket, with the CONNECT and whatever followed it, to the sibling `link`.
    fn hand_over(&mut self, cx: &mut Cx<'_>, link: usize, c: codec::Connect) -> Next {
        let mut read = Vec::with_capacity(64 + self.buf.len());
        if codec::encode(&Packet::Connect(c), &mut read).is_err() {
            return Next::Close;
        }
        read.extend_from_slice(&self.buf);
        let Some(fd) = self.detach(cx) else {
            return Next::Close;
        };
        let frame = Frame::Handed { read };
        self.broker.borrow_mut().hand_over(link, &frame, fd);
        Next::Close
    }

    /// Passes a socket that has not sent its CONNECT yet to sibling `link`, which applies the
    /// owner map itself.
    fn hand_raw(&mut self, cx: &mut Cx<'_>, link: usize) -> Next {
        let read = self.buf.to_vec();
        let Some(fd) = self.detach(cx) else {
            return Next::Close;
        };
        let frame = Frame::Raw { read };
        self.broker.borrow_mut().hand_over(link, &frame, fd);
        Next::Close
    }

    /// Takes the socket out of this worker's poll, and a descriptor of it to send.
    fn detach(&mut self, cx: &mut Cx<'_>) -> Option<OwnedFd> {
        if let Err(e) = cx.registry().deregister(&mut self.stream) {
            log!(Error, "epoll_ctl(DEL) for {} failed ({e})", self.peer);
            return None;
        }
        // SAFETY: `dup` of an open socket this connection owns; the copy is owned by the
        // OwnedFd and closed after it was sent.
        let fd = unsafe { libc::dup(self.stream.as_raw_fd()) };
        if fd < 0 {
            log!(Error, "dup() failed ({})", io::Error::last_os_error());
            return None;
        }
        // SAFETY: `fd` was just returned by dup and is owned by nothing else.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Moves the live session and its socket to sibling `link` (a stopping worker, or a
    /// sibling that now owns the client).
    fn move_live(&mut self, cx: &mut Cx<'_>, link: usize) -> Next {
        let State::Live { session, idle_ms } = self.state else {
            return Next::Close;
        };
        let Some(fd) = self.detach(cx) else {
            return self.end(cx, false);
        };
        let keep_alive = (idle_ms / 1500) as u16;
        self.broker
            .borrow_mut()
            .move_live(session, link, keep_alive, &self.buf, fd, cx.now_ms());
        Next::Close
    }

    /// The connection ends; `will`: abnormally, so the will is published.
    fn end(&mut self, cx: &mut Cx<'_>, will: bool) -> Next {
        if let State::Live { session, .. } = self.state {
            let _ = self.flush(cx.now_ms());
            self.broker
                .borrow_mut()
                .disconnected(session, cx.token(), will, cx.now_ms());
        }
        Next::Close
    }

    fn malformed(&mut self, cx: &mut Cx<'_>, e: codec::CodecError) -> Next {
        log!(
            Info,
            "mqtt client {}: malformed packet: {e}: closing",
            self.peer
        );
        match self.state {
            State::Connect { .. } => match e.connack_code() {
                Some(code) => {
                    self.refuse(code);
                    Next::Keep
                }
                None => Next::Close,
            },
            _ => self.end(cx, true),
        }
    }

    /// Sets the connection's one deadline: CONNECT, keep-alive or the stall check.
    fn arm(&mut self, cx: &mut Cx<'_>) {
        let now = cx.now_ms();
        let deadline = match self.state {
            State::Connect { .. } | State::Authorizing { .. } | State::Closing => {
                self.last_in_ms + CONNECT_TIMEOUT.as_millis() as u64
            }
            State::Live { session, idle_ms } => {
                let b = self.broker.borrow();
                let stall = b.limits().stall_ms;
                let mut at = u64::MAX;
                if idle_ms > 0 {
                    at = self.last_in_ms + idle_ms;
                }
                if let Some(t) = self.blocked_since {
                    at = at.min(t + stall);
                }
                if let Some(t) = b.session(session).and_then(|s| s.oldest_inflight_ms()) {
                    at = at.min(t + stall);
                }
                if at == u64::MAX {
                    cx.clear_timeout();
                    return;
                }
                at
            }
        };
        cx.set_timeout(Duration::from_millis(deadline.saturating_sub(now)));
    }

    /// Writes what waits and reads nothing: the client's bytes wait in the socket.
    fn write_only(&mut self, cx: &mut Cx<'_>) -> Next {
        if let Err(e) = self.flush(cx.now_ms()) {
            log!(Info, "mqtt client {}: write failed ({e})", self.peer);
            return self.end(cx, true);
        }
        Next::Keep
    }

    /// What keeps a live connection from reading this turn: a newer connection of its client,
    /// a move to another worker or the end of the server (each once the acknowledgements the
    /// ingest hook holds are sent), or a fence after a move. `None`: it reads.
    fn held_back(&mut self, cx: &mut Cx<'_>) -> Option<Next> {
        let State::Live { session, .. } = self.state else {
            return None;
        };
        let hold = self
            .broker
            .borrow_mut()
            .hold(session, cx.token(), self.quitting);
        match hold {
            Hold::Reads => None,
            Hold::TakenOver => Some(Next::Close),
            Hold::Acks | Hold::Fenced => Some(self.write_only(cx)),
            Hold::Move(link) => Some(self.move_live(cx, link)),
            Hold::Quit => {
                let _ = self.flush(cx.now_ms());
                Some(self.end(cx, false))
            }
        }
    }

    /// Reads and acts on what the client sent; `Some` ends the turn with that answer.
    fn read_and_process(&mut self, cx: &mut Cx<'_>) -> Option<Next> {
        if self.ingest_blocked {
            // A PUBLISH waited for the ingest hook: try it again before reading more.
            self.ingest_blocked = false;
            if self.process(cx) == Next::Close {
                return Some(Next::Close);
            }
            if self.ingest_blocked {
                // The client is there, only the hook is not: no keep-alive runs out for it.
                self.last_in_ms = cx.now_ms();
                return None;
            }
        }
        if self.drained {
            return self.process_lent(cx);
        }
        if self.buf.is_empty() {
            SCRATCH.with(|s| std::mem::swap(&mut self.buf, &mut s.borrow_mut()));
        }
        match self.fill(cx) {
            Ok(true) => {}
            Ok(false) => {
                if self.process(cx) == Next::Close {
                    return Some(Next::Close);
                }
                return Some(self.end(cx, true));
            }
            Err(e) => {
                log!(Info, "mqtt client {}: read failed ({e})", self.peer);
                return Some(self.end(cx, true));
            }
        }
        self.process_lent(cx)
    }

    /// Acts on the packets read, then gives the worker's read buffer back if no part of a
    /// packet is left in it: an idle connection holds no read buffer.
    fn process_lent(&mut self, cx: &mut Cx<'_>) -> Option<Next> {
        if self.process(cx) == Next::Close {
            return Some(Next::Close);
        }
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            SCRATCH.with(|s| *s.borrow_mut() = std::mem::take(&mut self.buf));
        }
        None
    }

    /// A parked CONNECT on a stopping worker: a newer worker takes the socket with the CONNECT
    /// and asks its own authority.
    fn hand_parked(&mut self, cx: &mut Cx<'_>, link: usize) -> Next {
        let State::Authorizing { connect, ticket } =
            std::mem::replace(&mut self.state, State::Closing)
        else {
            return Next::Close;
        };
        self.broker.borrow_mut().login_abandoned(ticket);
        let mut read = Vec::with_capacity(64 + self.buf.len());
        if codec::encode(&Packet::Connect(*connect), &mut read).is_err() {
            return Next::Close;
        }
        read.extend_from_slice(&self.buf);
        self.buf = BytesMut::from(&read[..]);
        self.hand_raw(cx, link)
    }
}

impl Conn for MqttConn {
    fn ready(&mut self, cx: &mut Cx<'_>, ev: Ready) -> Next {
        if ev.readable || ev.closed {
            self.drained = false;
        }
        if ev.read_closed || ev.closed {
            self.peer_shut = true;
        }
        if !self.broker.borrow().routing_ready() {
            // A new worker reads no client before it knows every running sibling's filters;
            // what the client sends waits in the socket.
            self.broker.borrow_mut().wait_ready(cx.token());
            return self.write_only(cx);
        }
        if let Some(next) = self.authorized(cx) {
            return next;
        }
        if let Some(next) = self.held_back(cx) {
            return next;
        }
        if ev.readable || ev.woken || ev.closed {
            if let Some(next) = self.read_and_process(cx) {
                return next;
            }
        }
        if let Err(e) = self.flush(cx.now_ms()) {
            log!(Info, "mqtt client {}: write failed ({e})", self.peer);
            return self.end(cx, true);
        }
        if matches!(self.state, State::Closing) && !self.pending_out() {
            return Next::Close;
        }
        self.arm(cx);
        Next::Keep
    }

    fn timeout(&mut self, cx: &mut Cx<'_>) -> Next {
        let now = cx.now_ms();
        match self.state {
            State::Connect { .. } | State::Authorizing { .. } | State::Closing => {
                log!(
                    Info,
                    "mqtt client {}: no CONNECT in time: closing",
                    self.peer
                );
                Next::Close
            }
            State::Live { session, idle_ms } => {
                if idle_ms > 0 && now >= self.last_in_ms + idle_ms {
                    // [MQTT-3.1.2-24]: silent for 1.5 keep-alive periods: disconnected, and
                    // the will published.
                    log!(Info, "mqtt client {}: keep-alive timeout", self.peer);
                    return self.end(cx, true);
                }
                let stall = self.broker.borrow().limits().stall_ms;
                let oldest = self
                    .broker
                    .borrow()
                    .session(session)
                    .and_then(|s| s.oldest_inflight_ms());
                let stalled = self.blocked_since.is_some_and(|t| now >= t + stall)
                    || oldest.is_some_and(|t| now >= t + stall);
                if stalled {
                    log!(
                        Info,
                        "mqtt client {}: not reading its messages: closing",
                        self.peer
                    );
                    return self.end(cx, true);
                }
                self.arm(cx);
                Next::Keep
            }
        }
    }

    fn drain(&mut self, cx: &mut Cx<'_>) -> Next {
        let (successors, link) = {
            let b = self.broker.borrow();
            (b.has_successors(), b.any_successor())
        };
        match (&self.state, link) {
            // The broker moves the session, and wakes this connection to go with it.
            (State::Live { .. }, _) if successors => Next::Keep,
            // No newer worker to take the client: the server is stopping. The session ends
            // with the server, which is not the client's failure (no will), once what the
            // ingest hook holds for it is acknowledged; it reads nothing more.
            (State::Live { .. }, _) => {
                self.quitting = true;
                self.held_back(cx).unwrap_or(Next::Keep)
            }
            // Not yet a client: a newer worker takes the socket and what was read, and hands
            // it on to the owner once the CONNECT names the client.
            (State::Connect { .. }, Some(link)) => self.hand_raw(cx, link),
            (State::Authorizing { .. }, Some(link)) => self.hand_parked(cx, link),
            _ => Next::Close,
        }
    }
}

impl Drop for MqttConn {
    fn drop(&mut self) {
        if let State::Authorizing { ticket, .. } = self.state {
            // The loop drops connections outside any broker call; should it ever not, the
            // ticket's answer is simply never picked up.
            if let Ok(mut b) = self.broker.try_borrow_mut() {
                b.login_abandoned(ticket);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Thousands of sensors mostly wait: what a parked CONNECT needs is boxed, so an idle
    /// connection does not pay for it.
    #[test]
    fn an_idle_connection_stays_small() {
        let size = std::mem::size_of::<super::MqttConn>();
        assert!(size <= 184, "MqttConn is {size} bytes");
    }
}
