//! Sessions moving between the workers of a node: to the worker that owns a client identifier
//! when a new one joins, and from a stopping worker to its successors on a reload. A live
//! session moves with its connection's socket; one whose client is away moves alone. The
//! session that leaves becomes a stub that sends on what its subscriptions still route here
//! until every origin has switched (`switch.rs`).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use mio::Token;

use super::publish::holds_acks;
use super::{Broker, SessionRef, Via, HERE};
use crate::log;
use crate::mqtt::mesh::Frame;
use crate::mqtt::router::ClientKey;
use crate::mqtt::session::{Message, Session};

/// Longest a stopping worker waits for the newer workers to be linked before it moves its
/// clients anyway.
pub const MESH_WAIT_MS: u64 = 1000;

/// What keeps a live connection from reading this turn ([`Broker::hold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Nothing: it reads.
    Reads,
    /// A newer connection of the client took the session over ([MQTT-3.1.4-2]).
    TakenOver,
    /// The session is to move, or the server stops, once the acknowledgements the ingest hook
    /// holds for it are sent: until then it only writes.
    Acks,
    /// The session moves to the sibling on this link, with the socket.
    Move(usize),
    /// The server stops and no newer worker takes the client: the session ends.
    Quit,
    /// Just moved here: what the client sends waits in the socket until its earlier messages
    /// are past every sibling; the connection is woken then.
    Fenced,
}

/// Stubs and the stopping worker's state.
#[derive(Default)]
pub(super) struct Moves {
    /// Stubs of sessions moved to a sibling, by client id.
    pub(super) moved: HashMap<Arc<str>, usize>,
    /// The worker is stopping and its sessions wait for the newer workers to be linked.
    drain_since: Option<u64>,
}

impl Broker {
    /// The sibling that serves client `id` (see [`crate::mqtt::mesh::Mesh::owner`]); `None`:
    /// this worker.
    pub fn owner(&self, id: &str) -> Option<usize> {
        self.mesh.owner(id)
    }

    /// Passes a connection's socket to sibling `link` in `frame` (`Handed` or `Raw`).
    pub fn hand_over(&mut self, link: usize, frame: &Frame, fd: OwnedFd) {
        if self.mesh.push_with_fd(link, frame, fd) && matches!(frame, Frame::Handed { .. }) {
            self.stats.handed_over();
        }
    }

    /// Moves the session of `r` and its connection's socket to sibling `link`: `read` is what
    /// the connection read and did not process. False if the session is gone.
    pub fn move_live(
        &mut self,
        r: SessionRef,
        link: usize,
        keep_alive: u16,
        read: &[u8],
        fd: OwnedFd,
        now_ms: u64,
    ) -> bool {
        let Some(session) = self.export(r, link, now_ms) else {
            return false;
        };
        let id = Arc::clone(&session.client_id);
        let frame = Frame::Live {
            keep_alive,
            read: read.to_vec(),
            session: Box::new(session),
        };
        if !self.mesh.push_with_fd(link, &frame, fd) {
            log!(Warn, "mqtt client {id}: session lost: sibling gone");
        }
        true
    }

    /// What keeps connection `token` of session `r` from reading this turn (`quitting`: the
    /// server is stopping and the connection with it). Looks the session up once: the
    /// connection asks on every turn.
    pub fn hold(&mut self, r: SessionRef, token: Token, quitting: bool) -> Hold {
        let Some(s) = self.session(r).filter(|s| s.conn == Some(token)) else {
            return Hold::TakenOver;
        };
        if s.move_to.is_some() || quitting {
            return match (holds_acks(s), s.move_to) {
                (true, _) => Hold::Acks,
                (false, Some(link)) => Hold::Move(link),
                (false, None) => Hold::Quit,
            };
        }
        if !self.fencing() {
            return Hold::Reads;
        }
        let id = Arc::clone(&s.client_id);
        if self.fenced(&id, token) {
            Hold::Fenced
        } else {
            Hold::Reads
        }
    }

    /// Whether newer workers run beside this one, to take its clients when it stops.
    pub fn has_successors(&self) -> bool {
        self.mesh.has_successors()
    }

    /// A newer worker for a connection that has not named its client yet.
    pub fn any_successor(&self) -> Option<usize> {
        self.mesh.any_successor()
    }

