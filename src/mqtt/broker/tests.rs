//! The broker's rules without sockets: packets in, the session's output decoded back.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use mio::Token;

use super::*;
use crate::core::shm::Zone;
use crate::mqtt::auth::{Cut, FileAuthority};
use crate::mqtt::codec::{ConnackCode, Connect, Decode, Decoder, Publish, Subscribe, Will};
use crate::mqtt::ingest::{Ack, Acks, NoIngest, Origin, Outbox};
use crate::mqtt::session::Message;

/// Holds back the acknowledgement of every message whose payload starts with "slow".
#[derive(Default)]
struct Delaying {
    held: Rc<RefCell<Vec<u64>>>,
}

impl Ingest for Delaying {
    fn publish(&mut self, _o: Origin<'_>, msg: &Message, ticket: u64) -> Ack {
        if msg.payload.starts_with(b"slow") {
            self.held.borrow_mut().push(ticket);
            Ack::Later
        } else {
            Ack::Now
        }
    }
}

fn broker_with(limits: Limits, hook: Box<dyn Ingest>) -> Rc<RefCell<Broker>> {
    broker_acks(limits, hook, Acks::default())
}

/// A broker whose ingest hook completes tickets through `acks`.
fn broker_acks(limits: Limits, hook: Box<dyn Ingest>, acks: Acks) -> Rc<RefCell<Broker>> {
    broker_hooks(limits, hook, acks, Outbox::default())
}

/// A broker whose hooks publish the server's own messages through `outbox`.
fn broker_hooks(
    limits: Limits,
    hook: Box<dyn Ingest>,
    acks: Acks,
    outbox: Outbox,
) -> Rc<RefCell<Broker>> {
    let auth = Rc::new(FileAuthority {
        allow_anonymous: true,
        ..FileAuthority::default()
    });
    let hooks = Hooks {
        ingest: hook,
        acks,
        outbox,
        ..Hooks::with_authority(auth)
    };
    broker_of(limits, hooks)
}

/// A broker with `hooks`.
fn broker_of(limits: Limits, hooks: Hooks) -> Rc<RefCell<Broker>> {
    let zone = Zone::new("mqtt.test", crate::mqtt::stats::zone_size()).unwrap();
    Rc::new(RefCell::new(Broker::new(
        limits,
        hooks,
        Posted::new(),
        Stats::new(zone, 0),
        (0, 0),
    )))
}

fn broker() -> Rc<RefCell<Broker>> {
    broker_with(Limits::default(), Box::new(NoIngest))
}

fn connect(id: &str, clean: bool) -> Connect {
    Connect {
        clean_session: clean,
        keep_alive: 60,
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
    }
}

/// Takes and decodes what the broker left for the client of `r`.
fn out(b: &Rc<RefCell<Broker>>, r: SessionRef) -> Vec<Packet> {
    let bytes = std::mem::take(&mut b.borrow_mut().session_mut(r).unwrap().out);
    let mut buf = BytesMut::from(&bytes[..]);
    let mut d = Decoder {
        max_packet_size: 1 << 20,
    };
    let mut v = Vec::new();
    while let Some(p) = d.decode(&mut buf).unwrap() {
        v.push(p);
    }
    assert!(buf.is_empty());
    v
}

fn publish(topic: &str, payload: &'static [u8], qos: QoS, pkid: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        pkid,
        payload: Bytes::from_static(payload),
    })
}

fn subscribe(filters: &[(&str, QoS)], pkid: u16) -> Packet {
    Packet::Subscribe(Subscribe {
        pkid,
        filters: filters.iter().map(|(f, q)| (f.to_string(), *q)).collect(),
    })
}

/// CONNECT through the broker, with an authority that answers at once.
fn login(b: &Rc<RefCell<Broker>>, mut c: Connect, token: usize) -> Result<Connected, ConnackCode> {
    match b.borrow_mut().connect(&mut c, Token(token), 0) {
        Admission::Accepted(done) => Ok(done),
        Admission::Refused(code) => Err(code),
        Admission::Waiting(t) => panic!("the file authority answered later ({t})"),
    }
}

fn online(b: &Rc<RefCell<Broker>>, id: &str, clean: bool, token: usize) -> SessionRef {
    let c = login(b, connect(id, clean), token).unwrap();
    let r = c.session;
    let p = out(b, r);
    assert!(matches!(p[0], Packet::Connack(_)));
    r
}

