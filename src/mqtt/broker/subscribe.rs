//! SUBSCRIBE and UNSUBSCRIBE (3.8-3.11) and retained messages (3.3.1.3): the subscription tree,
//! the filters forwarded to the siblings, the SUBACK that waits until every sibling has a new
//! filter (a barrier), and this worker's replica of the node's retained store, kept in step
//! with the siblings' by Lamport stamps.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Broker, SessionRef, Via};
use crate::mqtt::auth::Op;
use crate::mqtt::codec::{Packet, QoS, Suback as SubackPacket, SubackCode, Subscribe, Unsubscribe};
use crate::mqtt::mesh::{Frame, Stamp};
use crate::mqtt::router::{ClientKey, Retained, RetainedStore, Subscribed, Unsubscribed};
use crate::mqtt::session::Message;

/// What waits for the siblings to have this worker's latest filters, by barrier: the links yet
/// to answer.
#[derive(Default)]
pub(super) struct Barriers(HashMap<u64, (Vec<usize>, Suback)>);

/// A SUBACK waiting for the siblings to have its filters.
pub(super) struct Suback {
    session: SessionRef,
    pkid: u16,
    codes: Vec<SubackCode>,
    granted: Vec<(String, QoS)>,
}

/// The node's retained messages as this worker knows them, with the stamp of each topic's
/// last change (removals too).
#[derive(Default)]
pub(super) struct Replica {
    store: RetainedStore,
    stamps: HashMap<Arc<str>, Stamp>,
    lamport: u64,
}

impl Replica {
    /// The stamp of a change made here.
    pub(super) fn stamp(&mut self, slot: usize) -> Stamp {
        self.lamport += 1;
        (self.lamport, slot as u16)
    }
}

impl Broker {
    pub(super) fn on_subscribe(&mut self, r: SessionRef, sub: Subscribe, now_ms: u64) {
        let sid = r.sid;
        let mut codes = Vec::with_capacity(sub.filters.len());
        let mut granted = Vec::with_capacity(sub.filters.len());
        let mut forwarded = false;
        for (filter, qos) in sub.filters {
            let s = &self.sessions[sid];
            if !self
                .auth
                .allows(&s.client_id, s.username.as_deref(), Op::Subscribe, &filter)
            {
                // A refusal is answered, not dropped silently ([MQTT-3.9.3-2]: 0x80).
                codes.push(SubackCode::Failure);
                continue;
            }
            forwarded |= self.subscribe_one(sid, &filter, qos);
            codes.push(SubackCode::Granted(qos));
            granted.push((filter, qos));
        }
        let done = Suback {
            session: r,
            pkid: sub.pkid,
            codes,
            granted,
        };
        // A filter new to this worker was forwarded to the siblings: the SUBACK waits until
        // each has it, so that whatever any client publishes after the SUBACK reaches this one.
        if forwarded {
            if let Some((seq, waiting)) = self.mesh.barrier() {
                self.barriers.0.insert(seq, (waiting, done));
                return;
            }
        }
        self.finish_subscribe(done, now_ms);
    }

    /// Sibling `key` has every filter forwarded before barrier `seq`.
    pub(super) fn barrier_passed(&mut self, seq: u64, key: usize, now_ms: u64) {
        let Some((waiting, _)) = self.barriers.0.get_mut(&seq) else {
            return;
        };
        waiting.retain(|&k| k != key);
        if waiting.is_empty() {
            if let Some((_, done)) = self.barriers.0.remove(&seq) {
                self.finish_subscribe(done, now_ms);
            }
        }
    }

    /// Sibling `key` is gone: no SUBACK waits for it.
    pub(super) fn barriers_link_gone(&mut self, key: usize, now_ms: u64) {
        let seqs: Vec<u64> = self.barriers.0.keys().copied().collect();
        for seq in seqs {
            self.barrier_passed(seq, key, now_ms);
        }
    }

