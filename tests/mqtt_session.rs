//! MQTT sessions against the real binary, written from the MQTT 3.1.1 standard (OASIS, 29 October
//! 2014): CONNECT and CONNACK, client id takeover, clean and persistent sessions, QoS 1 and 2 in
//! both directions, redelivery, keep-alive, wills, and the `[mqtt]` limits. Each test names the
//! numbered statements ([MQTT-x.y.z-n]) it checks. The broker runs two workers, so two clients of
//! one test may sit on different workers.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mqtt::*;
use rumqttc::QoS;

#[test]
fn mqtt_3_1_4_4_and_3_2_2_1_a_valid_connect_is_accepted_without_session_present() {
    let b = Broker::anonymous();
    let (mut c, ack) = handshake(b.addr(), &Connect::new("valid"));
    assert_eq!(ack, Some((false, 0)), "return code 0, session present 0");
    assert!(c.ping(), "[MQTT-3.12.4-1] PINGRESP");
}

#[test]
fn mqtt_3_1_2_2_an_unsupported_protocol_level_gets_code_1_and_a_close() {
    let b = Broker::anonymous();
    for level in [3u8, 5, 6, 255] {
        let (mut c, ack) = handshake(b.addr(), &Connect::new("level").level(level));
        assert_eq!(
            ack,
            Some((false, 1)),
            "level {level}: 0x01 unacceptable protocol version, session present 0 [MQTT-3.2.2-4]"
        );
        assert!(c.closed_within(WAIT), "[MQTT-3.2.2-5] level {level}");
    }
}

#[test]
fn mqtt_3_1_3_8_a_zero_length_id_without_clean_session_gets_code_2_and_a_close() {
    let b = Broker::anonymous();
    let (mut c, ack) = handshake(b.addr(), &Connect::new("").clean(false));
    assert_eq!(ack, Some((false, 2)), "0x02 identifier rejected");
    assert!(c.closed_within(WAIT), "[MQTT-3.1.3-9] [MQTT-3.2.2-5]");
}

#[test]
fn mqtt_3_1_3_6_a_zero_length_id_with_clean_session_is_accepted() {
    let b = Broker::anonymous();
    let (mut c, present) = connect(b.addr(), &Connect::new(""));
    assert!(!present);
    assert_eq!(c.subscribe(&[("anon/id", 1)]), vec![1]);
    c.publish("anon/id", b"mine", 1, false);
    let got = c.take(WAIT).expect("the client gets its own message");
    assert_eq!(got.payload, b"mine");
    let (mut other, _) = connect(b.addr(), &Connect::new(""));
    assert!(
        !c.closed_within(QUIET),
        "[MQTT-3.1.3-6] each empty id gets a unique one: no takeover"
    );
    assert!(other.ping());
}

#[test]
fn mqtt_3_1_0_2_a_second_connect_closes_the_connection() {
    let b = Broker::anonymous();
    let (mut c, _) = connect(b.addr(), &Connect::new("twice"));
    c.send(&Connect::new("twice").encode());
    assert!(c.closed_within(WAIT), "a protocol violation");
    assert!(
        !c.queued()
            .iter()
            .any(|p| matches!(p, Packet::Connack { .. })),
        "no CONNACK for the second CONNECT"
    );
}

