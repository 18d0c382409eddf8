//! The ipc transport: framed messages over a unix socket pair made before `fork`.
//!
//! Owns one non-blocking `SOCK_STREAM` socket per end, an output batch and an input buffer.
//! Writes are batched: [`IpcChannel::write`] appends a frame to the output buffer and
//! [`IpcChannel::flush`] sends the whole batch with one `write(2)`. Reads take whatever the
//! kernel holds with one `recvmsg(2)` into a 64 KiB buffer and cut frames out of it, so a
//! message costs no system call of its own. File descriptors travel with a message as
//! `SCM_RIGHTS` ([`IpcChannel::send_with_fds`]): the master hands reopened log files to workers
//! that may no longer have the right to open them.
//!
//! Frame: 8-byte header (little-endian `u32`: payload length in bits 0-23, number of attached
//! fds in bits 24-27; little-endian `u32` message id), then the payload. Never blocks, except
//! in the `*_blocking`/`recv_deadline` helpers, which say so.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recvmsg, send, sendmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessage,
    ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};

use super::error::{RecvError, SendError};
use super::link::Link;
use super::signal::poll_timeout;
use super::Msg;

/// The largest payload a frame carries.
pub const MAX_FRAME: usize = (1 << 24) - 1;
/// The most fds one message carries.
pub const MAX_FDS: usize = 15;
/// The default high-water mark of the output batch, in bytes.
pub const DEFAULT_HWM_BYTES: usize = 1 << 20;

const HEADER: usize = 8;
const READ_CHUNK: usize = 64 * 1024;
const SOCKET_BUFFER: usize = 1 << 20;

/// The two ends of one channel, made before `fork`; each process keeps one with
/// [`IpcPair::into_parent`] or [`IpcPair::into_child`], which closes the other in that process.
#[derive(Debug)]
pub struct IpcPair {
    parent: OwnedFd,
    child: OwnedFd,
}

impl IpcPair {
    /// A connected, non-blocking, close-on-exec unix socket pair with 1 MiB kernel buffers
    /// (as far as the system allows).
    pub fn new() -> io::Result<Self> {
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let (parent, child) = socketpair(AddressFamily::Unix, SockType::Stream, None, flags)?;
        for fd in [&parent, &child] {
            // Larger buffers only mean fewer, bigger batches; the system's cap is fine too.
            let _ = setsockopt(fd, sockopt::SndBuf, &SOCKET_BUFFER);
            let _ = setsockopt(fd, sockopt::RcvBuf, &SOCKET_BUFFER);
        }
        Ok(IpcPair { parent, child })
    }

    /// `n` pairs, one per child process to fork.
    pub fn many(n: usize) -> io::Result<Vec<IpcPair>> {
        (0..n).map(|_| IpcPair::new()).collect()
    }

    /// Both descriptors (parent's, child's), to pass one to another process.
    pub fn into_fds(self) -> (OwnedFd, OwnedFd) {
        (self.parent, self.child)
    }

    /// The parent's end; closes the child's fd in this process.
    pub fn into_parent(self) -> IpcChannel {
        IpcChannel::from_fd(self.parent)
    }

    /// Both ends in this process (parent's, child's): for threads, or for tests.
    pub fn into_ends(self) -> (IpcChannel, IpcChannel) {
        (
            IpcChannel::from_fd(self.parent),
            IpcChannel::from_fd(self.child),
        )
    }

    /// The child's end; closes the parent's fd in this process.
    pub fn into_child(self) -> IpcChannel {
        IpcChannel::from_fd(self.child)
    }
}

/// One end of an ipc channel: bidirectional, framed, batched.
pub struct IpcChannel {
    fd: OwnedFd,
    out: Vec<u8>,
    out_sent: usize,
    hwm_bytes: usize,
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    cmsg: Vec<u8>,
    fds_in: VecDeque<OwnedFd>,
    fds_last: Vec<OwnedFd>,
    eof: bool,
}

