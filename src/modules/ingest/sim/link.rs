//! One MQTT 3.1.1 client connection of the simulator, on a non-blocking mio socket: the bytes
//! come from and go to the server's own codec (`mqtt::codec`), both ways.
//!
//! A link connects, sends CONNECT and waits for CONNACK; then it publishes at QoS 0 or 1, keeps
//! each QoS 1 message until its PUBACK, and answers the server's QoS 1 publishes. When the
//! connection breaks it waits (50 ms, doubling up to 2 s) and connects again; its session is
//! persistent (clean session off), so on the new connection it sends every unacknowledged
//! message again, in order, with DUP set, as MQTT 3.1.1 asks of a client ([MQTT-4.4.0-1]).
//! The driver (`run.rs`) owns the loop and tells each link what happened to its socket.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::modules::ingest::decode::Channel;
use crate::mqtt::codec::{self, encode_publish, Connect, Decode, Decoder, Packet, QoS, Subscribe};

/// Keep-alive asked in CONNECT; a link that wrote nothing for half of it sends PINGREQ.
pub const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Bytes a link may have waiting for its socket before it takes no more messages.
const MAX_UNSENT: usize = 64 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where a link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No connection; the driver knows when to try again (what [`Link::down`] returned).
    Down,
    /// TCP connect under way.
    Connecting,
    /// CONNECT sent, CONNACK awaited.
    Handshake,
    Open,
}

/// What a message was, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Report(Channel),
    /// A payload sent to be refused.
    Bad,
}

/// A QoS 1 message awaiting its PUBACK.
#[derive(Debug, Clone)]
pub struct Inflight {
    pub pkid: u16,
    pub topic: String,
    pub payload: Bytes,
    /// When it was first published.
    pub sent_at: Instant,
    pub what: What,
}

/// A packet from the server that the driver acts on.
#[derive(Debug)]
pub enum Incoming {
    Connack(codec::Connack),
    Puback(u16),
    Suback,
    Publish(codec::Publish),
}