#[test]
fn mqtt_3_1_0_1_a_first_packet_other_than_connect_closes_the_connection() {
    let b = Broker::anonymous();
    let firsts: [(&str, Vec<u8>); 5] = [
        ("PINGREQ", PINGREQ.to_vec()),
        ("SUBSCRIBE", subscribe(1, &[("a", 0)])),
        ("PUBLISH", Publish::new("a", b"x", 0).encode()),
        ("DISCONNECT", DISCONNECT.to_vec()),
        ("HTTP", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
    ];
    for (what, bytes) in firsts {
        let mut c = Client::open(b.addr());
        c.send(&bytes);
        assert!(c.closed_within(WAIT), "{what} first: still open");
        assert_eq!(c.queued(), vec![], "{what} first: answered");
    }
}

#[test]
fn mqtt_3_1_2_3_a_reserved_connect_flag_closes_the_connection() {
    let b = Broker::anonymous();
    let mut connect = Connect::new("reserved");
    connect.reserved = true;
    let (mut c, ack) = handshake(b.addr(), &connect);
    assert_eq!(
        ack, None,
        "[MQTT-3.1.4-1] no CONNACK for a malformed CONNECT"
    );
    assert!(c.closed_within(WAIT));
}

/// Each new connection takes the id over from the previous one, eight times.
#[test]
fn mqtt_3_1_4_2_a_new_connection_with_the_same_id_ends_the_old_one() {
    let b = Broker::anonymous();
    let (mut old, _) = connect(b.addr(), &Connect::new("same"));
    for round in 0..8 {
        let (new, present) = connect(b.addr(), &Connect::new("same"));
        assert!(!present, "clean sessions");
        assert!(
            old.closed_within(WAIT),
            "round {round}: the old connection was left open"
        );
        old = new;
    }
    assert_eq!(old.subscribe(&[("take/over", 1)]), vec![1]);
    old.publish("take/over", b"x", 1, false);
    assert_eq!(old.take(WAIT).map(|p| p.payload), Some(b"x".to_vec()));
}

#[test]
fn mqtt_3_2_2_2_a_taken_over_persistent_session_keeps_its_subscriptions() {
    let b = Broker::anonymous();
    let id = Connect::new("take-persistent").clean(false);
    let (mut old, _) = connect(b.addr(), &id);
    old.subscribe(&[("take/persistent", 1)]);
    let (mut new, present) = connect(b.addr(), &id);
    assert!(present, "[MQTT-3.2.2-2] the session continues");
    assert!(old.closed_within(WAIT), "[MQTT-3.1.4-2]");
    new.publish("take/persistent", b"kept", 1, false);
    assert_eq!(new.take(WAIT).map(|p| p.payload), Some(b"kept".to_vec()));
}

#[test]
fn mqtt_3_2_2_2_a_resumed_session_has_session_present_and_its_subscriptions() {
    let b = Broker::anonymous();
    let id = Connect::new("keeper").clean(false);
    let (mut c, present) = connect(b.addr(), &id);
    assert!(!present, "[MQTT-3.2.2-3] no stored session yet");
    assert_eq!(c.subscribe(&[("keep/+", 1)]), vec![1]);
    c.disconnect();
    let (mut c, present) = connect(b.addr(), &id);
    assert!(present, "[MQTT-3.2.2-2]");
    c.publish("keep/a", b"still", 1, false);
    let got = c
        .take(WAIT)
        .expect("[MQTT-3.1.2-4] the subscription is part of the session");
    assert_eq!((got.payload.as_slice(), got.qos), (&b"still"[..], 1));
}

#[test]
fn mqtt_3_1_2_6_a_clean_session_discards_the_stored_one() {
    let b = Broker::anonymous();
    let persistent = Connect::new("forget").clean(false);
    let (mut c, _) = connect(b.addr(), &persistent);
    c.subscribe(&[("forget/#", 1)]);
    c.disconnect();
    let (mut c, present) = connect(b.addr(), &Connect::new("forget"));
    assert!(!present, "[MQTT-3.2.2-1]");
    c.publish("forget/a", b"x", 1, false);
    assert_eq!(c.recv_publish(QUIET), None, "the old subscription is gone");
    c.disconnect();
    let (_c, present) = connect(b.addr(), &persistent);
    assert!(
        !present,
        "[MQTT-3.1.2-6] a clean session is not stored after it ends"
    );
}

#[test]
fn mqtt_3_1_2_5_qos_1_and_2_messages_wait_for_an_offline_session() {
    let b = Broker::anonymous();
    let id = Connect::new("offline").clean(false);
    let (mut sub, _) = connect(b.addr(), &id);
    sub.subscribe(&[("off/#", 2)]);
    let mut publisher = client(b.addr(), "offline-pub");
    await_route(&mut publisher, &mut sub, "off/probe");
    sub.disconnect();
    publisher.publish("off/0", b"q0", 0, false);
    publisher.publish("off/1", b"q1", 1, false);
    publisher.publish("off/2", b"q2", 2, false);
    let (mut sub, present) = connect(b.addr(), &id);
    assert!(present, "[MQTT-3.2.2-2]");
    let mut got = sub.take_n(2, WAIT);
    got.extend(sub.take_all(QUIET));
    let kept: Vec<(&str, u8)> = got
        .iter()
        .filter(|p| p.topic != "off/0")
        .map(|p| (p.topic.as_str(), p.qos))
        .collect();
    assert_eq!(
        kept,
        vec![("off/1", 1), ("off/2", 2)],
        "QoS 1 and 2 kept in order (QoS 0 may be): {got:?}"
    );
}

#[test]
fn mqtt_4_4_0_1_an_unacknowledged_qos_1_message_is_sent_again_with_dup_on_reconnect() {
    let b = Broker::anonymous();
    let id = Connect::new("redeliver-1").clean(false);
    let (mut c, _) = connect(b.addr(), &id);
    c.subscribe(&[("re/1", 1)]);
    c.publish("re/1", b"once", 1, false);
    let first = c.recv_publish(WAIT).expect("delivered");
    assert!(!first.dup, "a first delivery has DUP 0");
    c.drop_connection();
    let (mut c, present) = connect(b.addr(), &id);
    assert!(present);
    let again = c.recv_publish(WAIT).expect("[MQTT-4.4.0-1] sent again");
    assert!(again.dup, "[MQTT-3.3.1-1] DUP 1 on a redelivery");
    assert_eq!(
        again.pid, first.pid,
        "[MQTT-4.4.0-1] the original identifier"
    );
    assert_eq!((again.payload.as_slice(), again.qos), (&b"once"[..], 1));
    c.ack(&again);
    c.disconnect();
    let (mut c, _) = connect(b.addr(), &id);
    assert_eq!(c.recv_publish(QUIET), None, "acknowledged: not sent again");
}

#[test]
fn mqtt_4_4_0_1_an_unfinished_qos_2_delivery_resumes_where_it_stopped() {
    let b = Broker::anonymous();
    let id = Connect::new("redeliver-2").clean(false);
    let (mut c, _) = connect(b.addr(), &id);
    c.subscribe(&[("re/2", 2)]);
    c.publish("re/2", b"twice?", 2, false);
    let first = c.recv_publish(WAIT).expect("delivered");
    assert_eq!(first.qos, 2);
    c.drop_connection();

    let (mut c, _) = connect(b.addr(), &id);
    let again = c
        .recv_publish(WAIT)
        .expect("no PUBREC: the PUBLISH is sent again");
    assert!(again.dup, "[MQTT-3.3.1-1]");
    assert_eq!(again.pid, first.pid);
    let pid = again.pid;
    c.send(&pubrec(pid));
    c.expect("PUBREL", |p| *p == Packet::Pubrel(pid));
    c.drop_connection();

    let (mut c, _) = connect(b.addr(), &id);
    c.expect("the PUBREL sent again [MQTT-4.4.0-1]", |p| {
        *p == Packet::Pubrel(pid)
    });
    assert_eq!(
        c.recv_publish(QUIET),
        None,
        "[MQTT-4.3.3-1] no PUBLISH once the PUBREL was sent"
    );
    c.send(&pubcomp(pid));
    c.disconnect();
    let (mut c, _) = connect(b.addr(), &id);
    assert_eq!(c.recv(QUIET), None, "the exchange is over");
}

#[test]
fn mqtt_4_3_3_2_a_qos_2_publish_sent_twice_before_pubrel_is_delivered_once() {
    let b = Broker::anonymous();
    let mut sub = client(b.addr(), "once-sub");
    sub.subscribe(&[("once/t", 2)]);
    let mut publisher = client(b.addr(), "once-pub");
    await_route(&mut publisher, &mut sub, "once/t");

    let p = Publish::new("once/t", b"exactly", 2).pid(7);
    publisher.send(&p.encode());
    publisher.expect("PUBREC", |r| *r == Packet::Pubrec(7));
    publisher.send(&p.clone().dup().encode());
    publisher.expect("a PUBREC for the duplicate", |r| *r == Packet::Pubrec(7));
    publisher.send(&pubrel(7));
    publisher.expect("PUBCOMP", |r| *r == Packet::Pubcomp(7));
    let mut got = sub.take_n(1, WAIT);
    got.extend(sub.take_all(QUIET));
    assert_eq!(got.len(), 1, "delivered once: {got:?}");

    let next = Publish::new("once/t", b"new", 2).pid(7);
    publisher.send(&next.encode());
    publisher.expect("PUBREC", |r| *r == Packet::Pubrec(7));
    publisher.send(&pubrel(7));
    publisher.expect("PUBCOMP", |r| *r == Packet::Pubcomp(7));
    let got = sub.take(WAIT).expect("after PUBCOMP the identifier is new");
    assert_eq!(got.payload, b"new");
}

#[test]
fn mqtt_4_3_2_and_4_3_3_acknowledgements_carry_the_packet_identifier() {
    let b = Broker::anonymous();
    let mut c = client(b.addr(), "acks");
    c.subscribe(&[("acks/1", 1), ("acks/2", 2)]);
    c.send(&Publish::new("acks/1", b"a", 1).pid(300).encode());
    c.expect("PUBACK 300", |p| *p == Packet::Puback(300));
    let got = c.recv_publish(WAIT).expect("QoS 1 delivered");
    assert_eq!(got.qos, 1);
    assert_ne!(got.pid, 0, "[MQTT-2.3.1-1]");
    c.send(&puback(got.pid));

    c.send(&Publish::new("acks/2", b"b", 2).pid(301).encode());
    c.expect("PUBREC 301", |p| *p == Packet::Pubrec(301));
    c.send(&pubrel(301));
    c.expect("PUBCOMP 301", |p| *p == Packet::Pubcomp(301));
    let got = c.recv_publish(WAIT).expect("QoS 2 delivered");
    assert_eq!((got.qos, got.dup), (2, false));
    c.send(&pubrec(got.pid));
    let pid = got.pid;
    c.expect("[MQTT-3.6.1-1] PUBREL with flags 0010", |p| {
        *p == Packet::Pubrel(pid)
    });
    c.send(&pubcomp(pid));
    assert_eq!(c.recv(QUIET), None, "nothing more");
}

#[test]
fn qos_2_with_rumqttc_is_exactly_once_in_both_directions() {
    let b = Broker::anonymous();
    let (rsub, mut rsub_conn) = rumqtt(b.addr(), "rq-sub", |_| {});
    rumqtt_connack(&mut rsub_conn).expect("accepted");
    rsub.subscribe("rq/in", QoS::ExactlyOnce).unwrap();
    assert!(rumqtt_until(&mut rsub_conn, WAIT, |p| matches!(
        p,
        rumqttc::Packet::SubAck(_)
    )));
    let mut raw = client(b.addr(), "rq-raw");
    raw.subscribe(&[("rq/out", 2)]);

    let deadline = Instant::now() + WAIT;
    loop {
        raw.publish("rq/in", b"probe", 0, false);
        if !rumqtt_publishes(&mut rsub_conn, 1, Duration::from_millis(50)).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no route to the rumqttc client");
    }
    rumqtt_publishes(&mut rsub_conn, usize::MAX, Duration::from_millis(200));
    for i in 0..10 {
        raw.publish("rq/in", format!("m{i}").as_bytes(), 2, false);
    }
    let mut got = rumqtt_publishes(&mut rsub_conn, 10, WAIT);
    got.extend(rumqtt_publishes(&mut rsub_conn, usize::MAX, QUIET));
    let payloads: Vec<String> = got
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    let want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(payloads, want, "raw -> rumqttc, once each, in order");
    assert!(got.iter().all(|p| p.qos == QoS::ExactlyOnce));

    let (rpub, mut rpub_conn) = rumqtt(b.addr(), "rq-pub", |_| {});
    rumqtt_connack(&mut rpub_conn).expect("accepted");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let poller = std::thread::spawn(move || {
        let mut completed = 0;
        while !flag.load(Ordering::Relaxed) {
            if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubComp(_)))) =
                rpub_conn.recv_timeout(Duration::from_millis(50))
            {
                completed += 1;
            }
        }
        completed
    });
    let deadline = Instant::now() + WAIT;
    loop {
        rpub.publish("rq/out", QoS::AtMostOnce, false, "probe")
            .unwrap();
        if raw.recv_publish(Duration::from_millis(50)).is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no route from the rumqttc client"
        );
    }
    raw.drain();
    for i in 0..10 {
        rpub.publish("rq/out", QoS::ExactlyOnce, false, format!("n{i}"))
            .unwrap();
    }
    let mut got = raw.take_n(10, WAIT);
    got.extend(raw.take_all(QUIET));
    stop.store(true, Ordering::Relaxed);
    let completed = poller.join().expect("the poller does not panic");
    let payloads: Vec<String> = got
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    let want: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
    assert_eq!(payloads, want, "rumqttc -> raw, once each, in order");
    assert_eq!(completed, 10, "a PUBCOMP for each QoS 2 PUBLISH");
}