impl IpcChannel {
    /// Wraps a connected unix stream socket (made non-blocking here).
    pub fn from_fd(fd: OwnedFd) -> Self {
        // A socket from IpcPair is already non-blocking; an inherited one may not be.
        let _ = set_nonblocking(&fd);
        IpcChannel {
            fd,
            out: Vec::with_capacity(READ_CHUNK),
            out_sent: 0,
            hwm_bytes: DEFAULT_HWM_BYTES,
            input: vec![0; READ_CHUNK],
            in_start: 0,
            in_end: 0,
            cmsg: nix::cmsg_space!([RawFd; MAX_FDS]),
            fds_in: VecDeque::new(),
            fds_last: Vec::new(),
            eof: false,
        }
    }

    /// Sets the high-water mark of unsent output, in bytes.
    pub fn set_hwm_bytes(&mut self, bytes: usize) {
        self.hwm_bytes = bytes.max(HEADER + 1);
    }

    /// Bytes written and not yet accepted by the kernel.
    pub fn unflushed(&self) -> usize {
        self.out.len() - self.out_sent
    }

    /// Closes an end inherited through `fork` that this process must not use: the fd is closed
    /// and the buffered output, a copy of the other process's, is dropped unsent.
    pub fn close_inherited(mut self) {
        self.out.clear();
        self.out_sent = 0;
    }