/// A client online on `token` and subscribed to `filters`, its CONNACK and SUBACK read.
fn subscriber(
    b: &Rc<RefCell<Broker>>,
    id: &str,
    clean: bool,
    token: usize,
    filters: &[(&str, QoS)],
) -> SessionRef {
    let r = online(b, id, clean, token);
    b.borrow_mut().packet(r, subscribe(filters, 1), 0).unwrap();
    assert!(matches!(out(b, r)[..], [Packet::Suback(_)]));
    r
}

/// A will of QoS 0.
fn will(topic: &str, message: &'static [u8], retain: bool) -> Option<Will> {
    Some(Will {
        topic: topic.into(),
        message: Bytes::from_static(message),
        qos: QoS::AtMostOnce,
        retain,
    })
}

#[test]
fn held_acknowledgements_leave_in_arrival_order_mqtt_4_6_0_2() {
    let hook = Delaying::default();
    let held = Rc::clone(&hook.held);
    let acks = Acks::default();
    let b = broker_acks(Limits::default(), Box::new(hook), acks.clone());
    let r = online(&b, "sensor", true, 1);
    for (id, payload) in [(1, &b"slow"[..]), (2, b"fast"), (3, b"fast")] {
        let p = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "sensors/1/counter".into(),
            pkid: id,
            payload: Bytes::copy_from_slice(payload),
        });
        b.borrow_mut().packet(r, p, 0).unwrap();
    }
    assert_eq!(
        out(&b, r),
        vec![],
        "PUBACK 1 waits for the hook, 2 and 3 wait behind it"
    );
    let ticket = held.borrow()[0];
    acks.durable(ticket);
    assert_eq!(out(&b, r), vec![], "released on the broker's next turn");
    b.borrow_mut().tick(0);
    assert_eq!(
        out(&b, r),
        vec![Packet::Puback(1), Packet::Puback(2), Packet::Puback(3)]
    );
}

#[test]
fn a_qos1_retransmission_of_a_held_publish_reaches_the_hook_once() {
    let hook = Delaying::default();
    let held = Rc::clone(&hook.held);
    let acks = Acks::default();
    let b = broker_acks(Limits::default(), Box::new(hook), acks.clone());
    let r = online(&b, "sensor", false, 1);
    b.borrow_mut()
        .packet(r, publish("t", b"slow", QoS::AtLeastOnce, 4), 0)
        .unwrap();
    assert!(
        b.borrow().holds_acks(r),
        "a session with a held PUBACK says so"
    );
    let Packet::Publish(mut dup) = publish("t", b"slow", QoS::AtLeastOnce, 4) else {
        unreachable!()
    };
    dup.dup = true;
    b.borrow_mut().packet(r, Packet::Publish(dup), 0).unwrap();
    assert_eq!(held.borrow().len(), 1, "the hook saw the message once");
    assert_eq!(out(&b, r), vec![]);
    acks.durable(held.borrow()[0]);
    b.borrow_mut().tick(0);
    assert_eq!(
        out(&b, r),
        vec![Packet::Puback(4)],
        "one PUBACK answers both"
    );
    assert!(!b.borrow().holds_acks(r));
    b.borrow_mut()
        .packet(r, publish("t", b"slow", QoS::AtLeastOnce, 4), 0)
        .unwrap();
    assert_eq!(
        held.borrow().len(),
        2,
        "once acknowledged, the identifier is new again"
    );
}

#[test]
fn held_pubrec_for_qos2_then_exactly_once_mqtt_4_3_3_2() {
    let hook = Delaying::default();
    let held = Rc::clone(&hook.held);
    let acks = Acks::default();
    let b = broker_acks(Limits::default(), Box::new(hook), acks.clone());
    let sub = subscriber(&b, "display", true, 1, &[("t", QoS::ExactlyOnce)]);
    let r = online(&b, "sensor", true, 2);
    b.borrow_mut()
        .packet(r, publish("t", b"slow", QoS::ExactlyOnce, 9), 0)
        .unwrap();
    assert_eq!(out(&b, r), vec![]);
    // The client retransmits before it got PUBREC: not delivered again, not acknowledged twice.
    b.borrow_mut()
        .packet(r, publish("t", b"slow", QoS::ExactlyOnce, 9), 0)
        .unwrap();
    assert_eq!(out(&b, r), vec![]);
    acks.durable(held.borrow()[0]);
    b.borrow_mut().tick(0);
    assert_eq!(out(&b, r), vec![Packet::Pubrec(9)]);
    b.borrow_mut().packet(r, Packet::Pubrel(9), 0).unwrap();
    assert_eq!(out(&b, r), vec![Packet::Pubcomp(9)]);
    let got = out(&b, sub);
    assert_eq!(got.len(), 1, "delivered once: {got:?}");
}

