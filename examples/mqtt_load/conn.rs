//! One MQTT connection of the generator over a non-blocking tokio socket, and the errors a
//! connection can end with.
//!
//! Reads and writes go straight through `try_read` / `try_write` into buffers the connection
//! owns, so a scenario batches: it decodes every packet one read brought, appends its answers to
//! `out`, and writes them with one `flush`. Every wait is bounded by the connection's stall
//! timeout: a broker that stops answering ends the connection with an error, never a hang.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use crate::ledger::Mismatch;
use crate::sse::SseError;
use crate::wire::{self, Packet, WireError};

/// How long any single wait on the broker may take before the connection gives up.
pub const STALL: Duration = Duration::from_secs(10);

/// Why a connection of the generator ended early.
#[derive(Debug)]
pub enum LoadError {
    Connect(io::Error),
    Io(io::Error),
    Closed,
    Wire(WireError),
    Refused {
        code: u8,
    },
    SubscribeRefused,
    Unexpected(Packet),
    Timeout(&'static str),
    /// A server-sent event stream that could not be read.
    Sse(SseError),
    /// An event that no report of the run explains.
    Mismatch(Mismatch),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Connect(e) => write!(f, "TCP connect failed: {e}"),
            LoadError::Io(e) => write!(f, "socket error: {e}"),
            LoadError::Closed => write!(f, "the broker closed the connection"),
            LoadError::Wire(e) => write!(f, "the broker sent a bad packet: {e}"),
            LoadError::Refused { code } => write!(f, "CONNACK refused the connection, code {code}"),
            LoadError::SubscribeRefused => write!(f, "SUBACK refused the subscription (0x80)"),
            LoadError::Unexpected(p) => write!(f, "unexpected packet from the broker: {p:?}"),
            LoadError::Timeout(what) => {
                write!(f, "no {what} from the server within {} s", STALL.as_secs())
            }
            LoadError::Sse(e) => write!(f, "{e}"),
            LoadError::Mismatch(m) => write!(f, "{m}"),
        }
    }
}

pub struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    /// Packets to send at the next `flush`.
    pub out: Vec<u8>,
}

impl Conn {
    /// A TCP connection with Nagle off; `rbuf` is the initial read buffer size (it grows for a
    /// packet that does not fit).
    pub async fn tcp(addr: SocketAddr, rbuf: usize) -> Result<Conn, LoadError> {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(LoadError::Connect)?;
        let stream = match timeout(STALL, socket.connect(addr)).await {
            Ok(r) => r.map_err(LoadError::Connect)?,
            Err(_) => return Err(LoadError::Timeout("TCP handshake")),
        };
        stream.set_nodelay(true).map_err(LoadError::Io)?;
        Ok(Conn {
            stream,
            rbuf: vec![0; rbuf.max(64)],
            start: 0,
            end: 0,
            out: Vec::new(),
        })
    }

    pub async fn expect_connack(&mut self) -> Result<(), LoadError> {
        match self.next("CONNACK").await? {
            Packet::ConnAck { code: 0 } => Ok(()),
            Packet::ConnAck { code } => Err(LoadError::Refused { code }),
            p => Err(LoadError::Unexpected(p)),
        }
    }

    /// Waits for the SUBACK of `pkid` and checks that the subscription was granted.
    pub async fn expect_suback(&mut self, pkid: u16) -> Result<(), LoadError> {
        match self.next("SUBACK").await? {
            Packet::SubAck { granted: 0x80, .. } => Err(LoadError::SubscribeRefused),
            Packet::SubAck { pkid: p, .. } if p == pkid => Ok(()),
            p => Err(LoadError::Unexpected(p)),
        }
    }

    /// Writes all of `out`, waiting while the broker's receive window is full.
    pub async fn flush(&mut self) -> Result<(), LoadError> {
        let mut at = 0;
        while at < self.out.len() {
            match self.stream.try_write(&self.out[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match timeout(STALL, self.stream.writable()).await {
                        Ok(r) => r.map_err(LoadError::Io)?,
                        Err(_) => return Err(LoadError::Timeout("room to write")),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LoadError::Io(e)),
            }
        }
        self.out.clear();
        Ok(())
    }

    /// The next packet already read, if a whole one is buffered.
    pub fn try_next(&mut self) -> Result<Option<Packet>, LoadError> {
        match wire::decode(&self.rbuf[self.start..self.end]).map_err(LoadError::Wire)? {
            Some((p, used)) => {
                self.start += used;
                Ok(Some(p))
            }
            None => Ok(None),
        }
    }

    /// The next packet; `what` names it in the error if none comes within `STALL`.
    pub async fn next(&mut self, what: &'static str) -> Result<Packet, LoadError> {
        self.next_within(STALL)
            .await?
            .ok_or(LoadError::Timeout(what))
    }

    /// The next packet, or `None` if none came within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Result<Option<Packet>, LoadError> {
        loop {
            if let Some(p) = self.try_next()? {
                return Ok(Some(p));
            }
            match timeout(wait, self.stream.readable()).await {
                Ok(r) => r.map_err(LoadError::Io)?,
                Err(_) => return Ok(None),
            }
            self.try_fill()?;
        }
    }

    /// Reads what the socket has without waiting; `Ok(false)`: nothing was there.
    pub fn try_fill(&mut self) -> Result<bool, LoadError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.rbuf.len() {
            if self.start == 0 {
                let grown = self.rbuf.len() * 2;
                self.rbuf.resize(grown, 0);
            } else {
                self.rbuf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
        }
        match self.stream.try_read(&mut self.rbuf[self.end..]) {
            Ok(0) => Err(LoadError::Closed),
            Ok(n) => {
                self.end += n;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(LoadError::Io(e)),
        }
    }

    /// True while the broker has not closed the connection (checked without waiting).
    pub fn is_open(&mut self) -> bool {
        self.try_fill().is_ok()
    }
}
