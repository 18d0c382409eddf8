//! Moving a session between workers without losing, repeating or reordering a message.
//!
//! While a session moves from worker O to worker N, a message for it can take two paths: to O,
//! whose stub sends it on to N (`D`), or straight to N once the publishing worker (the origin)
//! has N's route. Markers make the switch exact, per origin, in the manner of a snapshot
//! protocol over FIFO links:
//!
//! 1. N takes the session in, forwards its filters (`S`), then sends every sibling `W` (client,
//!    O's slot).
//! 2. An origin P, on `W` (so after N's filters): sends `J` to N (what P sends N directly from
//!    now on is new) and `K` to O (P sends O nothing more for this client). O itself, on `W`,
//!    stops relaying its own clients' messages and sends N `J`; N's own clients are switched by
//!    the same `W` at O.
//! 3. O relays what the stub routes from an origin until that origin's `K`, then sends N `k`
//!    (origin): everything O will relay from it is ahead of `k` on the O->N link.
//! 4. N delivers what O relays at once; discards what P sent it directly before `J` (O relays
//!    the same message); holds what P sent directly after `J` until `k` for P, then delivers
//!    the held messages in order. N's own clients are held from the start until `k` for N.
//!
//! The stub goes when every origin's `K` is in; the switch ends when every origin has `J` and
//! `k`. A link that closes counts as both (nothing more can come over it).
//!
//! A publisher that moves is the other half: what it published on O may still be on its way
//! from O to a subscriber's worker when it publishes on N. So O sends every other sibling `F`
//! (after whatever it forwarded for the client) and N the list of them (`f`); each answers N
//! `G`, and N reads the client's next packets only when all have. A `G` may overtake the `f`
//! (they come over different links) and is remembered.

use std::collections::HashMap;
use std::sync::Arc;

use mio::Token;

use super::Broker;
use crate::mqtt::codec::QoS;
use crate::mqtt::mesh::Frame;
use crate::mqtt::session::{Message, OriginState, Switch};

/// Marks a gate set up by `f` (one without it only remembers `G`s that came first).
const GATE_OPEN: usize = usize::MAX;

/// This worker as an origin of messages (its own clients), beside the sibling links' keys.
pub const HERE: usize = usize::MAX;

/// How a message reaches a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Routed: published by a client here (`HERE`) or forwarded by the sibling on link `k`.
    Route(usize),
    /// Not subject to a switch: retained on subscribe, sent on by a stub, released from hold.
    Direct,
}

/// Clients moved here whose earlier messages may still be on their way from the old worker
/// through siblings: the slots yet to say they are past them, and the connections waiting.
#[derive(Default)]
pub(super) struct Fences {
    gates: HashMap<Arc<str>, (Vec<u16>, Vec<Token>)>,
}

impl Broker {
    /// A frame of the switch and fence protocols from the sibling on link `key`.
    pub(super) fn switch_frame(&mut self, key: usize, frame: Frame, now_ms: u64) {
        match frame {
            Frame::Switch {
                client_id,
                old_slot,
            } => self.on_switch(key, &client_id, old_slot),
            Frame::Direct {
                client_id,
                no_relay,
            } => self.on_direct_from(key, &client_id, no_relay, now_ms),
            Frame::OriginSwitched { client_id } => self.on_origin_switched(key, &client_id),
            Frame::RelayedAll {
                client_id,
                origin_slot,
            } => self.on_relayed_all(&client_id, origin_slot, now_ms),
            Frame::Fence {
                client_id,
                new_slot,
            } => self.on_fence(&client_id, new_slot),
            Frame::FenceList { client_id, slots } => self.on_fence_list(&client_id, &slots),
            Frame::FencePassed { client_id } => self.on_fence_passed(key, &client_id),
            _ => {}
        }
    }

    /// The link key of the sibling in `slot`, or `HERE` for this worker.
    fn origin_of_slot(&self, slot: u16) -> Option<usize> {
        if usize::from(slot) == self.mesh.slot {
            return Some(HERE);
        }
        self.mesh
            .links()
            .find(|(_, l)| l.slot == usize::from(slot))
            .map(|(k, _)| k)
    }