    fn finish_subscribe(&mut self, done: Suback, now_ms: u64) {
        let Some(s) = self.session_mut(done.session) else {
            return;
        };
        let sid = done.session.sid;
        // [MQTT-3.8.4-1], [MQTT-3.8.4-4], [MQTT-3.8.4-5]: one SUBACK, a code per filter in order.
        s.write(&Packet::Suback(SubackPacket {
            pkid: done.pkid,
            codes: done.codes,
        }));
        self.wake(sid);
        // [MQTT-3.3.1-6], [MQTT-3.8.4-3]: the retained messages matching each filter, with
        // RETAIN set, after the SUBACK.
        let mut found: Vec<Retained> = Vec::new();
        for (filter, qos) in done.granted {
            found.clear();
            self.replica.store.matching(&filter, &mut found);
            if self.auth.screens_delivery() {
                let s = &self.sessions[sid];
                let (id, user) = (&s.client_id, s.username.as_deref());
                found.retain(|m| self.auth.allows(id, user, Op::Receive, &m.topic));
            }
            for m in &found {
                let msg = Message {
                    topic: Arc::clone(&m.topic),
                    payload: m.payload.clone(),
                    qos: m.qos,
                    retain: true,
                };
                self.deliver(sid, &msg, m.qos.min(qos), true, now_ms, Via::Direct);
            }
        }
    }

    /// Subscribes session `sid`; true if the filter is new here and was forwarded. The tree
    /// keeps the session's filters: the session itself carries them only when it moves.
    pub(super) fn subscribe_one(&mut self, sid: usize, filter: &str, qos: QoS) -> bool {
        let first =
            self.tree.subscribe(ClientKey(sid as u32), filter, qos) == Subscribed::FirstForFilter;
        if first {
            self.mesh.subscribe(filter);
        }
        first
    }

    pub(super) fn on_unsubscribe(&mut self, sid: usize, u: Unsubscribe) {
        for filter in &u.filters {
            if self.tree.unsubscribe(ClientKey(sid as u32), filter) == Unsubscribed::LastForFilter {
                self.mesh.unsubscribe(filter);
            }
        }
        // [MQTT-3.10.4-4], [MQTT-3.10.4-5]: UNSUBACK even when nothing matched.
        self.sessions[sid].write(&Packet::Unsuback(u.pkid));
    }

    /// A retained message (or its removal, by an empty payload) from a sibling.
    pub(super) fn retained_from_peer(&mut self, msg: &Message, stamp: Stamp) {
        self.replica.lamport = self.replica.lamport.max(stamp.0);
        self.store_retained(msg, stamp);
    }

    pub(super) fn store_retained(&mut self, msg: &Message, stamp: Stamp) {
        let r = &mut self.replica;
        if r.stamps.get(&*msg.topic).is_some_and(|s| *s >= stamp) {
            return;
        }
        r.stamps.insert(Arc::clone(&msg.topic), stamp);
        r.store.retain(&msg.topic, msg.payload.clone(), msg.qos);
        self.stats.retained(r.store.len());
        if !msg.payload.is_empty() {
            self.hook.retained(msg);
        }
    }

    /// Keeps `msg` as the retained message of its topic if this worker has none (a message
    /// rebuilt from the database), with the lowest stamp there is, so that any published one,
    /// here or at a sibling, replaces it.
    pub(super) fn restore_retained(&mut self, msg: &Message) {
        if !self.replica.stamps.contains_key(&*msg.topic) && !msg.payload.is_empty() {
            self.store_retained(msg, (0, self.slot as u16));
        }
    }

    pub fn retained_count(&self) -> usize {
        self.replica.store.len()
    }

    /// What a sibling that just joined is sent: every filter this worker's clients use, then
    /// every retained message with its stamp (removals too).
    pub fn snapshot(&self) -> Vec<Frame> {
        let mut frames = Vec::new();
        self.tree
            .for_each_filter(|f| frames.push(Frame::Subscribe(f.into())));
        for (topic, stamp) in &self.replica.stamps {
            let (payload, qos) = match self.replica.store.get(topic) {
                Some(r) => (r.payload.clone(), r.qos),
                None => (bytes::Bytes::new(), QoS::AtMostOnce),
            };
            let msg = Message {
                topic: Arc::clone(topic),
                payload,
                qos,
                retain: true,
            };
            frames.push(Frame::Retained { msg, stamp: *stamp });
        }
        frames
    }
}