#[test]
fn qos2_retransmission_is_not_delivered_twice_mqtt_4_3_3_2() {
    let b = broker();
    let sub = subscriber(&b, "s", true, 1, &[("t", QoS::AtMostOnce)]);
    let p = online(&b, "p", true, 2);
    for _ in 0..3 {
        b.borrow_mut()
            .packet(p, publish("t", b"x", QoS::ExactlyOnce, 4), 0)
            .unwrap();
    }
    assert_eq!(out(&b, p), vec![Packet::Pubrec(4); 3]);
    assert_eq!(out(&b, sub).len(), 1);
    b.borrow_mut().packet(p, Packet::Pubrel(4), 0).unwrap();
    b.borrow_mut()
        .packet(p, publish("t", b"x", QoS::ExactlyOnce, 4), 0)
        .unwrap();
    assert_eq!(out(&b, sub).len(), 1, "a new message once released");
}

#[test]
fn overlapping_subscriptions_deliver_once_at_the_highest_qos_mqtt_3_3_5_1() {
    let b = broker();
    let sub = online(&b, "s", true, 1);
    let filters = [
        ("a/#", QoS::AtMostOnce),
        ("a/+", QoS::ExactlyOnce),
        ("a/b", QoS::AtLeastOnce),
    ];
    b.borrow_mut()
        .packet(sub, subscribe(&filters, 1), 0)
        .unwrap();
    let suback = out(&b, sub);
    assert_eq!(suback.len(), 1);
    let p = online(&b, "p", true, 2);
    b.borrow_mut()
        .packet(p, publish("a/b", b"x", QoS::ExactlyOnce, 3), 0)
        .unwrap();
    let got = out(&b, sub);
    assert_eq!(got.len(), 1, "{got:?}");
    let Packet::Publish(m) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(m.qos, QoS::ExactlyOnce);
}

#[test]
fn inflight_window_and_queue_limits() {
    let limits = Limits {
        max_inflight: 2,
        max_queued: 2,
        ..Limits::default()
    };
    let b = broker_with(limits, Box::new(NoIngest));
    let sub = subscriber(&b, "s", true, 1, &[("t", QoS::AtLeastOnce)]);
    let p = online(&b, "p", true, 2);
    for i in 1..=5 {
        b.borrow_mut()
            .packet(p, publish("t", b"x", QoS::AtLeastOnce, i), 0)
            .unwrap();
    }
    let got = out(&b, sub);
    assert_eq!(got.len(), 2, "two in flight: {got:?}");
    let ids: Vec<u16> = got
        .iter()
        .map(|p| match p {
            Packet::Publish(m) => m.pkid,
            other => panic!("{other:?}"),
        })
        .collect();
    b.borrow_mut()
        .packet(sub, Packet::Puback(ids[0]), 0)
        .unwrap();
    assert_eq!(
        out(&b, sub).len(),
        1,
        "one queued message takes the freed place"
    );
    b.borrow_mut()
        .packet(sub, Packet::Puback(ids[1]), 0)
        .unwrap();
    assert_eq!(out(&b, sub).len(), 1);
    let s = b.borrow();
    let t = crate::mqtt::stats::totals(&s.stats().zone());
    assert_eq!(t.dropped[1], ("queue_full", 1), "the fifth did not fit");
}

