//! MQTT routing against the real binary, written from the MQTT 3.1.1 standard (OASIS, 29 October
//! 2014): wildcards, `$` topics, overlapping subscriptions, delivery QoS, retained messages,
//! UNSUBSCRIBE, ordering, and pub/sub between clients on the two worker processes (raw sockets,
//! many rumqttc clients, and mosquitto_pub to mosquitto_sub). Each test names the numbered
//! statements ([MQTT-x.y.z-n]) it checks. Plus the `/metrics` figures and the outbound bound.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::eventually;
use common::mqtt::*;
use rumqttc::{AsyncClient, Event, MqttOptions, QoS};

/// Topics and payloads of `got`, for comparisons.
fn topics(got: &[Publish]) -> Vec<&str> {
    got.iter().map(|p| p.topic.as_str()).collect()
}

/// What a new client subscribing to `filter` at QoS `qos` receives within a moment.
fn new_subscriber_gets(b: &Broker, id: &str, filter: &str, qos: u8) -> Vec<Publish> {
    let mut c = client(b.addr(), id);
    assert_eq!(c.subscribe(&[(filter, qos)]), vec![qos]);
    c.take_all(Duration::from_millis(300))
}

#[test]
fn mqtt_4_7_1_3_plus_matches_exactly_one_level() {
    let b = Broker::anonymous();
    let mut c = client(b.addr(), "plus");
    c.subscribe(&[("s/+/c", 0), ("+", 0)]);
    for t in ["s/1/c", "s//c", "s/1/2/c", "s/c", "s/1/c/d", "top", "/top"] {
        c.publish(t, b"x", 0, false);
    }
    let got = c.take_all(QUIET);
    assert_eq!(topics(&got), vec!["s/1/c", "s//c", "top"]);
}

#[test]
fn mqtt_4_7_1_2_hash_matches_the_parent_and_every_level_below() {
    let b = Broker::anonymous();
    let mut c = client(b.addr(), "hash");
    c.subscribe(&[("h/#", 0)]);
    for t in ["h", "h/", "h/a", "h/a/b/c", "hh", "x/h/a", "/h"] {
        c.publish(t, b"x", 0, false);
    }
    let got = c.take_all(QUIET);
    assert_eq!(topics(&got), vec!["h", "h/", "h/a", "h/a/b/c"]);
}

#[test]
fn mqtt_4_7_2_1_leading_wildcards_do_not_match_dollar_topics() {
    let b = Broker::anonymous();
    let mut wild = client(b.addr(), "dollar-wild");
    wild.subscribe(&[("#", 0), ("+/info", 0), ("+/+", 0)]);
    let mut exact = client(b.addr(), "dollar-exact");
    exact.subscribe(&[("$test/#", 0)]);
    await_route(&mut wild, &mut exact, "$test/probe");
    wild.drain();
    wild.publish("$test/info", b"x", 1, false);
    assert_eq!(
        exact.take(WAIT).map(|p| p.topic),
        Some("$test/info".to_string()),
        "a filter starting with $ matches"
    );
    assert_eq!(
        wild.recv_publish(QUIET),
        None,
        "'#', '+/info' and '+/+' must not match $test/info"
    );
}

#[test]
fn mqtt_3_3_5_1_overlapping_subscriptions_deliver_once_at_the_highest_qos() {
    let b = Broker::anonymous();
    let mut c = client(b.addr(), "overlap");
    assert_eq!(c.subscribe(&[("TopicA/#", 2), ("TopicA/+", 1)]), vec![2, 1]);
    c.publish("TopicA/C", b"overlapping topic filters", 2, false);
    let mut got = c.take_n(1, WAIT);
    got.extend(c.take_all(QUIET));
    assert_eq!(
        got.len(),
        1,
        "one message for two matching filters: {got:?}"
    );
    assert_eq!(
        got[0].qos, 2,
        "the highest granted QoS (mosquitto issue #3319)"
    );

    let mut d = client(b.addr(), "overlap-2");
    d.subscribe(&[("o/+", 0), ("o/x", 1), ("#", 0)]);
    d.publish("o/x", b"y", 2, false);
    let mut got = d.take_n(1, WAIT);
    got.extend(d.take_all(QUIET));
    assert_eq!(got.iter().map(|p| p.qos).collect::<Vec<_>>(), vec![1]);
}

