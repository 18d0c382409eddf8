//! The patterns over inproc links and over ipc channels: pipeline, request/reply with
//! out-of-order answers, publish/subscribe with prefixes, forwarding and conflation, and
//! credit-based flow control.

use std::time::{Duration, Instant};

use bizzy::core::queue::pubsub::{self, message};
use bizzy::core::queue::{
    Context, CreditReceiver, CreditSender, Endpoint, IpcChannel, IpcPair, Link, Msg, PipeOptions,
    Pub, Pull, Push, RecvError, Rep, Req, SendError, Sub,
};

fn small_ctx(hwm: usize) -> Context {
    Context::with_options(PipeOptions {
        hwm,
        batching: true,
    })
}

/// Retries a non-blocking receive for a while: ipc bytes take a moment to cross.
fn settle<T>(mut f: impl FnMut() -> Result<T, RecvError>) -> Result<T, RecvError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match f() {
            Err(RecvError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            other => return other,
        }
    }
}

fn ipc_pair() -> (IpcChannel, IpcChannel) {
    IpcPair::new().expect("socketpair").into_ends()
}

fn push_pull<L: Link>(a: Vec<L>, b: Vec<L>) {
    let mut push = Push::new();
    let mut pull = Pull::new();
    for l in a {
        push.attach(l);
    }
    for l in b {
        pull.attach(l);
    }
    for i in 0..6u8 {
        push.send(Msg::new(&[i])).expect("room");
    }
    let mut got: Vec<u8> = (0..6)
        .map(|_| settle(|| pull.try_recv()).expect("msg")[0])
        .collect();
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
    assert!(pull.try_recv().unwrap_err().is_would_block());
}

#[test]
fn pipeline_over_inproc_round_robins_and_fair_queues() {
    let ctx = Context::new();
    let (a1, b1) = ctx.pair().expect("pair");
    let (a2, b2) = ctx.pair().expect("pair");
    push_pull(vec![a1, a2], vec![b1, b2]);
}

#[test]
fn pipeline_over_ipc() {
    let (a, b) = ipc_pair();
    push_pull(vec![a], vec![b]);
}

#[test]
fn push_skips_full_links_and_would_block_when_all_are_full() {
    let ctx = small_ctx(2);
    let (a1, mut b1) = ctx.pair().expect("pair");
    let (a2, mut b2) = ctx.pair().expect("pair");
    let mut push = Push::new();
    push.attach(a1);
    push.attach(a2);
    for i in 0..4u8 {
        push.send(Msg::new(&[i])).expect("room somewhere");
    }
    let back = push.send(Msg::new(&[9])).unwrap_err();
    assert!(back.is_would_block(), "both links at their high-water mark");
    assert_eq!(back.into_inner()[0], 9);
    assert_eq!(b1.rx.try_recv().expect("first")[0], 0);
    assert_eq!(b2.rx.try_recv().expect("second")[0], 1);
}

fn req_rep<L: Link>(client: L, server: L) {
    let mut req = Req::new(client);
    let mut rep = Rep::new();
    rep.attach(server);
    let slow = req.request(Msg::new(b"slow query")).expect("send");
    let fast = req.request(Msg::new(b"fast query")).expect("send");
    assert_ne!(slow, fast);
    let (to_slow, q1) = settle(|| rep.try_recv()).expect("first request");
    let (to_fast, q2) = settle(|| rep.try_recv()).expect("second request");
    assert_eq!((&*q1, &*q2), (&b"slow query"[..], &b"fast query"[..]));
    // The fast answer goes first.
    rep.reply(to_fast, Msg::new(b"fast answer")).expect("reply");
    rep.reply(to_slow, Msg::new(b"slow answer")).expect("reply");
    let first = settle(|| req.try_recv()).expect("reply");
    let second = settle(|| req.try_recv()).expect("reply");
    assert_eq!((first.id(), &*first), (fast, &b"fast answer"[..]));
    assert_eq!((second.id(), &*second), (slow, &b"slow answer"[..]));
    assert_eq!(req.outstanding(), 0);
    rep.reply(to_fast, Msg::new(b"again"))
        .expect("a duplicate is sent");
    assert!(
        matches!(settle(|| req.try_recv()), Err(RecvError::Io(_))),
        "and refused, not lost"
    );
}

#[test]
fn request_reply_out_of_order_over_inproc() {
    let ctx = Context::new();
    let (a, b) = ctx.pair().expect("pair");
    req_rep(a, b);
}

#[test]
fn request_reply_out_of_order_over_ipc() {
    let (a, b) = ipc_pair();
    req_rep(a, b);
}