#[test]
fn persistent_session_queues_and_resends_with_dup_mqtt_4_4_0_1() {
    let b = broker();
    let sub = subscriber(&b, "s", false, 1, &[("t", QoS::AtLeastOnce)]);
    let p = online(&b, "p", true, 2);
    b.borrow_mut()
        .packet(p, publish("t", b"one", QoS::AtLeastOnce, 1), 0)
        .unwrap();
    assert_eq!(out(&b, sub).len(), 1, "sent, not acknowledged");
    b.borrow_mut().disconnected(sub, Token(1), true, 0);
    b.borrow_mut()
        .packet(p, publish("t", b"two", QoS::AtLeastOnce, 2), 0)
        .unwrap();
    b.borrow_mut()
        .packet(p, publish("t", b"zero", QoS::AtMostOnce, 0), 0)
        .unwrap();
    let c = login(&b, connect("s", false), 3).unwrap();
    assert!(c.session_present, "[MQTT-3.2.2-2]");
    let got = out(&b, c.session);
    let Packet::Connack(ack) = &got[0] else {
        panic!("{got:?}")
    };
    assert!(ack.session_present);
    let publishes: Vec<(bool, Bytes)> = got[1..]
        .iter()
        .map(|p| match p {
            Packet::Publish(m) => (m.dup, m.payload.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        publishes,
        vec![
            (true, Bytes::from_static(b"one")),
            (false, Bytes::from_static(b"two"))
        ]
    );
}

#[test]
fn clean_session_discards_and_reports_no_session_mqtt_3_2_2_1() {
    let b = broker();
    let s = online(&b, "s", false, 1);
    b.borrow_mut()
        .packet(s, subscribe(&[("t", QoS::AtLeastOnce)], 1), 0)
        .unwrap();
    b.borrow_mut().disconnected(s, Token(1), false, 0);
    let c = login(&b, connect("s", true), 2).unwrap();
    assert!(!c.session_present);
    let p = online(&b, "p", true, 3);
    b.borrow_mut()
        .packet(p, publish("t", b"x", QoS::AtLeastOnce, 1), 0)
        .unwrap();
    assert_eq!(
        out(&b, c.session).len(),
        1,
        "only the CONNACK: no subscription left"
    );
}

#[test]
fn takeover_ends_the_old_connection_mqtt_3_1_4_2() {
    let b = broker();
    let old = online(&b, "c", false, 1);
    let new = login(&b, connect("c", false), 2).unwrap();
    assert!(!b.borrow().serves(old, Token(1)));
    assert!(b.borrow().serves(new.session, Token(2)));
    assert!(new.session_present);
    b.borrow_mut().disconnected(old, Token(1), true, 0);
    assert!(
        b.borrow().serves(new.session, Token(2)),
        "the old one's end changes nothing"
    );
}

#[test]
fn zero_length_client_id_rules_mqtt_3_1_3_7_and_8() {
    let b = broker();
    assert_eq!(
        login(&b, connect("", false), 1).unwrap_err(),
        ConnackCode::IdentifierRejected
    );
    let a = login(&b, connect("", true), 2).unwrap();
    let c = login(&b, connect("", true), 3).unwrap();
    assert_ne!(a.session, c.session, "each gets its own identifier");
    assert!(b.borrow().serves(a.session, Token(2)));
}

#[test]
fn will_on_failure_not_after_disconnect_mqtt_3_1_2_8_and_10() {
    let b = broker();
    let sub = subscriber(&b, "s", true, 1, &[("will/#", QoS::AtMostOnce)]);
    for (id, token, clean_end) in [("a", 2, false), ("b", 3, true)] {
        let mut c = connect(id, true);
        c.will = will(&format!("will/{id}"), b"gone", false);
        let r = login(&b, c, token).unwrap().session;
        if clean_end {
            assert_eq!(
                b.borrow_mut().packet(r, Packet::Disconnect, 0),
                Err(Close::Disconnect)
            );
        }
        b.borrow_mut().disconnected(r, Token(token), !clean_end, 0);
    }
    let got = out(&b, sub);
    assert_eq!(got.len(), 1, "{got:?}");
    let Packet::Publish(m) = &got[0] else {
        panic!()
    };
    assert_eq!(m.topic, "will/a");
}

#[test]
fn server_topics_are_the_roots_commands_and_hives_and_below() {
    for t in [
        "commands",
        "commands/sensor/x",
        "hives",
        "hives/7/occupancy",
        "hives/",
    ] {
        assert!(server_topic(t), "{t}");
    }
    for t in [
        "command",
        "commandsx/y",
        "hivesx",
        "sensors/x/counter",
        "push/sensor/x",
        "x/hives",
    ] {
        assert!(!server_topic(t), "{t}");
    }
}

#[test]
fn no_client_publishes_on_the_server_topics_even_retained() {
    let b = broker();
    let sub = subscriber(
        &b,
        "watcher",
        true,
        1,
        &[("#", QoS::AtLeastOnce), ("hives/#", QoS::AtLeastOnce)],
    );
    let p = online(&b, "pub", true, 2);
    for (i, topic) in ["hives/x/occupancy", "commands/sensor/x", "commands"]
        .iter()
        .enumerate()
    {
        let pkid = i as u16 + 1;
        let packet = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: topic.to_string(),
            pkid,
            payload: Bytes::from_static(b"forged"),
        });
        b.borrow_mut().packet(p, packet, 0).unwrap();
        assert_eq!(
            out(&b, p),
            vec![Packet::Puback(pkid)],
            "{topic}: acknowledged and dropped, as an ACL refusal"
        );
    }
    assert_eq!(out(&b, sub), vec![], "nothing delivered");
    assert_eq!(b.borrow().retained_count(), 0, "nothing retained");
    b.borrow_mut()
        .packet(p, publish("push/sensor/x", b"ok", QoS::AtMostOnce, 0), 0)
        .unwrap();
    assert_eq!(out(&b, sub).len(), 1, "other topics still flow");
}

