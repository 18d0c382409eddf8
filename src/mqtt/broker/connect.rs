//! CONNECT and the end of a connection (3.1, 3.2, 3.14): credentials, the client identifier's
//! rules, a will on the server's own topics refused, the session to resume or start, a
//! connection of the same client to end (takeover), the will when a connection ends without
//! DISCONNECT, and the clients the authority cuts off.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mio::Token;

use super::publish::server_topic;
use super::{Broker, SessionRef};
use crate::mqtt::auth::{Cut, Login, Op, Refusal, Verdict};
use crate::mqtt::codec::{Connack, ConnackCode, Connect, Packet};
use crate::mqtt::router::ClientKey;
use crate::mqtt::session::{Message, Session};
use crate::mqtt::stats::Drop;

/// What a successful CONNECT gave the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    pub session: SessionRef,
    pub session_present: bool,
    /// Seconds after which silence ends the connection (1.5 x the effective keep-alive), or 0.
    pub keep_alive: u16,
}

/// What became of a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The client is in: the CONNACK is in its session's output.
    Accepted(Connected),
    /// Send CONNACK with this code and close ([MQTT-3.2.2-5]).
    Refused(ConnackCode),
    /// The authority answers later, for this ticket: the connection waits, reading nothing,
    /// until it is woken and [`Broker::login_answer`] has the answer.
    Waiting(u64),
}

/// CONNECTs whose authority answers later: the connection waiting for each ticket, and the
/// answers not yet picked up.
#[derive(Default)]
pub(super) struct Logins {
    next: u64,
    waiting: HashMap<u64, Token>,
    answered: HashMap<u64, Result<(), Refusal>>,
}

impl Broker {
    /// CONNECT on connection `token` (3.1.4): the client identifier's rules, then the
    /// credentials; see [`Broker::admit`] for the rest. An empty client identifier is replaced
    /// in `c` by the one made up for it.
    pub fn connect(&mut self, c: &mut Connect, token: Token, now_ms: u64) -> Admission {
        if let Err(code) = self.client_identifier(c) {
            return Admission::Refused(code);
        }
        // A will on the server's own topics would be a client publishing there: refused as
        // mosquitto refuses a will its ACL denies, with 0x05.
        if c.will.as_ref().is_some_and(|w| server_topic(&w.topic)) {
            return Admission::Refused(self.refused(Refusal::NotAuthorised));
        }
        self.logins.next += 1;
        let ticket = self.logins.next;
        let login = Login {
            client_id: &c.client_id,
            username: c.username.as_deref(),
            password: c.password.as_deref(),
        };
        match self.auth.connect(&login, ticket) {
            Verdict::Allow => Admission::Accepted(self.admit(c, token, now_ms)),
            Verdict::Refuse(r) => Admission::Refused(self.refused(r)),
            Verdict::Later => {
                self.logins.waiting.insert(ticket, token);
                Admission::Waiting(ticket)
            }
        }
    }

    /// The CONNACK code of a refusal, counted.
    pub fn refused(&self, r: Refusal) -> ConnackCode {
        self.stats.refused();
        match r {
            Refusal::IdentifierRejected => ConnackCode::IdentifierRejected,
            Refusal::BadCredentials => ConnackCode::BadUsernameOrPassword,
            Refusal::NotAuthorised => ConnackCode::NotAuthorized,
        }
    }

    /// The authority's late answer to the CONNECT of `ticket`, once it came.
    pub fn login_answer(&mut self, ticket: u64) -> Option<Result<(), Refusal>> {
        self.logins.answered.remove(&ticket)
    }

    /// The connection waiting for `ticket` is gone: its answer, if it comes, goes nowhere.
    pub fn login_abandoned(&mut self, ticket: u64) {
        self.logins.waiting.remove(&ticket);
        self.logins.answered.remove(&ticket);
    }

    /// Picks up the authority's late answers and wakes the connections waiting for them, then
    /// its cut-offs.
    pub(super) fn collect_verdicts(&mut self) {
        if !self.verdicts.pending() {
            return;
        }
        for (ticket, verdict) in self.verdicts.take() {
            if let Some(token) = self.logins.waiting.remove(&ticket) {
                self.logins.answered.insert(ticket, verdict);
                self.posted.post(token);
            }
        }
        let cuts = self.verdicts.take_cuts();
        if !cuts.is_empty() {
            self.cut_off(&cuts);
        }
    }

    /// Cuts off the clients `cuts` name (see [`crate::mqtt::auth::Verdicts::cut_off`]): each
    /// connection ends without its will and each session is discarded. Returns how many
    /// sessions went. The user names of a turn's cuts are matched in one pass over the
    /// sessions (a truncated sensor table cuts every device id at once).
    pub fn cut_off(&mut self, cuts: &[Cut]) -> usize {
        let mut users = HashSet::new();
        let mut sids = Vec::new();
        for cut in cuts {
            match cut {
                Cut::Client(id) => sids.extend(self.by_id.get(id.as_str()).copied()),
                Cut::User(name) => {
                    users.insert(name.as_str());
                }
            }
        }
        if !users.is_empty() {
            sids.extend(
                self.sessions
                    .iter()
                    .filter(|(_, s)| s.username.as_deref().is_some_and(|u| users.contains(u)))
                    .map(|(sid, _)| sid),
            );
        }
        sids.sort_unstable();
        sids.dedup();
        for &sid in &sids {
            self.unplug(sid);
            self.discard(sid);
        }
        sids.len()
    }

