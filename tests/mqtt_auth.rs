//! MQTT authentication and authorisation against the real binary: CONNACK return codes 4 and 5
//! (MQTT 3.1.1, 3.2.2.3), `mqtt.password_file` in mosquitto_passwd's format, `mqtt.acl_file` in
//! mosquitto's syntax (SUBACK 0x80 for a refused filter, [MQTT-3.9.3-2]; a refused PUBLISH
//! dropped, [MQTT-3.3.5-2]), and `mqtt.connect_rate`.

mod common;

use std::time::{Duration, Instant};

use common::eventually;
use common::mqtt::*;

/// Made with mosquitto_passwd 2.0.11 (`mosquitto_passwd -b -c FILE sensor-1 s3cret`, then
/// `-b FILE display d1splay` and `-b FILE sensor-2 sensor-2-secret`): PBKDF2-SHA512 `$7$` hashes.
/// Fixed lines, since mosquitto_passwd comes with the broker package, not with the clients.
const PASSWD: &str = "\
sensor-1:$7$101$EYnLglCcFWIoC5q4$MiOuCrVeEQ4vAnnn3jfh83+6yX9/fWc4ErASlii3bvbAr6JW4H364BofBeJ3OjNM4RQziR4e2Em74v0t/gZOMg==
display:$7$101$7bflO4nOR+HWVpFp$6yFDehVleXc1c9bnAIbm9llj8/fu1duQnzrbKLlm8SZVW1GL4OPMt9Ug+VSrzUU117Wz6Eu0liGmvW89CNrnkA==
sensor-2:$7$101$TQmBs4/NGaYsDbcU$MaYJX8qNjeNeK+c/sqL94bB+WdhFd4dAMvP5lVDLPpG1E8auvbPXVc3Yo4njiRNGeHMegHVw+x2NIfVTKJ01oA==
";

const ACL: &str = "\
# anonymous clients
topic read public/#
topic write public/anon

user sensor-1
topic write sensors/sensor-1/#
topic deny sensors/sensor-1/secret

user display
topic read hives/+/occupancy
topic read sensors/#

pattern write sensors/%u/#
pattern read commands/sensor/%c
";

fn auth_broker(anonymous: bool) -> Broker {
    Broker::start_with(
        &format!(
            "allow_anonymous = {anonymous}\npassword_file = \"conf/mqtt.passwd\"\nacl_file = \"conf/mqtt.acl\""
        ),
        &[("conf/mqtt.passwd", PASSWD), ("conf/mqtt.acl", ACL)],
    )
}

/// The CONNACK for `c`, and whether the server then closed the connection.
fn answer(b: &Broker, c: &Connect) -> (Option<(bool, u8)>, bool) {
    let (mut client, ack) = handshake(b.addr(), c);
    let closed = client.closed_within(if matches!(ack, Some((_, 0))) {
        QUIET
    } else {
        WAIT
    });
    (ack, closed)
}

#[test]
fn connack_5_refuses_anonymous_clients_unless_allowed() {
    let b = Broker::start("");
    assert_eq!(
        answer(&b, &Connect::new("anon")),
        (Some((false, 5)), true),
        "0x05 not authorised, then a close [MQTT-3.2.2-5]"
    );
    let open = Broker::start("allow_anonymous = true");
    assert_eq!(
        answer(&open, &Connect::new("anon")),
        (Some((false, 0)), false)
    );
}

#[test]
fn connack_4_refuses_a_wrong_password_and_0_accepts_the_right_one() {
    let b = auth_broker(false);
    let cases = [
        (
            Connect::new("s1").login("sensor-1", "s3cret"),
            0,
            "right password",
        ),
        (
            Connect::new("d").login("display", "d1splay"),
            0,
            "second user",
        ),
        (
            Connect::new("s1").login("sensor-1", "wrong"),
            4,
            "wrong password",
        ),
        (
            Connect::new("s1").login("sensor-1", ""),
            4,
            "empty password",
        ),
        (
            Connect::new("x").login("nobody", "s3cret"),
            4,
            "unknown user",
        ),
        (Connect::new("x"), 5, "no user name"),
    ];
    for (c, code, what) in cases {
        let (ack, closed) = answer(&b, &c);
        assert_eq!(ack, Some((false, code)), "{what}");
        assert_eq!(closed, code != 0, "{what}: [MQTT-3.2.2-5]");
    }
    let mut no_password = Connect::new("s1");
    no_password.username = Some("sensor-1".into());
    assert_eq!(answer(&b, &no_password).0, Some((false, 4)), "no password");
}