#[test]
fn mqtt_3_1_2_24_a_silent_client_is_closed_after_one_and_a_half_keep_alives_and_its_will_sent() {
    let b = Broker::anonymous();
    let mut watcher = client(b.addr(), "ka-watch");
    watcher.subscribe(&[("ka/will", 1)]);
    let (mut silent, _) = connect(
        b.addr(),
        &Connect::new("ka-silent")
            .keep_alive(2)
            .will("ka/will", b"gone", 1, false),
    );
    await_route(&mut silent, &mut watcher, "ka/will");
    assert!(
        !silent.closed_within(Duration::from_millis(1800)),
        "closed before the keep-alive period passed"
    );
    assert!(
        silent.closed_within(Duration::from_millis(2700)),
        "[MQTT-3.1.2-24] still open well after 1.5 x 2 s"
    );
    let will = watcher
        .take(WAIT)
        .expect("[MQTT-3.1.2-8] the will is published");
    assert_eq!(
        (will.topic.as_str(), will.payload.as_slice(), will.qos),
        ("ka/will", &b"gone"[..], 1)
    );
    assert!(!will.retain, "[MQTT-3.1.2-16] a will without retain");
}

#[test]
fn mqtt_3_12_4_1_pings_keep_a_short_keep_alive_connection_open() {
    let b = Broker::anonymous();
    let (mut c, _) = connect(b.addr(), &Connect::new("pinger").keep_alive(1));
    for i in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        assert!(c.ping(), "ping {i}: no PINGRESP");
    }
    assert!(!c.is_closed());
}

