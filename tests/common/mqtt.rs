//! MQTT test helpers: a broker in a temporary prefix ([`Broker`]), a raw-socket MQTT 3.1.1
//! client that writes exactly the bytes a test asks for ([`Client`]), glue for rumqttc and for
//! Debian's mosquitto-clients, and [`Broker::worker_of`], which tells which worker process holds
//! a connection (so cross-worker routing is tested on purpose, not by luck).
//!
//! Every wait is bounded: [`WAIT`] for what must come, [`QUIET`] for what must not.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{basic_conf, eventually, get, two_free_ports, write_file, Server};

/// How long a test waits for a packet it expects.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test listens to be sure that a packet does not come.
pub const QUIET: Duration = Duration::from_millis(700);

/// bizzy with two workers, an HTTP server (for `/metrics`) and an MQTT listener; stopped on drop.
pub struct Broker {
    pub server: Server,
    pub port: u16,
}

impl Broker {
    /// Starts bizzy; `mqtt` holds extra `[mqtt]` keys (`allow_anonymous = true`, ...).
    pub fn start(mqtt: &str) -> Broker {
        Broker::start_with(mqtt, &[])
    }

    /// Anonymous clients allowed, every other key at its default.
    pub fn anonymous() -> Broker {
        Broker::start("allow_anonymous = true")
    }

