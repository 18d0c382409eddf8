//! A connection's output queue: small pieces gathered into one buffer, large ones and file
//! regions queued as they are, written out with writev and sendfile by the connection.

use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

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