/// 3.1.2.10: "A Keep Alive value of zero (0) has the effect of turning off the keep alive
/// mechanism" (rumqttd refuses such a CONNECT, and so fails the Paho suite).
#[test]
fn keep_alive_0_is_accepted_and_never_times_out() {
    let b = Broker::start("allow_anonymous = true\nmax_keepalive = \"1s\"");
    let (mut c, ack) = handshake(b.addr(), &Connect::new("forever").keep_alive(0));
    assert_eq!(ack, Some((false, 0)));
    assert!(
        !c.closed_within(Duration::from_secs(3)),
        "closed although keep-alive is off (max_keepalive caps only non-zero values)"
    );
    assert!(c.ping());
}

#[test]
fn max_keepalive_caps_the_keep_alive_a_client_asks_for() {
    let b = Broker::start("allow_anonymous = true\nmax_keepalive = \"1s\"");
    let (mut c, ack) = handshake(b.addr(), &Connect::new("asks-long").keep_alive(600));
    assert_eq!(ack, Some((false, 0)), "accepted, with the cap applied");
    let start = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(4)),
        "a 600 s keep-alive was not capped to 1 s"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before even 1 s",
        start.elapsed()
    );
}

#[test]
fn mqtt_3_14_4_3_a_disconnect_discards_the_will() {
    let b = Broker::anonymous();
    let mut watcher = client(b.addr(), "will-watch");
    watcher.subscribe(&[("will/t", 1)]);
    let (mut w, _) = connect(
        b.addr(),
        &Connect::new("willer").will("will/t", b"unexpected", 1, false),
    );
    await_route(&mut w, &mut watcher, "will/t");
    w.disconnect();
    assert_eq!(
        watcher.recv_publish(Duration::from_secs(1)),
        None,
        "a will after DISCONNECT"
    );
}

