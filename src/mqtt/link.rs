//! A link to a sibling worker as a connection of the event loop: it writes the frames the mesh
//! queued for the sibling, decodes what the sibling sends and hands it to the broker, and turns
//! the sockets siblings pass (`Handed`, `Raw`, `Live`) into client connections of this loop.
//!
//! The socket's unread bytes stay in the kernel and move with it; what the old worker had read
//! and not processed travels in the frame, and so does what it had not yet written (in the
//! session's output), so the client sees one connection that never stopped.

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use mio::net::TcpStream;
use mio::Interest;

use crate::core::event::{Conn, Cx, Next, Posted, Ready};
use crate::core::queue::{IpcChannel, RecvError, SendError};
use crate::log;
use crate::mqtt::broker::Broker;
use crate::mqtt::conn::MqttConn;
use crate::mqtt::mesh::Frame;

/// A link to a sibling as a connection of the event loop.
pub struct PeerConn {
    broker: Rc<RefCell<Broker>>,
    key: usize,
    ch: IpcChannel,
}

/// Adds the link to sibling `slot` of `generation` over `fd` to the event loop (posted: it runs
/// after the current events), and sends the sibling this worker's filters and retained store.
/// `initial`: a link this worker inherited at its start, to a worker that was already running
/// (and may have clients): this worker serves no client before that worker's filters are in.
pub fn adopt(
    broker: &Rc<RefCell<Broker>>,
    posted: &Posted,
    slot: usize,
    generation: u64,
    fd: OwnedFd,
    initial: bool,
) {
    let broker = Rc::clone(broker);
    posted.adopt(
        Box::new(move |cx: &mut Cx<'_>| {
            let mut ch = IpcChannel::from_fd(fd);
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = cx.registry().register(&mut ch, cx.token(), interest) {
                log!(
                    Crit,
                    "epoll_ctl(ADD) for the link to worker slot {slot} failed ({e})"
                );
                return None;
            }
            let key = broker
                .borrow_mut()
                .link_up(slot, generation, cx.token(), initial);
            log!(
                Info,
                "linked to worker slot {slot} (generation {generation})"
            );
            Some(Box::new(PeerConn { broker, key, ch }) as Box<dyn Conn>)
        }),
        false,
    );
}

impl PeerConn {
    fn gone(&mut self, why: &str, now_ms: u64) -> Next {
        let mut b = self.broker.borrow_mut();
        if let Some(l) = b.mesh().link(self.key) {
            log!(Info, "link to worker slot {} closed ({why})", l.slot);
        }
        b.link_down(self.key, now_ms);
        Next::Close
    }

    /// Acts on a frame from the sibling; `Err` if it does not parse.
    fn apply(&mut self, bytes: &[u8], fds: Vec<OwnedFd>, now_ms: u64) -> Result<(), ()> {
        let frame = Frame::decode(bytes, now_ms).map_err(drop)?;
        if !frame.carries_socket() {
            self.broker
                .borrow_mut()
                .sibling_frame(self.key, frame, now_ms);
            return Ok(());
        }
        let fd = fds.into_iter().next().ok_or(())?;
        match frame {
            Frame::Handed { read } => {
                adopt_client(&self.broker, fd, move |c| Some(c?.conn.handed(&read)))
            }
            Frame::Raw { read } => {
                adopt_client(&self.broker, fd, move |c| Some(c?.conn.with_read(&read)))
            }
            Frame::Live {
                keep_alive,
                read,
                session,
            } => self.adopt_live(session, keep_alive, read, fd, now_ms),
            _ => return Err(()),
        }
        Ok(())
    }

    /// A live session and its socket: the session is taken in now, so that the frames behind
    /// this one (messages its old worker sends on) find it; its connection follows when the
    /// loop adopts it.
    fn adopt_live(
        &mut self,
        session: Box<crate::mqtt::session::Session>,
        keep_alive: u16,
        read: Vec<u8>,
        fd: OwnedFd,
        now_ms: u64,
    ) {
        let r = self.broker.borrow_mut().import(*session, true, self.key);
        let broker = Rc::downgrade(&self.broker);
        adopt_client(&self.broker, fd, move |c| {
            let b = broker.upgrade()?;
            let Some(c) = c else {
                b.borrow_mut().arrival_failed(r);
                return None;
            };
            if !b.borrow_mut().attach(r, c.token, now_ms) {
                return None;
            }
            Some(c.conn.live(r, keep_alive, &read))
        });
    }