#[test]
fn mqtt_3_8_4_6_delivery_qos_is_the_lower_of_message_and_subscription() {
    let b = Broker::anonymous();
    let mut c = client(b.addr(), "downgrade");
    c.subscribe(&[("q/0", 0), ("q/1", 1), ("q/2", 2)]);
    let cases = [("q/0", 2, 0), ("q/1", 2, 1), ("q/2", 1, 1), ("q/2", 0, 0)];
    for (topic, sent, want) in cases {
        c.publish(topic, b"x", sent, false);
        let got = c.take(WAIT).expect("delivered");
        assert_eq!(got.qos, want, "{topic} published at QoS {sent}");
    }
}

#[test]
fn mqtt_3_8_4_3_a_repeated_filter_replaces_the_subscription() {
    let b = Broker::anonymous();
    let mut c = client(b.addr(), "resub");
    assert_eq!(c.subscribe(&[("r/x", 0)]), vec![0]);
    assert_eq!(c.subscribe(&[("r/x", 2)]), vec![2]);
    c.publish("r/x", b"x", 2, false);
    let mut got = c.take_n(1, WAIT);
    got.extend(c.take_all(QUIET));
    assert_eq!(got.iter().map(|p| p.qos).collect::<Vec<_>>(), vec![2]);
}

#[test]
fn mqtt_3_8_4_5_and_3_9_3_1_a_return_code_per_filter_in_order() {
    let b = Broker::anonymous();
    let mut c = client(b.addr(), "codes");
    let codes = c.subscribe(&[("c/2", 2), ("c/0", 0), ("c/1", 1), ("c/#", 2)]);
    assert_eq!(codes, vec![2, 0, 1, 2]);
}

#[test]
fn mqtt_3_3_1_5_and_3_3_1_8_a_retained_message_is_sent_to_new_subscribers_with_retain_set() {
    let b = Broker::anonymous();
    let mut c = client(b.addr(), "ret-pub");
    c.publish("ret/a", b"kept", 1, true);
    c.publish("ret/b/c", b"deep", 2, true);
    c.subscribe(&[("ret/#", 2)]);
    let mut got = c.take_n(2, WAIT);
    got.sort_by(|x, y| x.topic.cmp(&y.topic));
    assert_eq!(topics(&got), vec!["ret/a", "ret/b/c"], "[MQTT-3.3.1-6]");
    assert!(got.iter().all(|p| p.retain), "[MQTT-3.3.1-8]");
    assert_eq!(
        got.iter().map(|p| p.qos).collect::<Vec<_>>(),
        vec![1, 2],
        "[MQTT-3.3.1-5] stored with its QoS"
    );
    let low = new_subscriber_gets(&b, "ret-low", "ret/b/c", 0);
    assert_eq!(low.iter().map(|p| p.qos).collect::<Vec<_>>(), vec![0]);
}

#[test]
fn mqtt_3_3_1_9_delivery_on_an_established_subscription_has_retain_0() {
    let b = Broker::anonymous();
    let mut c = client(b.addr(), "live");
    c.subscribe(&[("live/t", 1)]);
    c.publish("live/t", b"x", 1, true);
    let got = c.take(WAIT).expect("delivered");
    assert!(!got.retain);
}

#[test]
fn mqtt_3_3_1_7_a_new_retained_message_replaces_the_old_one() {
    let b = Broker::anonymous();
    let mut c = client(b.addr(), "replace");
    c.publish("rep/t", b"v1", 1, true);
    c.publish("rep/t", b"v2", 0, true);
    c.subscribe(&[("rep/t", 1)]);
    let mut got = c.take_n(1, WAIT);
    got.extend(c.take_all(QUIET));
    assert_eq!(
        got.iter()
            .map(|p| (p.payload.as_slice(), p.qos))
            .collect::<Vec<_>>(),
        vec![(&b"v2"[..], 0)],
        "a QoS 0 retained message replaces too"
    );
}