#[test]
fn mqtt_3_1_2_8_a_connection_lost_without_disconnect_publishes_the_will() {
    let b = Broker::anonymous();
    let mut watcher = client(b.addr(), "lost-watch");
    watcher.subscribe(&[("will/lost", 2)]);
    let (mut w, _) = connect(
        b.addr(),
        &Connect::new("lost").will("will/lost", b"bye", 2, false),
    );
    await_route(&mut w, &mut watcher, "will/lost");
    w.drop_connection();
    let will = watcher.take(WAIT).expect("the will");
    assert_eq!((will.payload.as_slice(), will.qos), (&b"bye"[..], 2));
    assert_eq!(
        watcher.recv_publish(QUIET),
        None,
        "[MQTT-3.1.2-10] published once"
    );
}

#[test]
fn mqtt_3_1_2_17_a_will_with_retain_is_published_as_retained() {
    let b = Broker::anonymous();
    let mut watcher = client(b.addr(), "rw-watch");
    watcher.subscribe(&[("will/retained", 1)]);
    let (mut w, _) = connect(
        b.addr(),
        &Connect::new("rw").will("will/retained", b"last words", 1, true),
    );
    await_route(&mut w, &mut watcher, "will/retained");
    w.drop_connection();
    let live = watcher.take(WAIT).expect("the will");
    assert!(!live.retain, "[MQTT-3.3.1-9] live delivery has retain 0");
    let mut late = client(b.addr(), "rw-late");
    late.subscribe(&[("will/retained", 1)]);
    let kept = late.take(WAIT).expect("the will was retained");
    assert_eq!(kept.payload, b"last words");
    assert!(kept.retain, "[MQTT-3.3.1-8]");
}