#[test]
fn a_will_on_a_server_topic_refuses_the_connect_with_0x05() {
    let b = broker();
    for topic in ["hives/x/occupancy", "commands/sensor/x"] {
        let mut c = connect("w", true);
        c.will = will(topic, b"forged", true);
        assert_eq!(
            login(&b, c, 1).err(),
            Some(ConnackCode::NotAuthorized),
            "{topic}"
        );
    }
}

#[test]
fn retained_replicas_converge_on_the_newest_stamp() {
    let b = broker();
    let msg = |p: &'static [u8]| Message {
        topic: "hives/1/occupancy".into(),
        payload: Bytes::from_static(p),
        qos: QoS::AtLeastOnce,
        retain: true,
    };
    b.borrow_mut().retained_from_peer(&msg(b"new"), (5, 1));
    b.borrow_mut().retained_from_peer(&msg(b"old"), (4, 2));
    b.borrow_mut().retained_from_peer(&msg(b""), (3, 1));
    let s = online(&b, "s", true, 1);
    b.borrow_mut()
        .packet(
            s,
            subscribe(&[("hives/+/occupancy", QoS::AtLeastOnce)], 1),
            0,
        )
        .unwrap();
    let got = out(&b, s);
    let Packet::Publish(m) = &got[1] else {
        panic!("{got:?}")
    };
    assert_eq!(
        (&m.payload[..], m.retain),
        (&b"new"[..], true),
        "[MQTT-3.3.1-6]"
    );
    b.borrow_mut().retained_from_peer(&msg(b""), (6, 0));
    assert_eq!(
        b.borrow().retained_count(),
        0,
        "an empty payload removes it"
    );
}

#[test]
fn second_connect_is_a_violation_mqtt_3_1_0_2() {
    let b = broker();
    let r = online(&b, "c", true, 1);
    assert!(matches!(
        b.borrow_mut()
            .packet(r, Packet::Connect(connect("c", true)), 0),
        Err(Close::Violation(_))
    ));
}

#[test]
fn suback_waits_for_the_siblings_to_have_the_filter() {
    let b = broker();
    let key = b.borrow_mut().mesh.add(1, 0, None, false);
    let s = online(&b, "s", true, 1);
    b.borrow_mut()
        .packet(s, subscribe(&[("a/b", QoS::AtLeastOnce)], 5), 0)
        .unwrap();
    assert_eq!(out(&b, s), vec![], "no SUBACK before the sibling answered");
    let frames: Vec<Vec<u8>> = b
        .borrow()
        .mesh()
        .link(key)
        .unwrap()
        .out
        .iter()
        .map(|f| f.msg.as_bytes().to_vec())
        .collect();
    assert_eq!(frames[0], b"Sa/b", "the filter first");
    assert_eq!(frames[1][0], b'B', "then the barrier");
    let seq = u64::from_le_bytes(frames[1][1..9].try_into().unwrap());
    b.borrow_mut().barrier_passed(seq, key, 0);
    let got = out(&b, s);
    assert!(
        matches!(&got[..], [Packet::Suback(a)] if a.pkid == 5),
        "{got:?}"
    );
    // A filter the worker already has needs no barrier.
    let t = online(&b, "t", true, 2);
    b.borrow_mut()
        .packet(t, subscribe(&[("a/b", QoS::AtMostOnce)], 6), 0)
        .unwrap();
    assert_eq!(out(&b, t).len(), 1);
}