#[test]
fn mqtt_3_1_4_5_a_refused_connect_is_not_processed_further() {
    let b = auth_broker(false);
    let mut watcher = connect(b.addr(), &Connect::new("w").login("display", "d1splay")).0;
    watcher.subscribe(&[("sensors/#", 1)]);
    let mut bytes = Connect::new("s1").login("sensor-1", "wrong").encode();
    bytes.extend(Publish::new("sensors/sensor-1/x", b"sneaked", 0).encode());
    let mut c = Client::open(b.addr());
    c.send(&bytes);
    assert_eq!(
        c.recv(WAIT),
        Some(Packet::Connack {
            session_present: false,
            code: 4
        })
    );
    assert!(c.closed_within(WAIT));
    assert_eq!(
        watcher.recv_publish(QUIET),
        None,
        "a PUBLISH after a refusal"
    );
}

#[test]
fn rumqttc_sees_the_return_codes() {
    let b = auth_broker(false);
    let (_c, mut conn) = rumqtt(b.addr(), "r-ok", |o| {
        o.set_credentials("sensor-1", "s3cret");
    });
    let ack = rumqtt_connack(&mut conn).expect("accepted");
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    let (_c, mut conn) = rumqtt(b.addr(), "r-bad", |o| {
        o.set_credentials("sensor-1", "nope");
    });
    assert_eq!(
        rumqtt_connack(&mut conn).err(),
        Some(Some(rumqttc::ConnectReturnCode::BadUserNamePassword)),
        "a wrong password"
    );
    let (_c, mut conn) = rumqtt(b.addr(), "r-anon", |_| {});
    assert_eq!(
        rumqtt_connack(&mut conn).err(),
        Some(Some(rumqttc::ConnectReturnCode::NotAuthorized)),
        "anonymous"
    );
}