#[test]
fn max_packet_size_closes_a_connection_that_sends_a_larger_packet() {
    let b = Broker::start("allow_anonymous = true\nmax_packet_size = \"1k\"");
    let mut watcher = client(b.addr(), "size-watch");
    watcher.subscribe(&[("size/#", 1)]);
    let mut big = client(b.addr(), "size-big");
    await_route(&mut big, &mut watcher, "size/probe");
    big.publish("size/ok", &[b'x'; 900], 1, false);
    assert_eq!(watcher.take(WAIT).map(|p| p.payload.len()), Some(900));

    let _ = big.try_send(&Publish::new("size/no", &[b'x'; 2000], 1).pid(9).encode());
    assert!(big.closed_within(WAIT), "a 2 KB packet over a 1 KB limit");
    assert!(
        !big.queued().contains(&Packet::Puback(9)),
        "the packet was taken"
    );

    let mut liar = client(b.addr(), "size-liar");
    liar.send(&[0x30, 0x80, 0x80, 0x40]);
    assert!(
        liar.closed_within(WAIT),
        "a fixed header announcing 1 MB closes before the body is read"
    );
    assert_eq!(watcher.recv_publish(QUIET), None);
    assert!(watcher.ping(), "other clients are not affected");
}

/// [MQTT-4.8.0-1]: a protocol violation closes the connection it came on, and nothing else.
#[test]
fn mqtt_4_8_0_1_malformed_packets_close_only_their_connection() {
    let b = Broker::anonymous();
    let workers = b.server.workers();
    let mut bystander = client(b.addr(), "bystander");
    bystander.subscribe(&[("mal/#", 1)]);
    let bad_utf8 = [0x00, 0x05, b'm', b'a', b'l', b'/', 0xff, b'x'];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "[MQTT-2.2.2-2] SUBSCRIBE with flags 0000",
            packet(0x80, &subscribe(1, &[("mal/x", 0)])[2..]),
        ),
        (
            "[MQTT-3.6.1-1] PUBREL with flags 0000",
            packet(0x60, &[0, 1]),
        ),
        (
            "[MQTT-3.10.1-1] UNSUBSCRIBE with flags 0000",
            packet(0xa0, &unsubscribe(1, &["mal/x"])[2..]),
        ),
        ("[MQTT-3.14.1-1] DISCONNECT with flags 0001", vec![0xe1, 0]),
        ("[MQTT-3.3.1-4] PUBLISH at QoS 3", {
            let mut p = Publish::new("mal/x", b"x", 1).pid(1).encode();
            p[0] |= 0x06;
            p
        }),
        (
            "[MQTT-3.3.2-2] a wildcard in a PUBLISH topic",
            Publish::new("mal/+", b"x", 0).encode(),
        ),
        (
            "[MQTT-4.7.3-1] an empty PUBLISH topic",
            Publish::new("", b"x", 0).encode(),
        ),
        (
            "[MQTT-1.5.3-1] ill-formed UTF-8 in a topic",
            packet(0x30, &bad_utf8),
        ),
        (
            "[MQTT-1.5.3-2] U+0000 in a topic",
            Publish::new("mal/\0", b"x", 0).encode(),
        ),
        (
            "[MQTT-2.3.1-1] PUBLISH QoS 1 with packet identifier 0",
            Publish::new("mal/x", b"x", 1).pid(0).encode(),
        ),
        (
            "[MQTT-2.3.1-1] SUBSCRIBE with packet identifier 0",
            subscribe(0, &[("mal/x", 0)]),
        ),
        (
            "[MQTT-3.8.3-3] SUBSCRIBE without a topic filter",
            packet(0x82, &[0, 1]),
        ),
        (
            "[MQTT-3-8.3-4] SUBSCRIBE asking for QoS 3",
            subscribe(1, &[("mal/x", 3)]),
        ),
        (
            "[MQTT-4.7.1-2] '#' not last in a filter",
            subscribe(1, &[("mal/#/x", 0)]),
        ),
        (
            "[MQTT-4.7.1-3] '+' not a whole level",
            subscribe(1, &[("mal/a+", 0)]),
        ),
        (
            "[MQTT-3.10.3-2] UNSUBSCRIBE without a topic filter",
            packet(0xa2, &[0, 1]),
        ),
        (
            "2.2.3: a remaining length of five bytes",
            vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
        ),
        ("2.2.1: reserved packet type 0", vec![0x00, 0x00]),
        ("2.2.1: reserved packet type 15", vec![0xf0, 0x00]),
        ("a CONNACK sent by a client", vec![0x20, 0x02, 0x00, 0x00]),
        ("3.12: PINGREQ with a body", vec![0xc0, 0x01, 0x00]),
    ];
    for (i, (what, bytes)) in cases.iter().enumerate() {
        let mut c = client(b.addr(), &format!("mal-{i}"));
        let _ = c.try_send(bytes);
        assert!(c.closed_within(WAIT), "{what}: the connection stayed open");
    }
    assert_eq!(
        bystander.recv_publish(QUIET),
        None,
        "a malformed PUBLISH was routed"
    );
    assert!(bystander.ping(), "the bystander's connection was hurt");
    let mut fresh = client(b.addr(), "mal-after");
    await_route(&mut fresh, &mut bystander, "mal/after");
    assert_eq!(b.server.workers(), workers, "a worker died");
}