    /// The fds that arrived with the message last received; taking them is the receiver's
    /// job (they are closed at the next receive otherwise).
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.fds_last)
    }

    fn encode(&mut self, msg: &Msg, nfds: usize) -> Result<(), io::Error> {
        let len = msg.len();
        if len > MAX_FRAME || nfds > MAX_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ipc frame too large",
            ));
        }
        let word = len as u32 | (nfds as u32) << 24;
        self.out.extend_from_slice(&word.to_le_bytes());
        self.out.extend_from_slice(&msg.id().to_le_bytes());
        self.out.extend_from_slice(msg.as_bytes());
        Ok(())
    }

    /// Appends a frame to the output batch. Over the byte high-water mark, tries one flush
    /// first; `WouldBlock` if the peer is still behind.
    #[inline]
    pub fn write(&mut self, msg: Msg) -> Result<(), SendError<Msg>> {
        if self.unflushed() >= self.hwm_bytes {
            match self.flush() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(send_error(e, msg)),
            }
            if self.unflushed() >= self.hwm_bytes {
                return Err(SendError::WouldBlock(msg));
            }
        }
        match self.encode(&msg, 0) {
            Ok(()) => Ok(()),
            Err(e) => Err(SendError::Io(e, msg)),
        }
    }

    /// Sends the output batch with one `write(2)` (more only after a partial write). A
    /// `WouldBlock` error means the rest waits for the socket to turn writable.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.out_sent < self.out.len() {
            // MSG_NOSIGNAL: a peer that died is an EPIPE error here, never a SIGPIPE.
            let pending = &self.out[self.out_sent..];
            match send(self.fd.as_raw_fd(), pending, MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => self.out_sent += n,
                Err(nix::Error::EINTR) => continue,
                Err(e) => {
                    self.compact_out();
                    return Err(e.into());
                }
            }
        }
        self.out.clear();
        self.out_sent = 0;
        Ok(())
    }

    fn compact_out(&mut self) {
        if self.out_sent > self.out.len() / 2 {
            self.out.drain(..self.out_sent);
            self.out_sent = 0;
        }
    }

    /// Writes and flushes one message.
    pub fn send(&mut self, msg: Msg) -> Result<(), SendError<Msg>> {
        self.write(msg)?;
        match self.flush() {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(SendError::Io(e, Msg::empty())),
        }
    }

    /// Sends a message with file descriptors attached (`SCM_RIGHTS`), after everything written
    /// before it. The receiver gets its own copies of the fds; the caller keeps its own.
    pub fn send_with_fds(
        &mut self,
        msg: Msg,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), SendError<Msg>> {
        match self.flush() {
            Ok(()) => {}
            Err(e) => return Err(send_error(e, msg)),
        }
        if let Err(e) = self.encode(&msg, fds.len()) {
            return Err(SendError::Io(e, msg));
        }
        let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        let cmsgs = [ControlMessage::ScmRights(&raw)];
        let iov = [IoSlice::new(&self.out)];
        let sent = loop {
            match sendmsg::<UnixAddr>(
                self.fd.as_raw_fd(),
                &iov,
                &cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Err(nix::Error::EINTR) => continue,
                other => break other,
            }
        };
        match sent {
            Ok(n) => {
                // The fds went with the first byte; the rest of the frame is ordinary output.
                self.out_sent = n;
                match self.flush() {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                    Err(e) => Err(SendError::Io(e, Msg::empty())),
                }
            }
            Err(e) => {
                self.out.clear();
                Err(send_error(e.into(), msg))
            }
        }
    }

    /// Takes the next message. Fds that came with it wait in [`IpcChannel::take_fds`].
    /// `WouldBlock` when nothing is buffered or readable; `Closed` once the peer is gone and
    /// everything it sent was delivered.
    #[inline]
    pub fn try_recv(&mut self) -> Result<Msg, RecvError> {
        loop {
            if let Some(msg) = self.parse()? {
                return Ok(msg);
            }
            // Until a frame is whole or the socket is drained: an edge-triggered poller gets
            // no second event for bytes left behind.
            self.fill()?;
        }
    }

    /// Takes the next message and the fds that came with it.
    pub fn try_recv_with_fds(&mut self) -> Result<(Msg, Vec<OwnedFd>), RecvError> {
        let msg = self.try_recv()?;
        Ok((msg, self.take_fds()))
    }

    /// Cuts the next whole frame out of the input buffer.
    #[inline]
    fn parse(&mut self) -> Result<Option<Msg>, RecvError> {
        let avail = &self.input[self.in_start..self.in_end];
        if avail.len() < HEADER {
            return Ok(None);
        }
        let word = u32::from_le_bytes([avail[0], avail[1], avail[2], avail[3]]);
        let id = u32::from_le_bytes([avail[4], avail[5], avail[6], avail[7]]);
        let len = (word & 0x00ff_ffff) as usize;
        let nfds = (word >> 24) as usize;
        if nfds > MAX_FDS {
            return Err(protocol_error("ipc frame header is corrupt"));
        }
        if avail.len() < HEADER + len {
            return Ok(None);
        }
        let msg = Msg::new(&avail[HEADER..HEADER + len]).with_id(id);
        self.in_start += HEADER + len;
        if nfds > 0 || !self.fds_last.is_empty() {
            self.attach_fds(nfds)?;
        }
        Ok(Some(msg))
    }

    fn attach_fds(&mut self, nfds: usize) -> Result<(), RecvError> {
        self.fds_last.clear();
        if self.fds_in.len() < nfds {
            return Err(protocol_error(
                "ipc frame announces fds that did not arrive",
            ));
        }
        self.fds_last.extend(self.fds_in.drain(..nfds));
        Ok(())
    }

    /// One `recvmsg(2)` into the free end of the input buffer.
    fn fill(&mut self) -> Result<(), RecvError> {
        if self.eof {
            return Err(self.eof_error());
        }
        self.make_room();
        let n = {
            let mut iov = [IoSliceMut::new(&mut self.input[self.in_end..])];
            let msg = loop {
                match recvmsg::<UnixAddr>(
                    self.fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut self.cmsg),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                ) {
                    Err(nix::Error::EINTR) => continue,
                    other => break other,
                }
            }
            .map_err(|e| RecvError::from(io::Error::from(e)))?;
            for cmsg in msg.cmsgs().map_err(|e| RecvError::Io(e.into()))? {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    // SAFETY: the kernel just installed these fds in this process for us;
                    // nothing else owns them.
                    self.fds_in.extend(
                        fds.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            msg.bytes
        };
        if n == 0 {
            self.eof = true;
            return Err(self.eof_error());
        }
        self.in_end += n;
        Ok(())
    }

    fn eof_error(&self) -> RecvError {
        if self.in_start == self.in_end {
            RecvError::Closed
        } else {
            RecvError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "ipc peer left mid-frame",
            ))
        }
    }

    /// Moves the unparsed tail to the front and grows the buffer for a frame larger than it.
    fn make_room(&mut self) {
        if self.in_start == self.in_end {
            self.in_start = 0;
            self.in_end = 0;
        } else if self.in_start > 0 {
            self.input.copy_within(self.in_start..self.in_end, 0);
            self.in_end -= self.in_start;
            self.in_start = 0;
        }
        let need = if self.in_end >= HEADER {
            let word =
                u32::from_le_bytes([self.input[0], self.input[1], self.input[2], self.input[3]]);
            HEADER + (word & 0x00ff_ffff) as usize
        } else {
            0
        };
        let want = need.max(self.in_end + READ_CHUNK / 2).max(READ_CHUNK);
        if self.input.len() < want {
            self.input.resize(want, 0);
        }
    }

    /// Waits until a message arrives, the peer leaves, or `deadline`.
    pub fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<Msg, RecvError> {
        loop {
            match self.try_recv() {
                Err(RecvError::WouldBlock) => {
                    wait_fd(self.fd.as_fd(), PollFlags::POLLIN, deadline)?
                }
                other => return other,
            }
        }
    }

    /// Flushes everything, waiting for the socket to drain until `deadline`.
    pub fn flush_blocking(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        loop {
            match self.flush() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_fd(self.fd.as_fd(), PollFlags::POLLOUT, deadline).map_err(|e| match e {
                        RecvError::Io(e) => e,
                        other => io::Error::new(io::ErrorKind::TimedOut, other.to_string()),
                    })?
                }
                other => return other,
            }
        }
    }
}

