//! The master's command channel to each child (nginx's channel): a socket pair made before the
//! fork. The master writes commands; the child's event loop reads them. Each command is one
//! datagram, so it arrives whole, and it may carry descriptors (reopened log files).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

/// What the master tells a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Stop accepting, finish in-flight work, exit (QUIT).
    Quit,
    /// Exit now (TERM).
    Terminate,
    /// Log files were reopened: the descriptors follow, in the cycle's order (USR1).
    Reopen,
}

impl Command {
    fn byte(self) -> u8 {
        match self {
            Command::Quit => b'q',
            Command::Terminate => b't',
            Command::Reopen => b'r',
        }
    }

    fn from_byte(b: u8) -> Option<Command> {
        match b {
            b'q' => Some(Command::Quit),
            b't' => Some(Command::Terminate),
            b'r' => Some(Command::Reopen),
            _ => None,
        }
    }
}

/// Both ends, before the fork.
pub fn pair() -> io::Result<(Sender, Receiver)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )?;
    Ok((Sender { fd: a }, Receiver { fd: b }))
}

/// The master's end.
#[derive(Debug)]
pub struct Sender {
    fd: OwnedFd,
}

impl Sender {
    /// Sends a command with descriptors; a full or closed channel is reported, never waited on.
    pub fn send(&self, cmd: Command, fds: &[RawFd]) -> io::Result<()> {
        let byte = [cmd.byte()];
        let iov = [IoSlice::new(&byte)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        Ok(())
    }
}

/// A child's end: non-blocking, to be watched by its event loop.
#[derive(Debug)]
pub struct Receiver {
    fd: OwnedFd,
}

impl AsRawFd for Receiver {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// What a receive found.
#[derive(Debug)]
pub enum Received {
    Command(Command, Vec<OwnedFd>),
    /// Nothing waiting.
    Empty,
    /// The master is gone.
    Closed,
}

impl Receiver {
    pub fn recv(&self) -> io::Result<Received> {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; 16]);
        let msg = match recvmsg::<()>(
            self.fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EAGAIN) => return Ok(Received::Empty),
            Err(e) => return Err(e.into()),
        };
        if msg.bytes == 0 {
            return Ok(Received::Closed);
        }
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: descriptors received with SCM_RIGHTS are new and owned by us.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        match Command::from_byte(byte[0]) {
            Some(cmd) => Ok(Received::Command(cmd, fds)),
            None => Err(io::Error::other(format!(
                "unknown channel command {:#x}",
                byte[0]
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[test]
    fn command_with_descriptor_arrives() {
        let (tx, rx) = pair().unwrap();
        assert!(matches!(rx.recv().unwrap(), Received::Empty));
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"hello").unwrap();
        tx.send(Command::Reopen, &[f.as_raw_fd()]).unwrap();
        match rx.recv().unwrap() {
            Received::Command(Command::Reopen, fds) => {
                let mut g = std::fs::File::from(fds.into_iter().next().unwrap());
                g.rewind().unwrap();
                let mut s = String::new();
                g.read_to_string(&mut s).unwrap();
                assert_eq!(s, "hello");
            }
            other => panic!("unexpected {other:?}"),
        }
        tx.send(Command::Quit, &[]).unwrap();
        assert!(matches!(
            rx.recv().unwrap(),
            Received::Command(Command::Quit, _)
        ));
        drop(tx);
        assert!(matches!(rx.recv().unwrap(), Received::Closed));
    }
}