fn pub_sub<L: Link>(pub_side: Vec<L>, sub_side: Vec<L>) {
    let mut publisher = Pub::new();
    let mut subs: Vec<Sub<L>> = Vec::new();
    for l in pub_side {
        publisher.attach(l, false);
    }
    for l in sub_side {
        let mut s = Sub::new();
        s.attach(l).expect("attach");
        subs.push(s);
    }
    subs[0].subscribe(b"hives/7/").expect("subscribe");
    subs[1].subscribe(b"hives/").expect("subscribe");
    // Subscriptions travel upstream; wait until both reached the publisher.
    let deadline = Instant::now() + Duration::from_secs(5);
    while (publisher.subscriptions(0), publisher.subscriptions(1)) != (1, 1) {
        assert!(Instant::now() < deadline, "subscriptions are forwarded");
        publisher.pump().expect("pump");
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = publisher
        .publish(&message(b"hives/7/occupancy", b"42").expect("t"))
        .expect("p");
    assert_eq!(out.delivered, 2);
    let out = publisher
        .publish(&message(b"hives/9/occupancy", b"13").expect("t"))
        .expect("p");
    assert_eq!(
        out.delivered, 1,
        "only the subscriber to hives/ gets hive 9"
    );
    let out = publisher
        .publish(&message(b"sensors/1/counter", b"x").expect("t"))
        .expect("p");
    assert_eq!(
        out.delivered, 0,
        "nobody asked for sensors/: nothing is sent at all"
    );
    let m = settle(|| subs[0].try_recv()).expect("hive 7");
    assert_eq!(
        (pubsub::topic(&m), pubsub::body(&m)),
        (&b"hives/7/occupancy"[..], &b"42"[..])
    );
    assert!(subs[0].try_recv().unwrap_err().is_would_block());
    let m1 = settle(|| subs[1].try_recv()).expect("hive 7");
    let m2 = settle(|| subs[1].try_recv()).expect("hive 9");
    assert_eq!(pubsub::body(&m1), b"42");
    assert_eq!(pubsub::body(&m2), b"13");
    subs[1].unsubscribe(b"hives/").expect("unsubscribe");
    std::thread::sleep(Duration::from_millis(20));
    publisher.pump().expect("pump");
    let out = publisher
        .publish(&message(b"hives/9/occupancy", b"14").expect("t"))
        .expect("p");
    assert_eq!(out.delivered, 0, "the unsubscription was forwarded");
}

#[test]
fn publish_subscribe_with_forwarding_over_inproc() {
    let ctx = Context::new();
    let (p1, s1) = ctx.pair().expect("pair");
    let (p2, s2) = ctx.pair().expect("pair");
    pub_sub(vec![p1, p2], vec![s1, s2]);
}

#[test]
fn publish_subscribe_with_forwarding_over_ipc() {
    let (p1, s1) = ipc_pair();
    let (p2, s2) = ipc_pair();
    pub_sub(vec![p1, p2], vec![s1, s2]);
}

#[test]
fn a_slow_conflating_subscriber_gets_the_newest_per_topic_and_memory_stays_bounded() {
    let ctx = small_ctx(4);
    let (p_slow, s_slow) = ctx.pair().expect("pair");
    let (p_drop, s_drop) = ctx.pair().expect("pair");
    let mut publisher = Pub::new();
    let slow = publisher.attach(p_slow, true);
    publisher.attach(p_drop, false);
    let mut sub_slow = Sub::new();
    sub_slow.attach(s_slow).expect("attach");
    sub_slow.subscribe(b"").expect("everything");
    let mut sub_drop: Sub<Endpoint> = Sub::new();
    sub_drop.attach(s_drop).expect("attach");
    sub_drop.subscribe(b"").expect("everything");
    publisher.pump().expect("subscriptions");
    let mut dropped = 0;
    for round in 0..1000u32 {
        for hive in 0..3u32 {
            let topic = format!("hives/{hive}/occupancy");
            let out = publisher
                .publish(&message(topic.as_bytes(), &round.to_le_bytes()).expect("t"))
                .expect("p");
            dropped += out.dropped;
        }
    }
    assert!(publisher.pending(slow) <= 3, "one per topic at most");
    assert_eq!(
        dropped,
        3000 - 4,
        "the non-conflating one got 4 and every drop was counted"
    );
    // The slow reader catches up: the first 4 messages, then the newest of each topic.
    let mut got = Vec::new();
    loop {
        match sub_slow.try_recv() {
            Ok(m) => got.push(m),
            Err(RecvError::WouldBlock) => {
                publisher.pump().expect("pump");
                match sub_slow.try_recv() {
                    Ok(m) => got.push(m),
                    Err(_) => break,
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    let last: Vec<u32> = got[got.len() - 3..]
        .iter()
        .map(|m| u32::from_le_bytes(pubsub::body(m).try_into().expect("4 bytes")))
        .collect();
    assert_eq!(
        last,
        vec![999, 999, 999],
        "the newest occupancy of each hive"
    );
    assert!(
        got.len() <= 4 + 3 + 4,
        "never an unbounded backlog: {}",
        got.len()
    );
}

fn credit_stream<L: Link>(tx_link: L, rx_link: L) {
    let mut tx = CreditSender::new(tx_link);
    let mut rx = CreditReceiver::new(rx_link, 1000).expect("grant");
    let chunk = Msg::new(&[1u8; 100]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tx.credit() == 0 && Instant::now() < deadline {
        tx.pump().expect("grant arrives");
    }
    let mut sent = 0;
    loop {
        match tx.send(chunk.clone()) {
            Ok(()) => sent += 1,
            Err(SendError::WouldBlock(_)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        sent, 10,
        "a 1000-byte window lets 10 messages of 100 bytes out, no more"
    );
    let mut received = 0;
    for _ in 0..3 {
        settle(|| rx.try_recv()).expect("data");
        received += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while tx.credit() < 250 && Instant::now() < deadline {
        tx.pump().expect("top-up");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        tx.credit(),
        250,
        "a quarter of the window came back after 300 bytes"
    );
    while tx.send(chunk.clone()).is_ok() {
        sent += 1;
    }
    assert_eq!(sent, 12);
    while received < sent && settle(|| rx.try_recv()).is_ok() {
        received += 1;
    }
    assert_eq!(received, sent);
}

#[test]
fn credit_flow_control_over_inproc() {
    let ctx = Context::new();
    let (a, b) = ctx.pair().expect("pair");
    credit_stream(a, b);
}

#[test]
fn credit_flow_control_over_ipc() {
    let (a, b) = ipc_pair();
    credit_stream(a, b);
}