    /// On N, after taking in a session from the sibling on link `from`.
    pub(super) fn start_switch(&mut self, sid: usize, from: usize) {
        let Some(o_slot) = self.mesh.link(from).map(|l| l.slot as u16) else {
            return;
        };
        let keys: Vec<usize> = self.mesh.links().map(|(k, _)| k).collect();
        let mut sw = Switch {
            from: Some(from),
            ..Switch::default()
        };
        for &k in &keys {
            sw.origins.insert(k, OriginState::default());
        }
        sw.origins.insert(
            HERE,
            OriginState {
                j: true,
                ..OriginState::default()
            },
        );
        let id = Arc::clone(&self.sessions[sid].client_id);
        self.sessions[sid].switch = Some(Box::new(sw));
        self.mesh.broadcast(&Frame::Switch {
            client_id: (*id).into(),
            old_slot: o_slot,
        });
    }

    /// On N: a moved offline session lost to a connected one here; O's stub needs no switch.
    pub(super) fn refuse_switch(&mut self, id: &str, from: usize) {
        let Some(o_slot) = self.mesh.link(from).map(|l| l.slot as u16) else {
            return;
        };
        self.mesh.broadcast(&Frame::Switch {
            client_id: id.into(),
            old_slot: o_slot,
        });
    }

    /// A stub on O routes a message: sent on while its origin has not switched.
    pub(super) fn relay(&mut self, sid: usize, msg: &Message, qos: QoS, retain: bool, via: Via) {
        let s = &self.sessions[sid];
        let (Via::Route(origin), Some(to)) = (via, s.moved_to) else {
            return;
        };
        if s.relay_pending.contains(&origin) {
            let mut msg = msg.clone();
            msg.qos = qos;
            msg.retain = retain;
            let frame = Frame::Directed {
                client_id: (*s.client_id).into(),
                msg,
            };
            self.mesh.push(to, &frame);
        }
    }

    /// On N: whether a routed message for a switching session is taken (discarded or held).
    pub(super) fn switch_gate(
        &mut self,
        sid: usize,
        msg: &Message,
        qos: QoS,
        retain: bool,
        via: Via,
    ) -> bool {
        let Via::Route(origin) = via else {
            return false;
        };
        let Some(sw) = self.sessions[sid].switch.as_mut() else {
            return false;
        };
        let Some(st) = sw.origins.get_mut(&origin) else {
            return false;
        };
        if !st.j {
            // Sent here before the origin switched: the old worker relays the same message.
            return true;
        }
        if !st.k {
            st.held.push_back((msg.clone(), qos, retain));
            return true;
        }
        false
    }

    /// `W` from the sibling on link `key`: it took client `id` from the worker in `o_slot`.
    fn on_switch(&mut self, key: usize, id: &str, o_slot: u16) {
        if usize::from(o_slot) == self.mesh.slot {
            // The old worker: its own clients switch now, and so do the new worker's.
            self.mesh.push(key, &direct(id, false));
            if let Some(n_slot) = self.mesh.link(key).map(|l| l.slot as u16) {
                let k = Frame::RelayedAll {
                    client_id: id.into(),
                    origin_slot: n_slot,
                };
                self.mesh.push(key, &k);
            }
            self.stopped_relaying(id, HERE);
            self.stopped_relaying(id, key);
            return;
        }
        match self.origin_of_slot(o_slot) {
            Some(o) if o != HERE => {
                let k = Frame::OriginSwitched {
                    client_id: id.into(),
                };
                self.mesh.push(o, &k);
                self.mesh.push(key, &direct(id, false));
            }
            // No link to the old worker: nothing of this worker's is on the way through it.
            _ => {
                self.mesh.push(key, &direct(id, true));
            }
        }
    }

    /// `K` from the sibling on link `key`: it sends this stub's client nothing more here.
    fn on_origin_switched(&mut self, key: usize, id: &str) {
        let Some(&sid) = self.moves.moved.get(id) else {
            return;
        };
        let (Some(to), Some(slot)) = (
            self.sessions[sid].moved_to,
            self.mesh.link(key).map(|l| l.slot as u16),
        ) else {
            return;
        };
        let k = Frame::RelayedAll {
            client_id: id.into(),
            origin_slot: slot,
        };
        self.mesh.push(to, &k);
        self.stopped_relaying(id, key);
    }