#[test]
fn mqtt_3_3_1_10_an_empty_retained_message_is_delivered_and_deletes() {
    let b = Broker::anonymous();
    let mut c = client(b.addr(), "delete");
    c.publish("del/t", b"v1", 1, true);
    c.subscribe(&[("del/t", 1)]);
    assert_eq!(c.take(WAIT).map(|p| p.payload), Some(b"v1".to_vec()));
    c.publish("del/t", b"", 1, true);
    let live = c.take(WAIT).expect("sent to current subscribers as normal");
    assert_eq!((live.payload.len(), live.retain), (0, false));
    c.unsubscribe(&["del/t"]);
    c.subscribe(&[("del/t", 1)]);
    assert_eq!(
        c.recv_publish(QUIET),
        None,
        "[MQTT-3.3.1-11] nothing retained"
    );
}

#[test]
fn mqtt_3_3_1_12_a_publish_without_retain_leaves_the_retained_message() {
    let b = Broker::anonymous();
    let mut c = client(b.addr(), "leave");
    c.publish("leave/t", b"kept", 1, true);
    c.publish("leave/t", b"passing", 1, false);
    c.subscribe(&[("leave/t", 1)]);
    let mut got = c.take_n(1, WAIT);
    got.extend(c.take_all(QUIET));
    assert_eq!(
        got.iter().map(|p| p.payload.as_slice()).collect::<Vec<_>>(),
        vec![&b"kept"[..]]
    );
}

#[test]
fn retained_messages_are_seen_from_both_workers_and_counted() {
    let b = Broker::anonymous();
    let mut a = client(b.addr(), "rw-a");
    let (mut other, _rest) = b.client_on_other_worker(&a, "rw-b");
    let before = b.metric("bizzy_mqtt_retained_messages").unwrap_or(0.0);
    a.publish("xret/t", b"from a", 1, true);
    assert!(
        eventually(WAIT, || {
            other.subscribe(&[("xret/t", 1)]);
            let got = other.take_all(Duration::from_millis(200));
            other.unsubscribe(&["xret/t"]);
            got.iter().any(|p| p.retain && p.payload == b"from a")
        }),
        "a retained message published on one worker is not seen on the other"
    );
    assert!(eventually(WAIT, || b
        .metric("bizzy_mqtt_retained_messages")
        == Some(before + 1.0)));
    other.publish("xret/t", b"", 0, true);
    assert!(
        eventually(WAIT, || {
            a.subscribe(&[("xret/t", 1)]);
            let got = a.take_all(Duration::from_millis(200));
            a.unsubscribe(&["xret/t"]);
            got.is_empty()
        }),
        "a deletion on one worker is not seen on the other"
    );
    assert!(eventually(WAIT, || b
        .metric("bizzy_mqtt_retained_messages")
        == Some(before)));
}

#[test]
fn mqtt_3_10_4_unsubscribe_stops_delivery_and_is_always_acknowledged() {
    let b = Broker::anonymous();
    let mut c = client(b.addr(), "unsub");
    c.subscribe(&[("u/a", 1), ("u/b", 1), ("u/+", 0)]);
    c.unsubscribe(&["u/a"]);
    c.publish("u/a", b"x", 1, false);
    let got = c.take(WAIT).expect("u/+ still matches");
    assert_eq!(
        got.qos, 0,
        "[MQTT-3.10.4-1] only the identical filter u/a was removed"
    );
    c.unsubscribe(&["u/b", "u/+"]);
    c.publish("u/a", b"x", 1, false);
    c.publish("u/b", b"x", 1, false);
    assert_eq!(c.recv_publish(QUIET), None, "[MQTT-3.10.4-2]");
    c.unsubscribe(&["never/subscribed"]);
    assert!(
        c.ping(),
        "[MQTT-3.10.4-5] UNSUBACK even with nothing removed"
    );
}