    /// Writes what the mesh queued for the sibling, until the socket takes no more.
    fn send(&mut self, now_ms: u64) -> Next {
        let mut b = self.broker.borrow_mut();
        let Some(link) = b.link_mut(self.key) else {
            return Next::Close;
        };
        link.woken = false;
        while let Some(out) = link.out.pop_front() {
            let res = match &out.fd {
                Some(fd) => self.ch.send_with_fds(out.msg.clone(), &[fd.as_fd()]),
                None => self.ch.write(out.msg.clone()),
            };
            match res {
                Ok(()) => {}
                Err(SendError::WouldBlock(_)) => {
                    link.out.push_front(out);
                    break;
                }
                Err(e) => {
                    drop(b);
                    return self.gone(&format!("{e:?}"), now_ms);
                }
            }
        }
        match self.ch.flush() {
            Ok(()) => {
                link.backed_up = !link.out.is_empty();
                Next::Keep
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                link.backed_up = true;
                Next::Keep
            }
            Err(e) => {
                drop(b);
                self.gone(&e.to_string(), now_ms)
            }
        }
    }
}

impl Conn for PeerConn {
    fn ready(&mut self, cx: &mut Cx<'_>, _ev: Ready) -> Next {
        let now = cx.now_ms();
        loop {
            match self.ch.try_recv_with_fds() {
                Ok((msg, fds)) => {
                    if self.apply(msg.as_bytes(), fds, now).is_err() {
                        return self.gone("a frame that does not parse", now);
                    }
                }
                Err(RecvError::WouldBlock) => break,
                Err(RecvError::Closed | RecvError::Discarded(_)) => {
                    return self.gone("closed", now)
                }
                Err(e) => return self.gone(&e.to_string(), now),
            }
        }
        self.send(now)
    }

    fn timeout(&mut self, _cx: &mut Cx<'_>) -> Next {
        Next::Keep
    }

    fn drain(&mut self, _cx: &mut Cx<'_>) -> Next {
        // A link outlives the worker's clients: the last thing a stopping worker does is move
        // its sessions over it. The loop drops it when the worker exits.
        Next::Keep
    }
}

/// What the adopting closure gets: the new connection and its token.
pub struct Adopted {
    pub conn: MqttConn,
    pub token: mio::Token,
}

/// Puts a socket passed by a sibling into this worker's loop as a client connection;
/// `finish` gets `None` if the socket cannot join it (the client is gone).
fn adopt_client(
    broker: &Rc<RefCell<Broker>>,
    fd: OwnedFd,
    finish: impl FnOnce(Option<Adopted>) -> Option<MqttConn> + 'static,
) {
    let me = Rc::downgrade(broker);
    let b = broker.borrow();
    let max_packet_size = b.limits().max_packet_size;
    b.posted().adopt(
        Box::new(move |cx: &mut Cx<'_>| {
            let b = me.upgrade()?;
            let mut stream = TcpStream::from_std(std::net::TcpStream::from(fd));
            let peer = match stream.peer_addr() {
                Ok(p) => p,
                Err(e) => {
                    log!(Info, "a handed-over mqtt connection is gone ({e})");
                    return finish(None).map(|c| Box::new(c) as Box<dyn Conn>);
                }
            };
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = cx.registry().register(&mut stream, cx.token(), interest) {
                log!(Error, "epoll_ctl(ADD) for {peer} failed ({e})");
                return finish(None).map(|c| Box::new(c) as Box<dyn Conn>);
            }
            let conn = MqttConn::new(b, stream, peer, max_packet_size, cx.now_ms());
            let c = finish(Some(Adopted {
                conn,
                token: cx.token(),
            }))?;
            Some(Box::new(c) as Box<dyn Conn>)
        }),
        true,
    );
}