    fn stopped_relaying(&mut self, id: &str, origin: usize) {
        let Some(&sid) = self.moves.moved.get(id) else {
            return;
        };
        let s = &mut self.sessions[sid];
        s.relay_pending.retain(|&o| o != origin);
        if s.relay_pending.is_empty() {
            self.moves.moved.remove(id);
            self.drop_stub(sid);
        }
    }

    /// `J` on link `key`: the origin's direct messages for `id` are new from here on;
    /// `no_relay`: nothing of it comes through the old worker either.
    fn on_direct_from(&mut self, key: usize, id: &str, no_relay: bool, now_ms: u64) {
        let Some(&sid) = self.by_id.get(id) else {
            return;
        };
        // The old worker's own `J`: what it relayed of its own clients is already ahead of it.
        let old = self.is_old_worker(sid, key);
        let Some(st) = self.origin_state(sid, key) else {
            return;
        };
        st.j = true;
        st.k |= no_relay || old;
        self.settle(sid, now_ms);
    }

    /// What session `sid`'s switch knows of `origin`, while it switches.
    fn origin_state(&mut self, sid: usize, origin: usize) -> Option<&mut OriginState> {
        self.sessions[sid].switch.as_mut()?.origins.get_mut(&origin)
    }

    fn is_old_worker(&self, sid: usize, key: usize) -> bool {
        self.sessions[sid]
            .switch
            .as_ref()
            .is_some_and(|sw| sw.from == Some(key))
    }

    /// `k` from the old worker: it has sent on everything it will from the origin in `slot`.
    fn on_relayed_all(&mut self, id: &str, slot: u16, now_ms: u64) {
        let Some(&sid) = self.by_id.get(id) else {
            return;
        };
        let Some(origin) = self.origin_of_slot(slot) else {
            return;
        };
        if let Some(st) = self.origin_state(sid, origin) {
            st.k = true;
        }
        self.settle(sid, now_ms);
    }

    /// Delivers what waits from origins that are done; ends the switch when all are.
    fn settle(&mut self, sid: usize, now_ms: u64) {
        loop {
            let Some(sw) = self.sessions[sid].switch.as_mut() else {
                return;
            };
            let ready: Option<(Message, QoS, bool)> = sw
                .origins
                .values_mut()
                .filter(|st| st.j && st.k)
                .find_map(|st| st.held.pop_front());
            match ready {
                Some((m, q, r)) => self.deliver(sid, &m, q, r, now_ms, Via::Direct),
                None => break,
            }
        }
        let done = self.sessions[sid]
            .switch
            .as_ref()
            .is_some_and(|sw| sw.origins.values().all(|st| st.j && st.k));
        if done {
            self.sessions[sid].switch = None;
        }
    }

    /// Delivers everything held for `sid` (it is moving on, or its old worker is gone).
    pub(super) fn release_all(&mut self, sid: usize, now_ms: u64) {
        if let Some(sw) = self.sessions[sid].switch.as_mut() {
            for st in sw.origins.values_mut() {
                st.j = true;
                st.k = true;
            }
        }
        self.settle(sid, now_ms);
    }