#[test]
fn mosquitto_clients_log_in_with_a_password() {
    let b = auth_broker(false);
    let ok = mosquitto_pub(
        b.addr(),
        &[
            "-u",
            "sensor-1",
            "-P",
            "s3cret",
            "-t",
            "sensors/sensor-1/c",
            "-m",
            "1",
            "-q",
            "1",
        ],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = mosquitto_pub(
        b.addr(),
        &[
            "-u",
            "sensor-1",
            "-P",
            "bad",
            "-t",
            "sensors/sensor-1/c",
            "-m",
            "1",
        ],
    );
    assert!(!bad.status.success(), "a wrong password was accepted");
}

#[test]
fn mqtt_3_9_3_2_an_acl_refused_filter_gets_0x80_and_the_others_their_qos() {
    let b = auth_broker(false);
    let (mut d, _) = connect(b.addr(), &Connect::new("d").login("display", "d1splay"));
    let codes = d.subscribe(&[
        ("hives/+/occupancy", 1),
        ("hives/#", 1),
        ("commands/sensor/other", 0),
        ("hives/7/occupancy", 2),
    ]);
    assert_eq!(
        codes,
        vec![1, 0x80, 0x80, 2],
        "[MQTT-3.8.4-5] a code per filter, 0x80 for the refused ones"
    );
    assert!(d.ping(), "a refused filter does not close the connection");
}

#[test]
fn mqtt_3_3_5_2_a_refused_publish_is_dropped_and_counted() {
    let b = auth_broker(false);
    let (mut d, _) = connect(b.addr(), &Connect::new("d").login("display", "d1splay"));
    d.subscribe(&[("sensors/#", 1)]);
    let (mut s, _) = connect(b.addr(), &Connect::new("s1").login("sensor-1", "s3cret"));
    await_route(&mut s, &mut d, "sensors/sensor-1/probe");
    let dropped = b.metric_sum("bizzy_mqtt_messages_dropped_total");
    for (topic, why) in [
        ("sensors/sensor-2/counter", "another sensor's topic"),
        ("sensors/sensor-1/secret", "a deny rule wins over a grant"),
        ("public/anon", "an anonymous rule"),
    ] {
        s.send(&Publish::new(topic, b"x", 1).pid(77).encode());
        match s.recv(WAIT) {
            Some(Packet::Puback(77)) => {}
            None if s.is_closed() => {
                panic!(
                    "{why}: closed; the issue asks for a drop (both are allowed by [MQTT-3.3.5-2])"
                )
            }
            other => panic!("{why}: {other:?} instead of a PUBACK"),
        }
        s.publish(topic, b"x", 2, false);
        assert_eq!(d.recv_publish(QUIET), None, "{why}: delivered");
    }
    assert!(
        eventually(WAIT, || b.metric_sum("bizzy_mqtt_messages_dropped_total")
            >= dropped + 6.0),
        "six refused PUBLISHes, {} drops counted",
        b.metric_sum("bizzy_mqtt_messages_dropped_total") - dropped
    );
    s.publish("sensors/sensor-1/counter", b"ok", 1, false);
    assert_eq!(
        d.take(WAIT).map(|p| p.payload),
        Some(b"ok".to_vec()),
        "the client's own topic still works"
    );
}

#[test]
fn acl_patterns_put_in_the_user_name_and_client_id() {
    let b = auth_broker(false);
    let (mut d, _) = connect(b.addr(), &Connect::new("d").login("display", "d1splay"));
    d.subscribe(&[("sensors/#", 1)]);
    let (mut s2, _) = connect(
        b.addr(),
        &Connect::new("dev-9").login("sensor-2", "sensor-2-secret"),
    );
    await_route(&mut s2, &mut d, "sensors/sensor-2/probe");
    s2.publish("sensors/sensor-1/counter", b"not mine", 1, false);
    s2.publish("sensors/sensor-2/counter", b"mine", 1, false);
    let got = d.take_all(QUIET);
    assert_eq!(
        got.iter().map(|p| p.topic.as_str()).collect::<Vec<_>>(),
        vec!["sensors/sensor-2/counter"],
        "pattern write sensors/%u/#"
    );
    assert_eq!(
        s2.subscribe(&[("commands/sensor/dev-9", 1), ("commands/sensor/dev-8", 1)]),
        vec![1, 0x80],
        "pattern read commands/sensor/%c"
    );
}

#[test]
fn rules_before_the_first_user_line_are_for_anonymous_clients() {
    let b = auth_broker(true);
    let mut anon = client(b.addr(), "anon");
    assert_eq!(
        anon.subscribe(&[("public/#", 1), ("sensors/#", 1), ("hives/+/occupancy", 1)]),
        vec![1, 0x80, 0x80]
    );
    anon.publish("public/anon", b"hello", 1, false);
    assert_eq!(anon.take(WAIT).map(|p| p.payload), Some(b"hello".to_vec()));
    let (mut d, _) = connect(b.addr(), &Connect::new("d").login("display", "d1splay"));
    assert_eq!(
        d.subscribe(&[("public/#", 1)]),
        vec![0x80],
        "a user does not get the anonymous rules"
    );
}

/// The Paho interoperability suite's subscribe-failure test wants SUBACK 0x80 for
/// `test/nosubscribe`, while its other tests subscribe to `+/+` and `#` on the same broker and
/// expect them granted. mosquitto's ACL model allows both: a deny rule refuses a filter inside the
/// denied topics, and a wider filter is granted but never delivers a denied topic (mosquitto
/// 2.0.11 itself grants even `test/nosubscribe` and drops at delivery instead).
#[test]
fn paho_nosubscribe_gets_0x80_while_wider_filters_are_granted_without_the_denied_topic() {
    let acl = "topic deny test/nosubscribe\ntopic readwrite #\n\nuser sensor-1\ntopic write #\n";
    let b = Broker::start_with(
        "allow_anonymous = true\npassword_file = \"conf/mqtt.passwd\"\nacl_file = \"conf/mqtt.acl\"",
        &[("conf/mqtt.passwd", PASSWD), ("conf/mqtt.acl", acl)],
    );
    let mut c = client(b.addr(), "myclientid");
    assert_eq!(c.subscribe(&[("test/nosubscribe", 2)]), vec![0x80]);
    assert_eq!(
        c.subscribe(&[("+/+", 2), ("TopicA/#", 2), ("#", 0)]),
        vec![2, 2, 0],
        "filters wider than the denied topic, as the rest of the suite subscribes"
    );
    let (mut s, _) = connect(b.addr(), &Connect::new("s1").login("sensor-1", "s3cret"));
    await_route(&mut s, &mut c, "TopicA/probe");
    s.publish("test/nosubscribe", b"denied", 1, false);
    s.publish("TopicA/B", b"open", 1, false);
    let mut got = c.take_n(1, WAIT);
    got.extend(c.take_all(QUIET));
    assert_eq!(
        got.iter().map(|p| p.topic.as_str()).collect::<Vec<_>>(),
        vec!["TopicA/B"],
        "a denied topic reached a wide filter"
    );
}

#[test]
fn connect_rate_limits_connects_per_address() {
    let b = Broker::start("allow_anonymous = true\nconnect_rate = \"5r/s\"");
    let mut clients: Vec<Client> = (0..30)
        .map(|i| {
            let mut c = Client::open(b.addr());
            c.send(&Connect::new(&format!("rate-{i}")).encode());
            c
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(1);
    let accepted = clients
        .iter_mut()
        .map(|c| {
            let left = deadline.saturating_duration_since(Instant::now());
            matches!(c.recv(left), Some(Packet::Connack { code: 0, .. }))
        })
        .filter(|accepted| *accepted)
        .count();
    // All 30 arrive within a fraction of a second: each worker's burst of one second's worth
    // (5) plus what refills meanwhile, over two workers, stays well under 15.
    assert!(
        (1..=15).contains(&accepted),
        "{accepted} of 30 CONNECTs within a second accepted at 5r/s"
    );
    drop(clients);
    std::thread::sleep(Duration::from_secs(2));
    let (_c, ack) = handshake(b.addr(), &Connect::new("rate-later"));
    assert_eq!(ack, Some((false, 0)), "accepted again once the rate allows");
}