/// [MQTT-4.6.0-6]: PUBLISH packets of one topic and QoS reach a subscriber in the order one
/// client sent them.
#[test]
fn mqtt_4_6_0_6_messages_from_one_client_arrive_in_order_across_workers() {
    let b = Broker::anonymous();
    let mut sub = client(b.addr(), "order-sub");
    sub.subscribe(&[("order/#", 2)]);
    let (mut publisher, _rest) = b.client_on_other_worker(&sub, "order-pub");
    await_route(&mut publisher, &mut sub, "order/probe");
    for i in 0..150u32 {
        let qos = (i % 3) as u8;
        publisher.publish(&format!("order/{qos}"), &i.to_be_bytes(), qos, false);
    }
    let got = sub.take_n(150, WAIT);
    assert_eq!(got.len(), 150);
    for qos in 0..3u8 {
        let seen: Vec<u32> = got
            .iter()
            .filter(|p| p.topic == format!("order/{qos}"))
            .map(|p| u32::from_be_bytes(p.payload[..4].try_into().expect("4 bytes")))
            .collect();
        let want: Vec<u32> = (0..150).filter(|i| i % 3 == u32::from(qos)).collect();
        assert_eq!(seen, want, "QoS {qos}");
    }
}

#[test]
fn pub_sub_crosses_worker_processes_at_every_qos() {
    let b = Broker::anonymous();
    let mut a = client(b.addr(), "xw-a");
    let (mut c, _rest) = b.client_on_other_worker(&a, "xw-b");
    assert_ne!(b.worker_of(&a), b.worker_of(&c));
    a.subscribe(&[("xw/#", 2)]);
    c.subscribe(&[("xw/#", 2)]);
    await_route(&mut c, &mut a, "xw/probe");
    await_route(&mut a, &mut c, "xw/probe");
    for qos in 0..=2u8 {
        a.publish(&format!("xw/a/{qos}"), b"from a", qos, false);
        c.publish(&format!("xw/c/{qos}"), b"from c", qos, false);
    }
    for (name, s) in [("a", &mut a), ("c", &mut c)] {
        let mut got = s.take_n(6, WAIT);
        got.extend(s.take_all(QUIET));
        let mut seen: Vec<(String, u8)> = got.iter().map(|p| (p.topic.clone(), p.qos)).collect();
        seen.sort();
        let want: Vec<(String, u8)> = ["a", "c"]
            .iter()
            .flat_map(|w| (0..=2u8).map(move |q| (format!("xw/{w}/{q}"), q)))
            .collect();
        assert_eq!(seen, want, "client {name}: each message once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_rumqttc_clients_each_receive_every_message() {
    const SUBSCRIBERS: usize = 40;
    const MESSAGES: usize = 20;
    let b = Broker::anonymous();
    let port = b.port;
    let ready = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..SUBSCRIBERS {
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            let mut o = MqttOptions::new(format!("fan-{i}"), "127.0.0.1", port);
            o.set_keep_alive(Duration::from_secs(30));
            let (client, mut events) = AsyncClient::new(o, 16);
            client.subscribe("fan/all", QoS::AtLeastOnce).await.unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            let (mut probed, mut got) = (false, Vec::new());
            while got.len() < MESSAGES {
                match tokio::time::timeout_at(deadline, events.poll()).await {
                    Ok(Ok(Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                        if &p.payload[..] != b"probe" {
                            got.push(String::from_utf8_lossy(&p.payload).into_owned());
                        } else if !probed {
                            probed = true;
                            ready.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) | Err(_) => break,
                }
            }
            got
        }));
    }
    let mut o = MqttOptions::new("fan-pub", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    let (publisher, mut events) = AsyncClient::new(o, 64);
    let poller = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready.load(Ordering::SeqCst) < SUBSCRIBERS {
        assert!(
            Instant::now() < deadline,
            "{} of {SUBSCRIBERS} subscribers reached",
            ready.load(Ordering::SeqCst)
        );
        publisher
            .publish("fan/all", QoS::AtMostOnce, false, "probe")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let per_worker = b.mqtt_connections_by_worker();
    eprintln!("connections per worker: {per_worker:?}");
    for m in 0..MESSAGES {
        publisher
            .publish("fan/all", QoS::AtLeastOnce, false, format!("m{m:02}"))
            .await
            .unwrap();
    }
    let want: Vec<String> = (0..MESSAGES).map(|m| format!("m{m:02}")).collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let got = t.await.expect("the subscriber task does not panic");
        assert_eq!(got, want, "subscriber {i}");
    }
    poller.abort();
}

#[test]
fn mosquitto_pub_reaches_mosquitto_sub() {
    let b = Broker::anonymous();
    let out = mosquitto_pub(
        b.addr(),
        &["-t", "cli/retained", "-m", "kept", "-q", "1", "-r"],
    );
    assert!(
        out.status.success(),
        "mosquitto_pub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sub = mosquitto_sub(
        b.addr(),
        &[
            "-t",
            "cli/#",
            "-q",
            "1",
            "-i",
            "cli-sub",
            "-F",
            "%r %q %t %p",
            "-W",
            "10",
        ],
    );
    let stdout = sub.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(WAIT).expect("the retained message");
    assert_eq!(first, "1 1 cli/retained kept", "[MQTT-3.3.1-8]");
    let mut live = None;
    for i in 0..20 {
        let out = mosquitto_pub(
            b.addr(),
            &["-t", "cli/live", "-m", &format!("hello-{i}"), "-q", "1"],
        );
        assert!(out.status.success());
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(250)) {
            live = Some(line);
            break;
        }
    }
    let live = live.expect("mosquitto_sub got no live message");
    assert!(live.starts_with("0 1 cli/live hello-"), "{live}");
    let out = finish(sub, Duration::ZERO);
    reader.join().expect("the reader does not panic");
    assert!(
        out.stderr.is_empty(),
        "mosquitto_sub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_count_clients_and_messages_by_qos() {
    let b = Broker::anonymous();
    let series = |kind: &str, qos: u8| format!("bizzy_mqtt_messages_{kind}_total{{qos=\"{qos}\"}}");
    let value = |s: &str| b.metric(s).unwrap_or(0.0);
    let connected = b
        .metric("bizzy_mqtt_clients_connected")
        .expect("bizzy_mqtt_clients_connected is exported");
    let received: Vec<f64> = (0..3).map(|q| value(&series("received", q))).collect();
    let sent: Vec<f64> = (0..3).map(|q| value(&series("sent", q))).collect();

    let mut c = client(b.addr(), "met-1");
    let d = client(b.addr(), "met-2");
    assert!(eventually(WAIT, || b
        .metric("bizzy_mqtt_clients_connected")
        == Some(connected + 2.0)));
    c.subscribe(&[("met/#", 2)]);
    for q in 0..3u8 {
        c.publish(&format!("met/{q}"), b"x", q, false);
    }
    assert_eq!(c.take_n(3, WAIT).len(), 3);
    for q in 0..3u8 {
        let i = usize::from(q);
        assert!(
            eventually(WAIT, || value(&series("received", q)) == received[i] + 1.0),
            "received qos {q}: {}",
            value(&series("received", q))
        );
        assert!(
            eventually(WAIT, || value(&series("sent", q)) == sent[i] + 1.0),
            "sent qos {q}: {}",
            value(&series("sent", q))
        );
    }
    d.drop_connection();
    assert!(eventually(WAIT, || b
        .metric("bizzy_mqtt_clients_connected")
        == Some(connected + 1.0)));
}

/// A QoS 0 subscriber that stops reading fills its outbound queue; what overflows is dropped and
/// counted, and the publisher and the other clients go on being served.
#[test]
fn a_subscriber_that_does_not_read_loses_qos_0_messages_counted_and_slows_no_one() {
    let b = Broker::start("allow_anonymous = true\nmax_queued = 100");
    let mut stuck = client(b.addr(), "stuck");
    stuck.subscribe(&[("flood/#", 0)]);
    let mut publisher = client(b.addr(), "flood-pub");
    await_route(&mut publisher, &mut stuck, "flood/probe");
    let dropped = b.metric_sum("bizzy_mqtt_messages_dropped_total");
    let payload = [b'x'; 1024];
    for _ in 0..20_000 {
        publisher.publish("flood/t", &payload, 0, false);
    }
    assert!(publisher.ping(), "the publisher is still served");
    let mut other = client(b.addr(), "flood-other");
    assert!(other.ping(), "new clients are still served");
    assert!(
        eventually(WAIT, || b.metric_sum("bizzy_mqtt_messages_dropped_total")
            > dropped),
        "20 MB to a client that reads nothing, and no drop counted"
    );
}