    /// The link `key` closed: nothing more comes over it, for stubs and switches alike.
    pub(super) fn switch_link_gone(&mut self, key: usize, now_ms: u64) {
        if let Some(slot) = self.mesh.link(key).map(|l| l.slot as u16) {
            self.fences_link_gone(slot);
        }
        let stubs: Vec<(Arc<str>, usize)> = self
            .moves
            .moved
            .iter()
            .map(|(id, &sid)| (Arc::clone(id), sid))
            .collect();
        for (id, sid) in stubs {
            if self.sessions[sid].moved_to == Some(key) {
                self.moves.moved.remove(&id);
                self.drop_stub(sid);
            } else {
                self.stopped_relaying(&id, key);
            }
        }
        let switching: Vec<usize> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.switch.is_some())
            .map(|(sid, _)| sid)
            .collect();
        for sid in switching {
            if self.is_old_worker(sid, key) {
                self.release_all(sid, now_ms);
                continue;
            }
            if let Some(st) = self.origin_state(sid, key) {
                st.j = true;
                st.k = true;
            }
            self.settle(sid, now_ms);
        }
    }

    /// On the old worker, a session just left for the sibling on link `to`: every other sibling
    /// gets `F` after whatever this worker forwarded for the client's publishes, and answers
    /// the new worker (`G`), which reads the client's next packets only then. So a message the
    /// client publishes there never overtakes one it published here.
    pub(super) fn fence(&mut self, id: &str, to: usize) {
        let Some(n_slot) = self.mesh.link(to).map(|l| l.slot as u16) else {
            return;
        };
        let others: Vec<(usize, u16)> = self
            .mesh
            .links()
            .filter(|(k, _)| *k != to)
            .map(|(k, l)| (k, l.slot as u16))
            .collect();
        let f = Frame::Fence {
            client_id: id.into(),
            new_slot: n_slot,
        };
        let mut slots = Vec::with_capacity(others.len());
        for (k, slot) in others {
            self.mesh.push(k, &f);
            slots.push(slot);
        }
        let list = Frame::FenceList {
            client_id: id.into(),
            slots,
        };
        self.mesh.push(to, &list);
    }

    /// `F` from the old worker of client `id`: tell its new worker (in `n_slot`) that
    /// everything the old one forwarded here for it is in.
    fn on_fence(&mut self, id: &str, n_slot: u16) {
        if let Some(n) = self.origin_of_slot(n_slot).filter(|&k| k != HERE) {
            let g = Frame::FencePassed {
                client_id: id.into(),
            };
            self.mesh.push(n, &g);
        }
    }

    /// `f` from the old worker: the slots whose `G` the client `id` waits for here.
    fn on_fence_list(&mut self, id: &str, slots: &[u16]) {
        // A `G` can overtake the `f` (it comes over another link): those already in count.
        let passed = self
            .fences
            .gates
            .remove(id)
            .map(|(p, _)| p)
            .unwrap_or_default();
        let waiting: Vec<u16> = slots
            .iter()
            .copied()
            .filter(|&s| self.origin_of_slot(s).is_some_and(|k| k != HERE))
            .filter(|s| !passed.contains(s))
            .collect();
        if !waiting.is_empty() {
            self.fences
                .gates
                .insert(Arc::from(id), (waiting, vec![Token(GATE_OPEN)]));
        }
    }

    /// `G` from the sibling on link `key` for client `id`.
    fn on_fence_passed(&mut self, key: usize, id: &str) {
        if let Some(slot) = self.mesh.link(key).map(|l| l.slot as u16) {
            self.fence_passed(id, slot);
        }
    }

    fn fence_passed(&mut self, id: &str, slot: u16) {
        let Some((waiting, tokens)) = self.fences.gates.get_mut(id) else {
            // Before the `f`: remembered as passed (no token marks such an entry).
            self.fences
                .gates
                .insert(Arc::from(id), (vec![slot], Vec::new()));
            return;
        };
        if !tokens.contains(&Token(GATE_OPEN)) {
            waiting.push(slot);
            return;
        }
        waiting.retain(|&s| s != slot);
        if waiting.is_empty() {
            if let Some((_, tokens)) = self.fences.gates.remove(id) {
                for t in tokens.into_iter().filter(|t| t.0 != GATE_OPEN) {
                    self.posted.post(t);
                }
            }
        }
    }

    /// Whether any client waits for a fence (the common case, none, costs one test).
    pub fn fencing(&self) -> bool {
        !self.fences.gates.is_empty()
    }

    /// Whether connection `token` of client `id` must wait before reading (see `fence`);
    /// it is woken when it may go on.
    pub fn fenced(&mut self, id: &str, token: Token) -> bool {
        match self.fences.gates.get_mut(id) {
            Some((_, tokens)) if tokens.contains(&Token(GATE_OPEN)) => {
                if !tokens.contains(&token) {
                    tokens.push(token);
                }
                true
            }
            _ => false,
        }
    }

    /// The sibling in `slot` is gone: no client waits for it.
    pub(super) fn fences_link_gone(&mut self, slot: u16) {
        let ids: Vec<Arc<str>> = self
            .fences
            .gates
            .iter()
            .filter(|(_, (_, t))| t.contains(&Token(GATE_OPEN)))
            .map(|(id, _)| Arc::clone(id))
            .collect();
        for id in ids {
            self.fence_passed(&id, slot);
        }
    }
}

/// `J` for client `id`.
fn direct(id: &str, no_relay: bool) -> Frame {
    Frame::Direct {
        client_id: id.into(),
        no_relay,
    }
}