#[test]
fn max_inflight_holds_qos_1_deliveries_until_they_are_acknowledged() {
    let b = Broker::start("allow_anonymous = true\nmax_inflight = 2");
    let mut c = client(b.addr(), "inflight");
    c.subscribe(&[("fl/t", 1)]);
    for i in 0..5u8 {
        c.publish("fl/t", &[b'0' + i], 1, false);
    }
    let mut unacked = Vec::new();
    while let Some(p) = c.recv_publish(QUIET) {
        unacked.push(p);
    }
    assert_eq!(
        unacked.iter().map(|p| p.payload[0]).collect::<Vec<_>>(),
        b"01",
        "at most max_inflight = 2 unacknowledged"
    );
    for p in &unacked {
        c.ack(p);
    }
    let rest = c.take_n(3, WAIT);
    assert_eq!(
        rest.iter().map(|p| p.payload[0]).collect::<Vec<_>>(),
        b"234",
        "the rest follow the acknowledgements, in order"
    );
}

/// Issue 4, point 5: a client that leaves its QoS 1 messages unacknowledged for
/// `stall_timeout` is disconnected (its will published: the client failed), and the others go on.
#[test]
fn a_client_that_leaves_qos_1_unacknowledged_is_disconnected_after_stall_timeout() {
    let b = Broker::start("allow_anonymous = true\nstall_timeout = \"1s\"");
    let mut watcher = client(b.addr(), "stall-watcher");
    watcher.subscribe(&[("will/stalled", 0)]);
    let (mut stalled, _) = connect(
        b.addr(),
        &Connect::new("stalled").will("will/stalled", b"gone", 0, false),
    );
    stalled.subscribe(&[("st/t", 1)]);
    let mut publisher = client(b.addr(), "stall-pub");
    await_route(&mut publisher, &mut stalled, "st/t");
    publisher.publish("st/t", b"never acknowledged", 1, false);
    assert!(stalled.recv_publish(WAIT).is_some());
    let started = Instant::now();
    assert!(
        stalled.closed_within(Duration::from_secs(5)),
        "closed for not acknowledging"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "not before the timeout"
    );
    let will = watcher.recv_publish(WAIT).expect("the will");
    assert_eq!(will.payload, b"gone");
    assert!(publisher.ping(), "the publisher is untouched");
}

