//! A connection's output queue: small pieces gathered into one buffer, large ones and file
//! regions queued as they are, written out with writev and sendfile by the connection.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;

use bytes::Bytes;

use super::HttpConn;
use crate::log;

pub(super) enum Chunk {
    Mem(Bytes, usize),
    File {
        file: Rc<std::fs::File>,
        offset: u64,
        end: u64,
    },
}

#[derive(Default)]
pub(super) struct Out {
    pub(super) queue: VecDeque<Chunk>,
    /// Small pieces are gathered here before they join the queue.
    pub(super) tail: Vec<u8>,
    pub(super) bytes: usize,
}

impl Out {
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.tail.is_empty()
    }

    pub(super) fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            let t = std::mem::take(&mut self.tail);
            self.queue.push_back(Chunk::Mem(Bytes::from(t), 0));
        }
    }

    pub(super) fn push_bytes(&mut self, b: Bytes) {
        self.bytes += b.len();
        if b.len() <= 1024 {
            self.tail.extend_from_slice(&b);
        } else {
            self.seal_tail();
            self.queue.push_back(Chunk::Mem(b, 0));
        }
    }

    pub(super) fn push_file(&mut self, file: Rc<std::fs::File>, offset: u64, len: u64) {
        self.seal_tail();
        self.bytes += len as usize;
        self.queue.push_back(Chunk::File {
            file,
            offset,
            end: offset + len,
        });
    }
}

/// Writing the queue out.
impl HttpConn {
    /// Writes queued output until done or the socket would block. Err: the connection is dead.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        self.out.seal_tail();
        while self.writable && !self.out.queue.is_empty() {
            let n = match self.out.queue.front() {
                Some(Chunk::File { .. }) => self.send_file(),
                _ => self.write_mem(),
            };
            match n {
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log!(Info, "send() to {} failed ({e})", self.peer);
                    return Err(e);
                }
            }
        }
        if self.out.queue.is_empty() {
            self.out.bytes = 0;
        }
        Ok(())
    }

    fn write_mem(&mut self) -> io::Result<usize> {
        let mut iov: [IoSlice<'_>; 64] = [IoSlice::new(&[]); 64];
        let mut n = 0;
        for c in self.out.queue.iter() {
            match c {
                Chunk::Mem(b, off) if n < iov.len() => {
                    iov[n] = IoSlice::new(&b[*off..]);
                    n += 1;
                }
                _ => break,
            }
        }
        self.stream.write_vectored(&iov[..n])
    }

    fn send_file(&mut self) -> io::Result<usize> {
        let Some(Chunk::File { file, offset, end }) = self.out.queue.front() else {
            return Ok(0);
        };
        let mut off = *offset as libc::off_t;
        let count = (*end - *offset).min(1 << 30) as usize;
        // SAFETY: both descriptors are open; `off` is a valid in/out offset.
        let n =
            unsafe { libc::sendfile(self.stream.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 && count > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            ));
        }
        Ok(n as usize)
    }

    /// Drops `n` written bytes from the front of the queue.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.out.queue.front_mut() else {
                return;
            };
            let left = match front {
                Chunk::Mem(b, off) => {
                    let take = n.min(b.len() - *off);
                    *off += take;
                    n -= take;
                    b.len() - *off
                }
                Chunk::File { offset, end, .. } => {
                    let take = (n as u64).min(*end - *offset);
                    *offset += take;
                    n -= take as usize;
                    (*end - *offset) as usize
                }
            };
            if left == 0 {
                self.out.queue.pop_front();
            }
        }
        while matches!(self.out.queue.front(), Some(Chunk::Mem(b, off)) if *off == b.len()) {
            self.out.queue.pop_front();
        }
    }
}