fn send_error(e: io::Error, msg: Msg) -> SendError<Msg> {
    match e.kind() {
        io::ErrorKind::WouldBlock => SendError::WouldBlock(msg),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => SendError::Closed(msg),
        _ => SendError::Io(e, msg),
    }
}

fn protocol_error(why: &'static str) -> RecvError {
    RecvError::Io(io::Error::new(io::ErrorKind::InvalidData, why))
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}

fn wait_fd(
    fd: BorrowedFd<'_>,
    what: PollFlags,
    deadline: Option<Instant>,
) -> Result<(), RecvError> {
    let timeout = match deadline {
        None => PollTimeout::NONE,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            poll_timeout(left)
        }
    };
    let mut fds = [PollFd::new(fd, what)];
    match poll(&mut fds, timeout) {
        Ok(_) | Err(nix::Error::EINTR) => Ok(()),
        Err(e) => Err(RecvError::Io(e.into())),
    }
}

impl Link for IpcChannel {
    #[inline]
    fn write(&mut self, msg: Msg) -> Result<(), SendError<Msg>> {
        IpcChannel::write(self, msg)
    }

    fn flush(&mut self) -> io::Result<()> {
        match IpcChannel::flush(self) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    #[inline]
    fn try_recv(&mut self) -> Result<Msg, RecvError> {
        IpcChannel::try_recv(self)
    }
}

impl AsRawFd for IpcChannel {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for IpcChannel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for IpcChannel {
    /// Hands what the kernel will take to the peer; never waits.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl mio::event::Source for IpcChannel {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        SourceFd(&self.fd.as_raw_fd()).register(r, t, i)
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        SourceFd(&self.fd.as_raw_fd()).reregister(r, t, i)
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        SourceFd(&self.fd.as_raw_fd()).deregister(r)
    }
}
