//! Moving clients between workers: a new connection to the worker that owns its client
//! identifier, a live connection with its session from a stopping worker to its successor, and
//! a persistent session whose client is away.
//!
//! Frames (after the kind byte), with the socket attached as `SCM_RIGHTS` where there is one:
//! - `C` read bytes: a connection that sent its CONNECT to the wrong worker. The bytes are the
//!   CONNECT (re-encoded) and whatever the client sent after it.
//! - `H` keep-alive (u16), read bytes, session: a live connection and its session.
//! - `O` session: a session without a connection.
//!
//! The socket's unread bytes stay in the kernel and move with it; what the old worker had read
//! and not processed travels in the frame, and so does what it had not yet written (in the
//! session's output), so the client sees one connection that never stopped.

use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use mio::net::TcpStream;
use mio::Interest;

use crate::core::event::{Conn, Cx};
use crate::core::queue::Msg;
use crate::log;
use crate::mqtt::broker::Broker;
use crate::mqtt::conn::MqttConn;
use crate::mqtt::mesh::Frame;
use crate::mqtt::session::wire::{self, Reader, Writer};
use crate::mqtt::session::Session;

/// The largest frame the ipc transport carries, less room for the headers.
const MAX_SESSION_FRAME: usize = crate::core::queue::ipc::MAX_FRAME - 1024;

pub fn connect_frame(read: &[u8], fd: OwnedFd) -> Frame {
    Frame {
        msg: Msg::from_parts(&[b"C", read]),
        fd: Some(fd),
    }
}

pub fn live_frame(s: &Session, keep_alive: u16, read: &[u8], fd: OwnedFd) -> Frame {
    let mut w = Writer(vec![b'H']);
    w.u16(keep_alive);
    w.bytes(read);
    session(s, &mut w);
    Frame {
        msg: Msg::new(&w.0),
        fd: Some(fd),
    }
}

pub fn offline_frame(s: &Session) -> Frame {
    let mut w = Writer(vec![b'O']);
    session(s, &mut w);
    Frame {
        msg: Msg::new(&w.0),
        fd: None,
    }
}

/// The session, then its queued messages as many as fit in one frame (the rest are dropped and
/// logged: a queue of over 16 MiB is far past `max_queued` of sensor-sized messages).
fn session(s: &Session, w: &mut Writer) {
    wire::encode_session(s, w);
    let mut n = 0;
    let at = w.0.len();
    w.u32(0);
    for m in &s.queue {
        if w.0.len() + m.topic.len() + m.payload.len() + 16 > MAX_SESSION_FRAME {
            log!(
                Warn,
                "mqtt session {}: {} queued message(s) too many to move, dropped",
                s.client_id,
                s.queue.len() - n
            );
            break;
        }
        w.message(m);
        n += 1;
    }
    w.0[at..at + 4].copy_from_slice(&(n as u32).to_le_bytes());
}

fn read_session(r: &mut Reader<'_>, now_ms: u64) -> Option<Session> {
    let mut s = wire::decode_session(r, now_ms).ok()?;
    for _ in 0..r.u32().ok()? {
        s.queue.push_back(r.message().ok()?);
    }
    Some(s)
}

/// Acts on a handoff frame from sibling `key`; `None` if it does not parse.
pub fn apply(
    broker: &mut Broker,
    _key: usize,
    kind: u8,
    body: &[u8],
    fds: Vec<OwnedFd>,
    now_ms: u64,
) -> Option<()> {
    match kind {
        b'C' => {
            let fd = fds.into_iter().next()?;
            let read = body.to_vec();
            adopt(broker, fd, move |c| Some(c.handed(&read)));
        }
        b'H' => {
            let fd = fds.into_iter().next()?;
            let mut r = Reader(body);
            let keep_alive = r.u16().ok()?;
            let read = r.bytes().ok()?.to_vec();
            let s = read_session(&mut r, now_ms)?;
            let me = broker.me.clone();
            adopt(broker, fd, move |c| {
                let b = me.upgrade()?;
                let token = c.token;
                let r = b.borrow_mut().import(s, Some(token), now_ms);
                Some(c.conn.live(r, keep_alive, &read))
            });
        }
        b'O' => {
            let s = read_session(&mut Reader(body), now_ms)?;
            broker.import(s, None, now_ms);
        }
        _ => return None,
    }
    Some(())
}

/// What the adopting closure gets: the new connection and its token.
pub struct Adopted {
    pub conn: MqttConn,
    pub token: mio::Token,
}

impl Adopted {
    fn handed(self, read: &[u8]) -> MqttConn {
        self.conn.handed(read)
    }
}

/// Puts a socket passed by a sibling into this worker's loop as a client connection.
fn adopt(broker: &Broker, fd: OwnedFd, finish: impl FnOnce(Adopted) -> Option<MqttConn> + 'static) {
    let me = broker.me.clone();
    let max_packet_size = broker.limits.max_packet_size;
    broker.posted().adopt(
        Box::new(move |cx: &mut Cx<'_>| {
            let b: Rc<RefCell<Broker>> = me.upgrade()?;
            let mut stream = TcpStream::from_std(std::net::TcpStream::from(fd));
            let peer = match stream.peer_addr() {
                Ok(p) => p,
                Err(e) => {
                    log!(Info, "a handed-over mqtt connection is gone ({e})");
                    return None;
                }
            };
            if let Err(e) = cx.registry().register(
                &mut stream,
                cx.token(),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log!(Error, "epoll_ctl(ADD) for {peer} failed ({e})");
                return None;
            }
            let conn = MqttConn::new(b, stream, peer, max_packet_size, cx.now_ms());
            let c = finish(Adopted {
                conn,
                token: cx.token(),
            })?;
            Some(Box::new(c) as Box<dyn Conn>)
        }),
        true,
    );
}
