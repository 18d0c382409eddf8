//! The master's command channel to each child (nginx's channel), carried by the queue engine's
//! ipc transport: a socket pair made before the fork, framed messages, and descriptors passed
//! with `SCM_RIGHTS` (reopened log files go to workers that may no longer open them). The master
//! writes commands; the child's event loop reads them.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::core::queue::{IpcChannel, IpcPair, Msg, RecvError, SendError};

/// What the master tells a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Stop accepting, finish in-flight work, exit (QUIT).
    Quit,
    /// Exit now (TERM).
    Terminate,
    /// Log files were reopened: the descriptors follow, in the cycle's order (USR1).
    Reopen,
    /// A sibling worker started: this child's end of their socket pair follows.
    Peer { slot: u16, generation: u64 },
}

impl Command {
    fn bytes(self) -> Vec<u8> {
        match self {
            Command::Quit => b"q".to_vec(),
            Command::Terminate => b"t".to_vec(),
            Command::Reopen => b"r".to_vec(),
            Command::Peer { slot, generation } => {
                let mut b = b"p".to_vec();
                b.extend_from_slice(&slot.to_le_bytes());
                b.extend_from_slice(&generation.to_le_bytes());
                b
            }
        }
    }

    fn from_bytes(b: &[u8]) -> Option<Command> {
        match b {
            b"q" => Some(Command::Quit),
            b"t" => Some(Command::Terminate),
            b"r" => Some(Command::Reopen),
            [b'p', s0, s1, g @ ..] if g.len() == 8 => Some(Command::Peer {
                slot: u16::from_le_bytes([*s0, *s1]),
                generation: u64::from_le_bytes(g.try_into().ok()?),
            }),
            _ => None,
        }
    }
}

/// Both ends, made before the fork; each process keeps one.
pub struct Pair(IpcPair);

/// Makes a channel for a child about to be forked.
pub fn pair() -> io::Result<Pair> {
    Ok(Pair(IpcPair::new()?))
}

impl Pair {
    /// The master's end (closes the child's in the master).
    pub fn parent(self) -> Sender {
        Sender(self.0.into_parent())
    }

    /// The child's end (closes the master's in the child).
    pub fn child(self) -> Receiver {
        Receiver(self.0.into_child())
    }
}

/// The master's end.
pub struct Sender(IpcChannel);

impl Sender {
    /// Sends a command with descriptors; a full or closed channel is reported, never waited on.
    pub fn send(&mut self, cmd: Command, fds: &[RawFd]) -> io::Result<()> {
        // SAFETY: the caller's descriptors stay open for the duration of this call.
        let fds: Vec<BorrowedFd<'_>> = fds
            .iter()
            .map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) })
            .collect();
        let msg = Msg::new(&cmd.bytes());
        let res = if fds.is_empty() {
            self.0.send(msg)
        } else {
            self.0.send_with_fds(msg, &fds)
        };
        res.map_err(|e| match e {
            SendError::Io(e, _) => e,
            other => io::Error::new(io::ErrorKind::WouldBlock, format!("{other:?}")),
        })
    }

    /// In a newly forked child: closes this end, inherited from the master, without sending
    /// what the master had buffered.
    pub fn close_inherited(self) {
        self.0.close_inherited();
    }
}

/// A child's end: non-blocking, watched by its event loop.
pub struct Receiver(IpcChannel);

impl AsRawFd for Receiver {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
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
    pub fn recv(&mut self) -> io::Result<Received> {
        match self.0.try_recv_with_fds() {
            Ok((msg, fds)) => match Command::from_bytes(msg.as_bytes()) {
                Some(cmd) => Ok(Received::Command(cmd, fds)),
                None => Err(io::Error::other(format!(
                    "unknown channel command {:?}",
                    msg.as_bytes()
                ))),
            },
            Err(RecvError::WouldBlock) => Ok(Received::Empty),
            Err(RecvError::Closed | RecvError::Discarded(_)) => Ok(Received::Closed),
            Err(RecvError::Io(e)) => Err(e),
            Err(RecvError::Timeout) => Ok(Received::Empty),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[test]
    fn command_with_descriptor_arrives() {
        let (parent, child) = IpcPair::new().unwrap().into_ends();
        let (mut tx, mut rx) = (Sender(parent), Receiver(child));
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
        let peer = Command::Peer {
            slot: 3,
            generation: 1 << 40,
        };
        tx.send(peer, &[f.as_raw_fd()]).unwrap();
        tx.send(Command::Terminate, &[]).unwrap();
        assert!(matches!(
            rx.recv().unwrap(),
            Received::Command(Command::Quit, _)
        ));
        match rx.recv().unwrap() {
            Received::Command(c, fds) => assert_eq!((c, fds.len()), (peer, 1)),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            rx.recv().unwrap(),
            Received::Command(Command::Terminate, _)
        ));
        drop(tx);
        assert!(matches!(rx.recv().unwrap(), Received::Closed));
    }
}