/// Why a link went down.
#[derive(Debug)]
pub enum Broken {
    Io(io::Error),
    /// The server closed the connection.
    Closed,
    /// The server sent bytes that are no MQTT packet.
    Protocol(codec::CodecError),
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Io(e) => e.fmt(f),
            Broken::Closed => f.write_str("closed by the server"),
            Broken::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

impl From<io::Error> for Broken {
    fn from(e: io::Error) -> Broken {
        Broken::Io(e)
    }
}

/// One client connection.
#[derive(Debug)]
pub struct Link {
    hello: Connect,
    stream: Option<TcpStream>,
    pub state: State,
    out: Vec<u8>,
    /// Bytes of `out` already written.
    written: usize,
    inbuf: BytesMut,
    inflight: VecDeque<Inflight>,
    next_pkid: u16,
    backoff: Duration,
    last_write: Instant,
}

impl Link {
    /// A link that logs in as `client_id` with `username` and `password`.
    pub fn new(client_id: &str, username: Option<&str>, password: Option<&[u8]>) -> Link {
        Link {
            hello: Connect {
                clean_session: false,
                keep_alive: u16::try_from(KEEP_ALIVE.as_secs()).expect("a minute"),
                client_id: client_id.to_string(),
                will: None,
                username: username.map(str::to_string),
                password: password.map(Bytes::copy_from_slice),
            },
            stream: None,
            state: State::Down,
            out: Vec::new(),
            written: 0,
            inbuf: BytesMut::with_capacity(4096),
            inflight: VecDeque::new(),
            next_pkid: 1,
            backoff: FIRST_BACKOFF,
            last_write: Instant::now(),
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.hello.client_id
    }

    /// Starts connecting to `addr`; the socket's events come with `token`.
    pub fn open(&mut self, addr: SocketAddr, registry: &Registry, token: Token) -> io::Result<()> {
        let mut stream = TcpStream::connect(addr)?;
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        self.stream = Some(stream);
        self.state = State::Connecting;
        Ok(())
    }

    /// Handles an event of the link's socket; packets read go to `got`.
    pub fn ready(&mut self, event: &Event, got: &mut Vec<Incoming>) -> Result<(), Broken> {
        if self.state == State::Connecting {
            if !(event.is_writable() || event.is_error() || event.is_write_closed()) {
                return Ok(());
            }
            if !self.connected()? {
                return Ok(());
            }
            self.queue(&Packet::Connect(self.hello.clone()));
            self.state = State::Handshake;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read(got)?;
        }
        self.flush()
    }

    /// Whether the TCP connect finished; an error if it failed.
    fn connected(&mut self) -> Result<bool, Broken> {
        let stream = self.stream.as_ref().ok_or(Broken::Closed)?;
        if let Some(e) = stream.take_error()? {
            return Err(Broken::Io(e));
        }
        match stream.peer_addr() {
            Ok(_) => {
                stream.set_nodelay(true)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(Broken::Io(e)),
        }
    }

    fn read(&mut self, got: &mut Vec<Incoming>) -> Result<(), Broken> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Err(Broken::Closed),
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Broken::Io(e)),
            }
        }
        let mut decoder = Decoder {
            max_packet_size: 1 << 20,
        };
        while let Some(p) = decoder.decode(&mut self.inbuf).map_err(Broken::Protocol)? {
            match p {
                Packet::Connack(c) => got.push(Incoming::Connack(c)),
                Packet::Puback(id) => got.push(Incoming::Puback(id)),
                Packet::Suback(_) => got.push(Incoming::Suback),
                Packet::Publish(p) => {
                    if p.qos == QoS::AtLeastOnce {
                        self.queue(&Packet::Puback(p.pkid));
                    }
                    got.push(Incoming::Publish(p));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes what waits until the socket takes no more.
    pub fn flush(&mut self) -> Result<(), Broken> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        if self.state == State::Connecting {
            return Ok(());
        }
        while self.written < self.out.len() {
            match stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(Broken::Closed),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Broken::Io(e)),
            }
        }
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        }
        self.last_write = Instant::now();
        Ok(())
    }

    fn queue(&mut self, p: &Packet) {
        codec::encode(p, &mut self.out).expect("the simulator's packets fit MQTT's length fields");
    }

    /// The CONNACK accepted the login: the link is open, and every unacknowledged message goes
    /// out again. Returns the messages sent again.
    pub fn opened(&mut self) -> Vec<What> {
        self.state = State::Open;
        self.backoff = FIRST_BACKOFF;
        for m in &self.inflight {
            encode_publish(
                &m.topic,
                &m.payload,
                QoS::AtLeastOnce,
                false,
                true,
                m.pkid,
                &mut self.out,
            );
        }
        self.inflight.iter().map(|m| m.what).collect()
    }

    /// Subscribes to `filter` at `qos`.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) {
        let pkid = self.pkid();
        self.queue(&Packet::Subscribe(Subscribe {
            pkid,
            filters: vec![(filter.to_string(), qos)],
        }));
    }

    /// Queues a message (written by the next [`Link::flush`]).
    pub fn publish(&mut self, topic: String, payload: Vec<u8>, qos: QoS, what: What) {
        if qos == QoS::AtMostOnce {
            encode_publish(&topic, &payload, qos, false, false, 0, &mut self.out);
            return;
        }
        let pkid = self.pkid();
        encode_publish(
            &topic,
            &payload,
            QoS::AtLeastOnce,
            false,
            false,
            pkid,
            &mut self.out,
        );
        self.inflight.push_back(Inflight {
            pkid,
            topic,
            payload: Bytes::from(payload),
            sent_at: Instant::now(),
            what,
        });
    }

    /// A free packet identifier: never 0, never one in flight.
    fn pkid(&mut self) -> u16 {
        loop {
            let id = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|m| m.pkid == id) {
                return id;
            }
        }
    }

    /// The message PUBACK `pkid` acknowledges (`None`: none in flight, e.g. a second PUBACK).
    pub fn acked(&mut self, pkid: u16) -> Option<Inflight> {
        if self.inflight.front().is_some_and(|m| m.pkid == pkid) {
            return self.inflight.pop_front();
        }
        let at = self.inflight.iter().position(|m| m.pkid == pkid)?;
        self.inflight.remove(at)
    }

    /// Whether the link takes another message with at most `window` QoS 1 messages in flight.
    pub fn has_room(&self, window: usize) -> bool {
        self.state == State::Open
            && self.inflight.len() < window
            && self.out.len() - self.written < MAX_UNSENT
    }

    /// QoS 1 messages awaiting their PUBACK.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Bytes not yet written.
    pub fn unsent(&self) -> usize {
        self.out.len() - self.written
    }

    /// Sends PINGREQ when nothing was written for half the keep-alive.
    pub fn keep_alive(&mut self, now: Instant) {
        if self.state == State::Open && now.duration_since(self.last_write) >= KEEP_ALIVE / 2 {
            self.queue(&Packet::Pingreq);
        }
    }

    /// Sends DISCONNECT (a clean end: the server publishes no will and keeps the session).
    pub fn disconnect(&mut self) {
        if self.state == State::Open {
            self.queue(&Packet::Disconnect);
        }
    }

    /// The connection is gone: what was read or queued goes with it, the messages in flight
    /// stay for the next connection, which is tried after the back-off: returns when.
    pub fn down(&mut self, registry: &Registry, now: Instant) -> Instant {
        if let Some(mut s) = self.stream.take() {
            let _ = registry.deregister(&mut s);
        }
        self.state = State::Down;
        self.out.clear();
        self.written = 0;
        self.inbuf.clear();
        let retry_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        retry_at
    }

    /// Closes the connection for good.
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut s) = self.stream.take() {
            let _ = registry.deregister(&mut s);
        }
        self.state = State::Down;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_messages_leave_in_any_order_and_ids_are_never_reused_in_flight() {
        let mut l = Link::new("sim-00001", Some("sim-00001"), Some(b"pw"));
        for n in 0..3u8 {
            l.publish("t".into(), vec![n], QoS::AtLeastOnce, What::Bad);
        }
        assert_eq!(l.in_flight(), 3);
        assert_eq!(l.acked(2).map(|m| m.payload[0]), Some(1));
        assert_eq!(l.acked(1).map(|m| m.payload[0]), Some(0));
        assert!(l.acked(1).is_none());
        l.next_pkid = 3;
        l.publish("t".into(), vec![9], QoS::AtLeastOnce, What::Bad);
        assert_eq!(
            l.inflight.back().map(|m| m.pkid),
            Some(4),
            "3 is still in flight"
        );
        l.next_pkid = u16::MAX;
        assert_eq!(l.pkid(), u16::MAX);
        assert_eq!(l.pkid(), 1, "0 is skipped");
    }

    #[test]
    fn a_new_connection_sends_the_unacknowledged_again_with_dup() {
        let mut l = Link::new("c", None, None);
        l.publish("a/b".into(), vec![1, 2], QoS::AtLeastOnce, What::Bad);
        l.out.clear();
        assert_eq!(l.opened(), [What::Bad]);
        let mut buf = BytesMut::from(&l.out[..]);
        let mut d = Decoder {
            max_packet_size: 1024,
        };
        match d.decode(&mut buf) {
            Ok(Some(Packet::Publish(p))) => assert!(p.dup && p.pkid == 1 && p.topic == "a/b"),
            other => panic!("{other:?}"),
        }
    }
}