    /// As [`Broker::start`], with `files` (path in the prefix, contents) written before the
    /// start: password and ACL files.
    pub fn start_with(mqtt: &str, files: &[(&str, &str)]) -> Broker {
        let (http, port) = two_free_ports();
        let conf = format!(
            "{}\n[mqtt]\nlisten = [\"127.0.0.1:{port}\"]\n{mqtt}\n",
            basic_conf(http, "", "", "")
        );
        let prepared = Server::prepare(http, &conf);
        for (path, text) in files {
            write_file(&prepared.path(path), text.as_bytes());
        }
        let b = Broker {
            server: prepared.launch(),
            port,
        };
        assert!(
            eventually(Duration::from_secs(10), || TcpStream::connect(b.addr())
                .is_ok()),
            "no MQTT listener on {}\n{}",
            b.addr(),
            b.server.error_log()
        );
        b
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The value of one series on `/metrics`, e.g. `bizzy_mqtt_messages_received_total{qos="1"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = get(self.server.addr(), "/metrics").text();
        text.lines().find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
    }

    /// The sum of every series of the metric `name`, whatever its labels (0 when absent).
    pub fn metric_sum(&self, name: &str) -> f64 {
        let text = get(self.server.addr(), "/metrics").text();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let bare = series.split('{').next()?;
                (bare == name).then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }

    /// The pid of the worker that holds the server side of `c`'s connection. A connection can
    /// move to another worker after its CONNECT; while two workers hold it, this waits (up to a
    /// second) for one to let go.
    pub fn worker_of(&self, c: &Client) -> Option<i32> {
        let client_port = c.stream.local_addr().ok()?.port();
        let inode = server_socket_inode(self.port, client_port)?;
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let holders: Vec<i32> = self
                .server
                .workers()
                .into_iter()
                .filter(|pid| sockets_held(*pid, &[inode]) > 0)
                .collect();
            if holders.len() == 1 || Instant::now() >= deadline {
                return holders.first().copied();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Each worker's pid and how many established MQTT connections it holds.
    pub fn mqtt_connections_by_worker(&self) -> Vec<(i32, usize)> {
        let inodes: Vec<u64> = tcp_sockets()
            .into_iter()
            .filter(|s| s.local_port == self.port && s.established)
            .map(|s| s.inode)
            .collect();
        self.server
            .workers()
            .into_iter()
            .map(|pid| (pid, sockets_held(pid, &inodes)))
            .collect()
    }

    /// Anonymous clean-session clients until one is held by a worker other than `not`'s; panics
    /// after 200 tries. The clients opened on the way are returned too, so they stay connected.
    pub fn client_on_other_worker(&self, not: &Client, id: &str) -> (Client, Vec<Client>) {
        let first = self
            .worker_of(not)
            .expect("the first client is on a worker");
        let mut others = Vec::new();
        for i in 0..200 {
            let (c, _) = connect(self.addr(), &Connect::new(&format!("{id}-{i}")));
            match self.worker_of(&c) {
                Some(w) if w != first => return (c, others),
                _ => others.push(c),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("200 connections all landed on worker {first}");
    }
}

/// The inode of the socket whose local port is `server_port` and remote port `client_port`.
fn server_socket_inode(server_port: u16, client_port: u16) -> Option<u64> {
    tcp_sockets()
        .into_iter()
        .find(|s| s.local_port == server_port && s.remote_port == client_port)
        .map(|s| s.inode)
}

struct TcpSocket {
    local_port: u16,
    remote_port: u16,
    established: bool,
    inode: u64,
}

/// The IPv4 TCP sockets of this network namespace, from `/proc/net/tcp`.
fn tcp_sockets() -> Vec<TcpSocket> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port_of = |hex: &str| {
        hex.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(TcpSocket {
                local_port: port_of(f.get(1)?)?,
                remote_port: port_of(f.get(2)?)?,
                established: *f.get(3)? == "01",
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// How many of the sockets `inodes` process `pid` holds a descriptor for.
fn sockets_held(pid: i32, inodes: &[u64]) -> usize {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    rd.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| {
                let t = target.to_string_lossy();
                inodes.iter().any(|i| t == format!("socket:[{i}]"))
            })
        })
        .count()
}

/// A CONNECT packet, built field by field so tests can also build wrong ones.
#[derive(Debug, Clone)]
pub struct Connect {
    pub protocol_name: String,
    pub level: u8,
    pub client_id: String,
    pub clean: bool,
    pub keep_alive: u16,
    /// Topic, payload, QoS, retain.
    pub will: Option<(String, Vec<u8>, u8, bool)>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    /// Sets the reserved bit 0 of the connect flags ([MQTT-3.1.2-3] says it must be 0).
    pub reserved: bool,
}

impl Connect {
    /// MQTT 3.1.1 (level 4), clean session, keep-alive 60 s.
    pub fn new(client_id: &str) -> Connect {
        Connect {
            protocol_name: "MQTT".into(),
            level: 4,
            client_id: client_id.into(),
            clean: true,
            keep_alive: 60,
            will: None,
            username: None,
            password: None,
            reserved: false,
        }
    }

    pub fn clean(mut self, clean: bool) -> Connect {
        self.clean = clean;
        self
    }

    pub fn keep_alive(mut self, secs: u16) -> Connect {
        self.keep_alive = secs;
        self
    }

    pub fn will(mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) -> Connect {
        self.will = Some((topic.into(), payload.into(), qos, retain));
        self
    }

    pub fn login(mut self, username: &str, password: &str) -> Connect {
        self.username = Some(username.into());
        self.password = Some(password.as_bytes().into());
        self
    }

    pub fn level(mut self, level: u8) -> Connect {
        self.level = level;
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut flags = 0u8;
        if self.reserved {
            flags |= 0x01;
        }
        if self.clean {
            flags |= 0x02;
        }
        if let Some((_, _, qos, retain)) = &self.will {
            flags |= 0x04 | (qos << 3) | if *retain { 0x20 } else { 0 };
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        let mut body = Vec::new();
        put_str(&mut body, self.protocol_name.as_bytes());
        body.push(self.level);
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        put_str(&mut body, self.client_id.as_bytes());
        if let Some((topic, payload, _, _)) = &self.will {
            put_str(&mut body, topic.as_bytes());
            put_str(&mut body, payload);
        }
        if let Some(u) = &self.username {
            put_str(&mut body, u.as_bytes());
        }
        if let Some(p) = &self.password {
            put_str(&mut body, p);
        }
        packet(0x10, &body)
    }
}

/// A PUBLISH, as sent or as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    /// 0 at QoS 0 (no identifier on the wire).
    pub pid: u16,
}

impl Publish {
    pub fn new(topic: &str, payload: &[u8], qos: u8) -> Publish {
        Publish {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain: false,
            dup: false,
            pid: 0,
        }
    }

    pub fn retained(mut self) -> Publish {
        self.retain = true;
        self
    }

    pub fn pid(mut self, pid: u16) -> Publish {
        self.pid = pid;
        self
    }

    pub fn dup(mut self) -> Publish {
        self.dup = true;
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let first = 0x30 | (u8::from(self.dup) << 3) | (self.qos << 1) | u8::from(self.retain);
        let mut body = Vec::new();
        put_str(&mut body, self.topic.as_bytes());
        if self.qos > 0 {
            body.extend_from_slice(&self.pid.to_be_bytes());
        }
        body.extend_from_slice(&self.payload);
        packet(first, &body)
    }
}

/// A packet read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connack {
        session_present: bool,
        code: u8,
    },
    Publish(Publish),
    Puback(u16),
    Pubrec(u16),
    Pubrel(u16),
    Pubcomp(u16),
    Suback {
        pid: u16,
        codes: Vec<u8>,
    },
    Unsuback(u16),
    Pingresp,
    /// Anything a server should not send; the first byte and the body.
    Other(u8, Vec<u8>),
}

/// A fixed header and `body`.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let len = u16::try_from(s.len()).expect("test strings fit an MQTT string");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
}

pub fn subscribe(pid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    for (f, qos) in filters {
        put_str(&mut body, f.as_bytes());
        body.push(*qos);
    }
    packet(0x82, &body)
}

pub fn unsubscribe(pid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    for f in filters {
        put_str(&mut body, f.as_bytes());
    }
    packet(0xa2, &body)
}

pub fn puback(pid: u16) -> Vec<u8> {
    packet(0x40, &pid.to_be_bytes())
}

pub fn pubrec(pid: u16) -> Vec<u8> {
    packet(0x50, &pid.to_be_bytes())
}

pub fn pubrel(pid: u16) -> Vec<u8> {
    packet(0x62, &pid.to_be_bytes())
}

pub fn pubcomp(pid: u16) -> Vec<u8> {
    packet(0x70, &pid.to_be_bytes())
}

pub const PINGREQ: [u8; 2] = [0xc0, 0x00];
pub const DISCONNECT: [u8; 2] = [0xe0, 0x00];

/// One whole packet at the front of `buf` and its length; None when more bytes are needed.
/// Panics on bytes no server may send.
fn decode(buf: &[u8]) -> Option<(Packet, usize)> {
    let first = *buf.first()?;
    let (mut len, mut i, mut shift) = (0usize, 1usize, 0u32);
    loop {
        let b = *buf.get(i)?;
        len |= usize::from(b & 0x7f) << shift;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        assert!(shift < 28, "server sent a remaining length over 4 bytes");
    }
    let body = buf.get(i..i + len)?;
    let pid = || u16::from_be_bytes([body[0], body[1]]);
    let p = match first {
        0x20 => Packet::Connack {
            session_present: body[0] & 1 == 1,
            code: body[1],
        },
        b if b >> 4 == 3 => Packet::Publish(decode_publish(b, body)),
        0x40 => Packet::Puback(pid()),
        0x50 => Packet::Pubrec(pid()),
        0x62 => Packet::Pubrel(pid()),
        0x70 => Packet::Pubcomp(pid()),
        0x90 => Packet::Suback {
            pid: pid(),
            codes: body[2..].to_vec(),
        },
        0xb0 => Packet::Unsuback(pid()),
        0xd0 => Packet::Pingresp,
        other => Packet::Other(other, body.to_vec()),
    };
    Some((p, i + len))
}

fn decode_publish(first: u8, body: &[u8]) -> Publish {
    let qos = (first >> 1) & 3;
    let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let topic = String::from_utf8(body[2..2 + tlen].to_vec()).expect("a UTF-8 topic");
    let mut at = 2 + tlen;
    let mut pid = 0;
    if qos > 0 {
        pid = u16::from_be_bytes([body[at], body[at + 1]]);
        at += 2;
    }
    Publish {
        topic,
        payload: body[at..].to_vec(),
        qos,
        retain: first & 1 == 1,
        dup: first & 8 == 8,
        pid,
    }
}

/// A raw MQTT connection. Packets read while waiting for another kind are kept, in order, for
/// later reads.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pending: VecDeque<Packet>,
    pid: u16,
    closed: bool,
}

/// Opens a connection and sends `c`; returns the client and the CONNACK's session-present flag
/// and return code, or None when the server closed (or stayed silent for [`WAIT`]) instead.
pub fn handshake(addr: SocketAddr, c: &Connect) -> (Client, Option<(bool, u8)>) {
    let mut client = Client::open(addr);
    client.send(&c.encode());
    let ack = match client.recv(WAIT) {
        Some(Packet::Connack {
            session_present,
            code,
        }) => Some((session_present, code)),
        Some(other) => panic!("{other:?} before CONNACK"),
        None => None,
    };
    (client, ack)
}

/// Connects and asserts that the server accepted; returns the client and session present.
pub fn connect(addr: SocketAddr, c: &Connect) -> (Client, bool) {
    let (client, ack) = handshake(addr, c);
    match ack {
        Some((present, 0)) => (client, present),
        other => panic!("CONNECT of {:?} refused: {other:?}", c.client_id),
    }
}

/// An anonymous clean-session client.
pub fn client(addr: SocketAddr, id: &str) -> Client {
    connect(addr, &Connect::new(id)).0
}

impl Client {
    /// A TCP connection, nothing sent.
    pub fn open(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
            pending: VecDeque::new(),
            pid: 0,
            closed: false,
        }
    }

    /// Writes `bytes`; panics if the connection is gone.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Writes `bytes`, for tests where the server may already have closed.
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// A new packet identifier (1, 2, ...; never 0).
    pub fn next_pid(&mut self) -> u16 {
        self.pid = self.pid % u16::MAX + 1;
        self.pid
    }

    /// The next packet within `within`; None when none came or the server closed.
    pub fn recv(&mut self, within: Duration) -> Option<Packet> {
        if let Some(p) = self.pending.pop_front() {
            return Some(p);
        }
        self.read_packet(Instant::now() + within)
    }

    fn read_packet(&mut self, deadline: Instant) -> Option<Packet> {
        loop {
            if let Some((p, used)) = decode(&self.buf) {
                self.buf.drain(..used);
                return Some(p);
            }
            let now = Instant::now();
            if self.closed || now >= deadline {
                return None;
            }
            self.stream.set_read_timeout(Some(deadline - now)).unwrap();
            let mut tmp = [0u8; 65536];
            match self.stream.read(&mut tmp) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => self.closed = true,
            }
        }
    }

    /// The first packet `want` accepts, within [`WAIT`]; the others stay queued. Panics if
    /// none comes.
    pub fn expect(&mut self, what: &str, want: impl Fn(&Packet) -> bool) -> Packet {
        if let Some(i) = self.pending.iter().position(&want) {
            return self.pending.remove(i).expect("the position is in range");
        }
        let deadline = Instant::now() + WAIT;
        loop {
            match self.read_packet(deadline) {
                Some(p) if want(&p) => return p,
                Some(p) => self.pending.push_back(p),
                None => panic!(
                    "no {what} within {WAIT:?} (closed: {}, queued: {:?})",
                    self.closed, self.pending
                ),
            }
        }
    }

    /// True when the server closes the connection within `within`; packets read on the way
    /// stay queued.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.closed && Instant::now() < deadline {
            if let Some(p) = self.read_packet(deadline) {
                self.pending.push_back(p);
            }
        }
        self.closed
    }

    /// Whether the server has closed the connection (as far as reads have seen).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Subscribes and returns the SUBACK's return codes.
    pub fn subscribe(&mut self, filters: &[(&str, u8)]) -> Vec<u8> {
        let pid = self.next_pid();
        self.send(&subscribe(pid, filters));
        match self.expect(
            "SUBACK",
            |p| matches!(p, Packet::Suback { pid: q, .. } if *q == pid),
        ) {
            Packet::Suback { codes, .. } => codes,
            _ => unreachable!("expect returns what the predicate accepted"),
        }
    }

    /// Unsubscribes and waits for the UNSUBACK.
    pub fn unsubscribe(&mut self, filters: &[&str]) {
        let pid = self.next_pid();
        self.send(&unsubscribe(pid, filters));
        self.expect("UNSUBACK", |p| *p == Packet::Unsuback(pid));
    }

    /// Publishes and completes the QoS exchange (PUBACK; PUBREC, PUBREL, PUBCOMP).
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) {
        let mut p = Publish::new(topic, payload, qos);
        p.retain = retain;
        if qos > 0 {
            p.pid = self.next_pid();
        }
        self.send(&p.encode());
        let pid = p.pid;
        match qos {
            0 => {}
            1 => {
                self.expect("PUBACK", |r| *r == Packet::Puback(pid));
            }
            _ => {
                self.expect("PUBREC", |r| *r == Packet::Pubrec(pid));
                self.send(&pubrel(pid));
                self.expect("PUBCOMP", |r| *r == Packet::Pubcomp(pid));
            }
        }
    }

    /// The next PUBLISH within `within`, not acknowledged; other packets stay queued.
    pub fn recv_publish(&mut self, within: Duration) -> Option<Publish> {
        if let Some(i) = self
            .pending
            .iter()
            .position(|p| matches!(p, Packet::Publish(_)))
        {
            if let Some(Packet::Publish(p)) = self.pending.remove(i) {
                return Some(p);
            }
        }
        let deadline = Instant::now() + within;
        loop {
            match self.read_packet(deadline)? {
                Packet::Publish(p) => return Some(p),
                other => self.pending.push_back(other),
            }
        }
    }

    /// Acknowledges a received PUBLISH: PUBACK at QoS 1; PUBREC, then PUBCOMP for the PUBREL,
    /// at QoS 2.
    pub fn ack(&mut self, p: &Publish) {
        match p.qos {
            0 => {}
            1 => self.send(&puback(p.pid)),
            _ => {
                let pid = p.pid;
                self.send(&pubrec(pid));
                self.expect("PUBREL", |r| *r == Packet::Pubrel(pid));
                self.send(&pubcomp(pid));
            }
        }
    }

    /// The next PUBLISH within `within`, acknowledged.
    pub fn take(&mut self, within: Duration) -> Option<Publish> {
        let p = self.recv_publish(within)?;
        self.ack(&p);
        Some(p)
    }

    /// Up to `n` PUBLISHes, acknowledged, waiting at most `within` in all.
    pub fn take_n(&mut self, n: usize, within: Duration) -> Vec<Publish> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.take(left) {
                Some(p) => out.push(p),
                None => break,
            }
        }
        out
    }

    /// Every PUBLISH that comes within `within`, acknowledged.
    pub fn take_all(&mut self, within: Duration) -> Vec<Publish> {
        self.take_n(usize::MAX, within)
    }

    /// PINGREQ; true when the PINGRESP came.
    pub fn ping(&mut self) -> bool {
        if self.try_send(&PINGREQ).is_err() {
            return false;
        }
        let deadline = Instant::now() + WAIT;
        loop {
            match self.read_packet(deadline) {
                Some(Packet::Pingresp) => return true,
                Some(p) => self.pending.push_back(p),
                None => return false,
            }
        }
    }

    /// Acknowledges and drops the PUBLISHes that arrive within 200 ms.
    pub fn drain(&mut self) {
        self.take_all(Duration::from_millis(200));
    }

    /// Every packet already received and not yet read, without waiting.
    pub fn queued(&mut self) -> Vec<Packet> {
        let mut out: Vec<Packet> = self.pending.drain(..).collect();
        while let Some((p, used)) = decode(&self.buf) {
            self.buf.drain(..used);
            out.push(p);
        }
        out
    }

    /// Sends DISCONNECT and closes the socket.
    pub fn disconnect(mut self) {
        let _ = self.try_send(&DISCONNECT);
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        self.closed_within(Duration::from_millis(200));
    }

    /// Closes the socket without DISCONNECT (a network failure, as the server sees it).
    pub fn drop_connection(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Publishes QoS 0 probes to `topic` from `from` until `to` receives one, then drops what both
/// receive in the next moment. For clients that may sit on different workers, where a new
/// subscription reaches the other worker a moment after its SUBACK: tests that count messages
/// start once the route is known to exist.
pub fn await_route(from: &mut Client, to: &mut Client, topic: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        from.publish(topic, b"probe", 0, false);
        if to
            .recv_publish(Duration::from_millis(50))
            .is_some_and(|p| p.topic == topic && p.payload == b"probe")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no route for {topic} within {WAIT:?}"
        );
    }
    to.drain();
    from.drain();
}

/// A rumqttc client (synchronous API) for `id` on `addr`; `tune` adjusts the options.
pub fn rumqtt(
    addr: SocketAddr,
    id: &str,
    tune: impl FnOnce(&mut rumqttc::MqttOptions),
) -> (rumqttc::Client, rumqttc::Connection) {
    let mut o = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    tune(&mut o);
    rumqttc::Client::new(o, 64)
}

/// Polls `conn` until the CONNACK: Ok when accepted, Err with the return code when refused,
/// Err(None) on any other connection error; panics after [`WAIT`].
pub fn rumqtt_connack(
    conn: &mut rumqttc::Connection,
) -> Result<rumqttc::ConnAck, Option<rumqttc::ConnectReturnCode>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv_timeout(left) {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)))) => return Ok(a),
            Ok(Ok(_)) => {}
            Ok(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => return Err(Some(code)),
            Ok(Err(_)) => return Err(None),
            Err(_) => panic!("no CONNACK for rumqttc within {WAIT:?}"),
        }
    }
}

/// Polls `conn` until `want` accepts an incoming packet; false on timeout or error.
pub fn rumqtt_until(
    conn: &mut rumqttc::Connection,
    within: Duration,
    mut want: impl FnMut(&rumqttc::Packet) -> bool,
) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match conn.recv_timeout(left) {
            Ok(Ok(rumqttc::Event::Incoming(p))) if want(&p) => return true,
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

/// Incoming PUBLISHes on `conn` until `n` came or `within` passed.
pub fn rumqtt_publishes(
    conn: &mut rumqttc::Connection,
    n: usize,
    within: Duration,
) -> Vec<rumqttc::Publish> {
    let mut got = Vec::new();
    rumqtt_until(conn, within, |p| {
        if let rumqttc::Packet::Publish(p) = p {
            got.push(p.clone());
        }
        got.len() >= n
    });
    got
}

/// `mosquitto_pub` against `addr` with `args`; its output once it exits (killed after [`WAIT`]).
pub fn mosquitto_pub(addr: SocketAddr, args: &[&str]) -> Output {
    let child = mosquitto("mosquitto_pub", addr, args);
    finish(child, WAIT)
}

/// `mosquitto_sub` against `addr` with `args`, running; stdout piped. Pass `-W SECONDS` so it
/// ends on its own.
pub fn mosquitto_sub(addr: SocketAddr, args: &[&str]) -> Child {
    mosquitto("mosquitto_sub", addr, args)
}

fn mosquitto(tool: &str, addr: SocketAddr, args: &[&str]) -> Child {
    Command::new(tool)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &addr.port().to_string(),
            "-V",
            "mqttv311",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e} (.ci/run installs mosquitto-clients)"))
}

/// Waits for `child` to exit, killing it after `within`; returns what it printed.
pub fn finish(mut child: Child, within: Duration) -> Output {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}