/// A publisher's PUBACK does not wait for delivery on the subscriber's worker, so the test waits
/// for the drops to be counted before the subscriber returns: a message still on its way would
/// otherwise find the client online and be sent at once.
#[test]
fn max_queued_bounds_an_offline_session_and_counts_what_it_drops() {
    let b = Broker::start("allow_anonymous = true\nmax_queued = 3");
    let id = Connect::new("queue-bound").clean(false);
    let (mut sub, _) = connect(b.addr(), &id);
    sub.subscribe(&[("mq/t", 1)]);
    let mut publisher = client(b.addr(), "queue-pub");
    await_route(&mut publisher, &mut sub, "mq/t");
    sub.disconnect();
    let dropped = || b.metric_sum("bizzy_mqtt_messages_dropped_total");
    let before = dropped();
    for i in 0..6u8 {
        publisher.publish("mq/t", &[b'0' + i], 1, false);
    }
    assert!(
        common::eventually(WAIT, || dropped() - before >= 3.0),
        "6 messages for a queue of 3, {} drops counted",
        dropped() - before
    );
    let (mut sub, present) = connect(b.addr(), &id);
    assert!(present);
    let got = sub.take_all(Duration::from_secs(1));
    assert_eq!(
        got.iter().map(|p| p.payload[0]).collect::<Vec<_>>(),
        b"012",
        "the first max_queued = 3 kept, the ones that found the queue full dropped"
    );
    assert_eq!(dropped() - before, 3.0);
}