    /// A link to the sibling in `slot` is up, served by the loop's connection `token`: the
    /// sibling is sent this worker's filters and retained store, and the clients it now owns.
    /// `initial`: the sibling was running when this worker started (see
    /// [`Broker::routing_ready`]). Returns the link's key.
    pub fn link_up(&mut self, slot: usize, generation: u64, token: Token, initial: bool) -> usize {
        let snapshot = self.snapshot();
        let key = self.mesh.add(slot, generation, Some(token), initial);
        for f in &snapshot {
            self.mesh.push(key, f);
        }
        // The end of the snapshot: the sibling has every filter of this worker.
        self.mesh.push(key, &Frame::SnapshotEnd);
        self.mesh.announce();
        self.joined(key);
        key
    }

    /// The link `key` closed.
    pub fn link_down(&mut self, key: usize, now_ms: u64) {
        self.left(key, now_ms);
        self.mesh.remove(key);
        self.routing_ready_check();
    }

    /// The link `key`, to write what is queued for it.
    pub fn link_mut(&mut self, key: usize) -> Option<&mut crate::mqtt::mesh::Link> {
        self.mesh.link_mut(key)
    }

    /// Sibling `key` joined. When it is of the newest generation (a worker started or
    /// restarted beside this one), the clients the owner map now gives it move there: offline
    /// sessions at once, live ones through their connections.
    fn joined(&mut self, key: usize) {
        let newest = self.mesh.newest();
        if self.mesh.link(key).is_none_or(|l| l.generation != newest)
            || self.mesh.generation != newest
        {
            return;
        }
        let owned: Vec<usize> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.moved_to.is_none() && self.mesh.owner(&s.client_id) == Some(key))
            .map(|(sid, _)| sid)
            .collect();
        for sid in owned {
            self.send_away(sid, key);
        }
    }

    /// Sibling `key` is gone: nothing moves to it any more, no SUBACK waits for it, no stub or
    /// switch waits for its word.
    fn left(&mut self, key: usize, now_ms: u64) {
        for (_, s) in self.sessions.iter_mut() {
            if s.move_to == Some(key) {
                s.move_to = None;
            }
        }
        self.barriers_link_gone(key, now_ms);
        self.switch_link_gone(key, now_ms);
    }

    /// The worker is stopping. With newer workers to take its clients, every session moves to
    /// its owner among them (live ones with their connections), once the newer workers are
    /// linked to one another: until then one of them could not yet route to another, and a
    /// message for a moved client could fall between them. Without newer workers (the server is
    /// stopping) the connections end themselves.
    pub fn drain(&mut self, now_ms: u64) {
        if self.mesh.has_successors() {
            self.moves.drain_since = Some(now_ms);
            self.move_when_linked(now_ms);
        }
    }

    /// Moves the sessions of a stopping worker once the newer workers are linked (or after
    /// `MESH_WAIT_MS`, linked or not).
    pub(super) fn move_when_linked(&mut self, now_ms: u64) {
        let Some(since) = self.moves.drain_since else {
            return;
        };
        if !self.mesh.complete() && now_ms < since + MESH_WAIT_MS {
            return;
        }
        if !self.mesh.complete() {
            log!(Warn, "moving clients before the new workers are all linked");
        }
        self.moves.drain_since = None;
        let moves: Vec<(usize, usize)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.moved_to.is_none())
            .filter_map(|(sid, s)| Some((sid, self.mesh.successor(&s.client_id)?)))
            .collect();
        for (sid, key) in moves {
            self.send_away(sid, key);
        }
    }

    fn send_away(&mut self, sid: usize, key: usize) {
        let s = &mut self.sessions[sid];
        if s.conn.is_some() {
            s.move_to = Some(key);
            s.woken = false;
            self.wake(sid);
            return;
        }
        let r = SessionRef {
            sid,
            epoch: s.epoch,
        };
        if let Some(s) = self.export(r, key, 0) {
            self.mesh.push(key, &Frame::Offline(Box::new(s)));
        }
    }

    /// Takes a session out of this worker, to move it to a sibling (with its connection, if
    /// one still serves it). Its subscriptions leave the tree; nothing is published.
    fn export(&mut self, r: SessionRef, to: usize, now_ms: u64) -> Option<Session> {
        self.session(r)?;
        // A stub stays in the session's place, with its subscriptions, and sends on what they
        // route to the sibling until every origin has switched to the sibling (see `switch`).
        let mut stub = Session::new(Arc::clone(&self.sessions[r.sid].client_id), true);
        stub.epoch = self.next_epoch;
        self.next_epoch += 1;
        stub.moved_to = Some(to);
        stub.relay_pending = self.mesh.links().map(|(k, _)| k).collect();
        stub.relay_pending.push(HERE);
        self.release_all(r.sid, now_ms);
        let mut s = std::mem::replace(&mut self.sessions[r.sid], stub);
        s.subs = self.tree.filters_of(ClientKey(r.sid as u32));
        self.by_id.remove(&s.client_id);
        self.moves.moved.insert(Arc::clone(&s.client_id), r.sid);
        self.tickets.forget_session(r.sid);
        if s.conn.take().is_some() {
            self.stats.connected(false);
        }
        self.stats.handed_over();
        self.fence(&s.client_id, to);
        Some(s)
    }

    pub(super) fn drop_stub(&mut self, sid: usize) {
        self.sessions.remove(sid);
        for f in self.tree.remove_client(ClientKey(sid as u32)) {
            self.mesh.unsubscribe(&f);
        }
        self.stats.sessions(self.sessions.len());
    }

    /// Work a stopping worker must finish before it exits: frames waiting for a sibling,
    /// stubs waiting for their siblings' word, and messages the ingest hook has not stored.
    pub fn busy(&self) -> bool {
        self.mesh.busy()
            || !self.moves.moved.is_empty()
            || self.moves.drain_since.is_some()
            || self.hook.busy()
    }

    /// A message a stub sent on: delivered to the session it stood for.
    pub(super) fn deliver_moved(&mut self, id: &str, msg: &Message, now_ms: u64) {
        if let Some(&sid) = self.by_id.get(id) {
            self.deliver(sid, msg, msg.qos, msg.retain, now_ms, Via::Direct);
        }
    }

    /// Takes in a session a sibling moved here. `live`: its connection follows ([`attach`]),
    /// and goes on where the other worker left off; a session of the same client already here
    /// is replaced (the newer connection wins, as a takeover would decide).
    ///
    /// [`attach`]: Broker::attach
    pub fn import(&mut self, mut s: Session, live: bool, from: usize) -> SessionRef {
        // Until the connection joins this worker's loop, what is routed to the session waits
        // in its output as if it were connected.
        s.conn = None;
        s.arriving = live;
        s.woken = false;
        s.move_to = None;
        s.moved_to = None;
        super::publish::flush_held(&mut s);
        if let Some(&old) = self.by_id.get(&s.client_id) {
            // A session of the same client here is older than one that moved with its
            // connection; a moved offline session is older than a connected one here.
            if !live && (self.sessions[old].conn.is_some() || self.sessions[old].arriving) {
                self.refuse_switch(&s.client_id, from);
                return SessionRef {
                    sid: old,
                    epoch: self.sessions[old].epoch,
                };
            }
            if let Some(t) = self.sessions[old].conn.take() {
                self.stats.connected(false);
                self.posted.post(t);
            }
            self.discard(old);
        }
        let sid = self.insert(s);
        self.start_switch(sid, from);
        SessionRef {
            sid,
            epoch: self.sessions[sid].epoch,
        }
    }

    /// The connection of a session that arrived live was lost on the way: the session stays
    /// as after any lost connection (a clean one ends; no will, the client did nothing wrong).
    pub fn arrival_failed(&mut self, r: SessionRef) {
        let Some(s) = self.session_mut(r) else {
            return;
        };
        s.arriving = false;
        s.out = Vec::new();
        s.will = None;
        if s.clean {
            self.discard(r.sid);
        }
    }

    /// The connection of a session that arrived live is in the loop now, under `token`.
    /// False if the session is gone meanwhile (taken over by a newer connection).
    pub fn attach(&mut self, r: SessionRef, token: Token, now_ms: u64) -> bool {
        let Some(s) = self.session_mut(r) else {
            return false;
        };
        if !s.arriving {
            return false;
        }
        s.arriving = false;
        s.conn = Some(token);
        self.stats.connected(true);
        self.pump(r.sid, now_ms);
        self.wake(r.sid);
        true
    }
}