    /// The connection of session `sid`, if any, is to end without its will: it is woken and
    /// finds it no longer serves the session.
    fn unplug(&mut self, sid: usize) {
        let s = &mut self.sessions[sid];
        if let Some(t) = s.conn.take() {
            s.will = None;
            s.woken = false;
            s.out.clear();
            s.held.clear();
            self.posted.post(t);
            self.stats.connected(false);
        }
    }

    /// A CONNECT whose credentials the authority accepted: the session to resume or start, a
    /// connection of the same client to end. The CONNACK is in the session's output.
    pub fn admit(&mut self, c: &mut Connect, token: Token, now_ms: u64) -> Connected {
        let client_id: Arc<str> = c.client_id.as_str().into();
        let keep_alive = match c.keep_alive {
            0 => 0,
            k => k.min(self.limits.max_keepalive),
        };
        let present = self.take_over(&client_id, c.clean_session);
        let sid = match self.by_id.get(&client_id) {
            Some(&sid) => sid,
            None => self.insert(Session::new(Arc::clone(&client_id), c.clean_session)),
        };
        let s = &mut self.sessions[sid];
        s.clean = c.clean_session;
        s.username = c.username.take().map(Into::into);
        s.will = c.will.take().map(Box::new);
        s.conn = Some(token);
        s.woken = false;
        // CONNACK: session present only for a resumed session ([MQTT-3.2.2-1],
        // [MQTT-3.2.2-2], [MQTT-3.2.2-3]).
        s.write(&Packet::Connack(Connack {
            session_present: present,
            code: ConnackCode::Accepted,
        }));
        if present {
            s.resend_inflight(now_ms);
        }
        let r = SessionRef {
            sid,
            epoch: s.epoch,
        };
        self.pump(sid, now_ms);
        self.stats.connected(true);
        Connected {
            session: r,
            session_present: present,
            keep_alive,
        }
    }

    /// The client identifier of a CONNECT: its own, or one made up for an empty one.
    fn client_identifier(&mut self, c: &mut Connect) -> Result<(), ConnackCode> {
        if !c.client_id.is_empty() {
            return Ok(());
        }
        // [MQTT-3.1.3-7], [MQTT-3.1.3-8]: a zero-length identifier only with a clean session,
        // and then the server makes one up ([MQTT-3.1.3-6]).
        if !c.clean_session {
            self.stats.refused();
            return Err(ConnackCode::IdentifierRejected);
        }
        self.anonymous += 1;
        c.client_id = format!(
            "auto-{}-{}-{}",
            std::process::id(),
            self.slot,
            self.anonymous
        );
        Ok(())
    }

    /// [MQTT-3.1.4-2]: a connection of the same client ends; its session is resumed (true) or
    /// discarded ([MQTT-3.1.2-4], [MQTT-3.1.2-6]).
    fn take_over(&mut self, client_id: &str, clean: bool) -> bool {
        let Some(&sid) = self.by_id.get(client_id) else {
            return false;
        };
        self.unplug(sid);
        if clean || self.sessions[sid].clean {
            self.discard(sid);
            return false;
        }
        true
    }

    /// Stores a session under a new epoch, with its subscriptions.
    pub(super) fn insert(&mut self, mut s: Session) -> usize {
        s.epoch = self.next_epoch;
        self.next_epoch += 1;
        let id = Arc::clone(&s.client_id);
        let subs = std::mem::take(&mut s.subs);
        let sid = self.sessions.insert(s);
        self.by_id.insert(id, sid);
        for (f, q) in subs {
            self.subscribe_one(sid, &f, q);
        }
        self.stats.sessions(self.sessions.len());
        sid
    }

    /// Ends a session: its subscriptions go, and so do filters no one else here uses.
    pub(super) fn discard(&mut self, sid: usize) {
        let s = self.sessions.remove(sid);
        self.by_id.remove(&s.client_id);
        for f in self.tree.remove_client(ClientKey(sid as u32)) {
            self.mesh.unsubscribe(&f);
        }
        self.tickets.forget_session(sid);
        self.stats.sessions(self.sessions.len());
    }

    /// The connection of `r` ended. `will`: it ended without DISCONNECT, so the will is
    /// published ([MQTT-3.1.2-8]); not after DISCONNECT ([MQTT-3.1.2-10]) or when the worker
    /// hands the client to a sibling. A clean session ends with its connection
    /// ([MQTT-3.1.2-6]); another stays for the client's return ([MQTT-3.1.2-4]).
    pub fn disconnected(&mut self, r: SessionRef, token: Token, will: bool, now_ms: u64) {
        if !self.serves(r, token) {
            return;
        }
        self.stats.connected(false);
        let s = &mut self.sessions[r.sid];
        s.conn = None;
        s.woken = false;
        s.out = Vec::new();
        s.held.clear();
        let last_will = s.will.take();
        let (id, user) = (Arc::clone(&s.client_id), s.username.clone());
        if s.clean {
            self.discard(r.sid);
        }
        let (true, Some(w)) = (will, last_will) else {
            return;
        };
        if !self
            .auth
            .allows(&id, user.as_deref(), Op::Publish, &w.topic)
        {
            self.stats.dropped(Drop::NotAuthorised);
            return;
        }
        let msg = Message {
            topic: w.topic.into(),
            payload: w.message,
            qos: w.qos,
            retain: w.retain,
        };
        self.publish_local(&msg, now_ms);
    }
}