#[test]
fn the_servers_messages_are_published_and_restored_only_where_missing() {
    let outbox = Outbox::default();
    let b = broker_hooks(
        Limits::default(),
        Box::new(NoIngest),
        Acks::default(),
        outbox.clone(),
    );
    let sub = subscriber(&b, "s", true, 1, &[("hives/+/occupancy", QoS::AtMostOnce)]);
    let msg = |topic: &str, payload: &'static [u8]| Message {
        topic: topic.into(),
        payload: bytes::Bytes::from_static(payload),
        qos: QoS::AtMostOnce,
        retain: true,
    };
    outbox.publish(msg("hives/1/occupancy", b"live"));
    outbox.restore(msg("hives/1/occupancy", b"from the database"));
    outbox.restore(msg("hives/2/occupancy", b"restored"));
    b.borrow_mut().tick(0);
    let got = out(&b, sub);
    assert_eq!(got.len(), 1, "a restore is not routed: {got:?}");
    let Packet::Publish(m) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(&m.payload[..], b"live");
    assert_eq!(b.borrow().retained_count(), 2);

    // A later subscriber gets the live value of 1 and the restored value of 2; a live value
    // replaces a restored one.
    outbox.publish(msg("hives/2/occupancy", b"newer"));
    b.borrow_mut().tick(0);
    let late = online(&b, "late", true, 2);
    b.borrow_mut()
        .packet(
            late,
            subscribe(&[("hives/+/occupancy", QoS::AtMostOnce)], 1),
            0,
        )
        .unwrap();
    let mut payloads: Vec<Vec<u8>> = out(&b, late)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(m) => Some(m.payload.to_vec()),
            _ => None,
        })
        .collect();
    payloads.sort();
    assert_eq!(payloads, vec![b"live".to_vec(), b"newer".to_vec()]);
}

#[test]
fn a_cut_off_client_is_closed_without_its_will_and_its_session_discarded() {
    let b = broker();
    let sub = subscriber(&b, "s", true, 1, &[("will/#", QoS::AtMostOnce)]);
    let mut c = connect("dev1", false);
    c.username = Some("dev1".into());
    c.will = will("will/dev1", b"gone", false);
    let r = login(&b, c, 2).unwrap().session;
    assert_eq!(b.borrow_mut().cut_off(&[Cut::Client("other".into())]), 0);
    assert_eq!(b.borrow_mut().cut_off(&[Cut::Client("dev1".into())]), 1);
    assert!(!b.borrow().serves(r, Token(2)), "its connection closes");
    assert!(b.borrow().session(r).is_none(), "persistent, yet discarded");
    b.borrow_mut().disconnected(r, Token(2), true, 0);
    assert!(out(&b, sub).is_empty(), "no will");
    let again = login(&b, connect("dev1", false), 3).unwrap();
    assert!(!again.session_present, "nothing of the old session is left");
}

#[test]
fn a_cut_by_user_name_ends_every_client_of_that_login_and_no_other() {
    let b = broker();
    let mut tokens = Vec::new();
    for (id, user, token) in [
        ("d1", "token:7", 1),
        ("d2", "token:7", 2),
        ("d3", "token:8", 3),
    ] {
        let mut c = connect(id, true);
        c.username = Some(user.into());
        tokens.push((login(&b, c, token).unwrap().session, token));
    }
    assert_eq!(b.borrow_mut().cut_off(&[Cut::User("token:7".into())]), 2);
    let live: Vec<bool> = tokens
        .iter()
        .map(|&(r, t)| b.borrow().serves(r, Token(t)))
        .collect();
    assert_eq!(live, [false, false, true]);
}

#[test]
fn cut_offs_given_through_the_verdicts_handle_act_at_the_next_turn() {
    let b = broker();
    let verdicts = b.borrow().verdicts.clone();
    let r = online(&b, "dev1", true, 1);
    verdicts.cut_off(Cut::Client("dev1".into()));
    assert!(b.borrow().serves(r, Token(1)), "not before the turn");
    b.borrow_mut().tick(0);
    assert!(!b.borrow().serves(r, Token(1)));
}

#[test]
fn a_turns_cuts_end_each_of_their_sessions_once() {
    let b = broker();
    let mut sessions = Vec::new();
    for (id, user, token) in [("d1", "d1", 1), ("d2", "d2", 2), ("d3", "d3", 3)] {
        let mut c = connect(id, true);
        c.username = Some(user.into());
        sessions.push((login(&b, c, token).unwrap().session, token));
    }
    let verdicts = b.borrow().verdicts.clone();
    for cut in [
        Cut::User("d1".into()),
        Cut::Client("d1".into()),
        Cut::User("d2".into()),
        Cut::User("d1".into()),
    ] {
        verdicts.cut_off(cut);
    }
    b.borrow_mut().tick(0);
    let live: Vec<bool> = sessions
        .iter()
        .map(|&(r, t)| b.borrow().serves(r, Token(t)))
        .collect();
    assert_eq!(live, [false, false, true]);
    assert_eq!(b.borrow().sessions.len(), 1, "d3 only");
}
