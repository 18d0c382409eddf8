//! Inproc pipes: order, no loss, no duplication, the high-water mark, wake-ups (property tests
//! over random batch sizes), event-loop registration, and context isolation.

use std::thread;
use std::time::{Duration, Instant};

use bizzy::core::queue::{Context, Msg, PipeOptions, RecvError, SendError};
use mio::{Events, Interest, Poll, Token};
use proptest::prelude::*;

fn opts(hwm: usize) -> PipeOptions {
    PipeOptions {
        hwm,
        batching: true,
    }
}

fn num(i: u64) -> Msg {
    Msg::new(&i.to_le_bytes())
}

fn val(m: &Msg) -> u64 {
    u64::from_le_bytes(m.as_bytes().try_into().expect("8-byte payload"))
}

proptest! {
    /// One thread plays both sides with random batch and read sizes: every message arrives
    /// once, in order, and the pipe never holds more than its high-water mark.
    #[test]
    fn order_no_loss_no_dup_hwm(
        hwm in 2usize..64,
        steps in prop::collection::vec((0usize..80, 0usize..80), 1..60),
    ) {
        let ctx = Context::new();
        let (mut tx, mut rx) = ctx.pipe_with::<u64>(opts(hwm)).expect("pipe");
        let cap = tx.capacity();
        let (mut next_out, mut next_in) = (0u64, 0u64);
        for (writes, reads) in steps {
            for _ in 0..writes {
                match tx.write(next_out) {
                    Ok(()) => next_out += 1,
                    Err(SendError::WouldBlock(v)) => {
                        prop_assert_eq!(v, next_out);
                        // Full: the queued messages plus those read but not yet handed back
                        // (the reader releases slots every quarter of the ring).
                        prop_assert!((next_out - next_in) as usize > cap - cap / 4 - 1);
                        break;
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
                prop_assert!((next_out - next_in) as usize <= cap);
            }
            tx.flush();
            for _ in 0..reads {
                match rx.try_recv() {
                    Ok(v) => { prop_assert_eq!(v, next_in); next_in += 1; }
                    Err(RecvError::WouldBlock) => { prop_assert_eq!(next_in, next_out); break; }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
        }
        drop(tx);
        while let Ok(v) = rx.try_recv() {
            prop_assert_eq!(v, next_in);
            next_in += 1;
        }
        prop_assert_eq!(next_in, next_out);
    }

    /// Two threads, random batches and pauses, a reader that sleeps on the eventfd between
    /// batches: it always wakes for pending work (a lost wake-up would hit the deadline).
    #[test]
    fn wakeups_never_lost(
        hwm in 2usize..32,
        batches in prop::collection::vec((1usize..50, 0u64..3), 1..40),
    ) {
        let ctx = Context::new();
        let (mut tx, mut rx) = ctx.pipe_with::<u64>(opts(hwm)).expect("pipe");
        let total: usize = batches.iter().map(|b| b.0).sum();
        let reader = thread::spawn(move || {
            let mut got = Vec::with_capacity(total);
            loop {
                match rx.recv_deadline(Some(Instant::now() + Duration::from_secs(10))) {
                    Ok(v) => got.push(v),
                    Err(RecvError::Closed) => return (got, rx.stats()),
                    Err(e) => panic!("reader: {e} after {} messages", got.len()),
                }
            }
        });
        let mut n = 0u64;
        let mut flushes = 0u64;
        for (size, pause) in batches {
            for _ in 0..size {
                tx.write_blocking(n, None).expect("reader alive");
                n += 1;
            }
            tx.flush();
            flushes += 1;
            thread::sleep(Duration::from_micros(pause * 50));
        }
        let wakes = tx.stats().wakes;
        drop(tx);
        let (got, _) = reader.join().expect("reader");
        prop_assert_eq!(got, (0..n).collect::<Vec<_>>());
        // Once per batch at most (a full pipe flushes early, hence the slack), never per message.
        prop_assert!(wakes <= flushes + n / 2 + 1, "{} wakes for {} flushes", wakes, flushes);
    }
}

proptest! {
    /// Messages of random sizes (inline and shared) in random batches come out intact, in
    /// order, and a full pipe hands the message back.
    #[test]
    fn messages_of_any_size(
        hwm in 4usize..64,
        sizes in prop::collection::vec(0usize..200, 1..120),
        batch in 1usize..10,
    ) {
        let ctx = Context::new();
        let (mut tx, mut rx) = ctx.pipe_with::<Msg>(opts(hwm)).expect("pipe");
        let mut expected = std::collections::VecDeque::new();
        for (i, &n) in sizes.iter().enumerate() {
            let body: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
            let msg = Msg::from(body).with_id(i as u32);
            match tx.write(msg.clone()) {
                Ok(()) => expected.push_back(msg),
                Err(SendError::WouldBlock(back)) => {
                    prop_assert_eq!(&back, &msg);
                    tx.flush();
                    while let Ok(got) = rx.try_recv() {
                        prop_assert_eq!(Some(got), expected.pop_front());
                    }
                    tx.write(msg.clone()).expect("room after draining");
                    expected.push_back(msg);
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
            if i % batch == 0 {
                tx.flush();
            }
        }
        tx.flush();
        while let Ok(got) = rx.try_recv() {
            prop_assert_eq!(Some(got), expected.pop_front());
        }
        prop_assert!(expected.is_empty());
    }
}

#[test]
fn shared_payloads_left_in_a_dropped_pipe_are_released() {
    let ctx = Context::new();
    let (mut tx, rx) = ctx.pipe::<Msg>().expect("pipe");
    let block: std::sync::Arc<[u8]> = vec![1u8; 500].into();
    for _ in 0..3 {
        tx.send(Msg::from_shared(block.clone())).expect("room");
    }
    assert_eq!(std::sync::Arc::strong_count(&block), 4);
    drop(rx);
    tx.send(Msg::from_shared(block.clone())).unwrap_err();
    drop(tx);
    assert_eq!(
        std::sync::Arc::strong_count(&block),
        1,
        "nothing leaked, nothing freed twice"
    );
}

#[test]
fn a_reader_in_a_mio_loop_wakes_once_per_batch() {
    let ctx = Context::new();
    let (mut tx, mut rx) = ctx.pipe::<Msg>().expect("pipe");
    let mut poll = Poll::new().expect("poll");
    poll.registry()
        .register(&mut rx, Token(7), Interest::READABLE)
        .expect("register");
    assert!(
        rx.try_recv().unwrap_err().is_would_block(),
        "empty, and now armed"
    );
    let writer = thread::spawn(move || {
        for batch in 0..3u64 {
            for i in 0..10 {
                tx.write(num(batch * 10 + i)).expect("room");
            }
            tx.flush();
            thread::sleep(Duration::from_millis(20));
        }
        tx.stats()
    });
    let mut events = Events::with_capacity(4);
    let mut got = Vec::new();
    while got.len() < 30 {
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .expect("poll");
        assert!(
            !events.is_empty(),
            "a pending batch always produces an event"
        );
        loop {
            match rx.try_recv() {
                Ok(m) => got.push(val(&m)),
                Err(RecvError::WouldBlock) => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert_eq!(got, (0..30).collect::<Vec<_>>());
    let stats = writer.join().expect("writer");
    assert!(
        stats.wakes <= 3,
        "one wake per batch at most, got {}",
        stats.wakes
    );
}

#[test]
fn a_full_pipe_says_would_block_and_its_writer_fd_fires_when_space_frees() {
    let ctx = Context::new();
    let (mut tx, mut rx) = ctx.pipe_with::<u64>(opts(4)).expect("pipe");
    for i in 0..4 {
        tx.send(i).expect("room");
    }
    let back = tx.send(4).unwrap_err();
    assert!(back.is_would_block());
    assert_eq!(back.into_inner(), 4, "the message comes back");
    let mut poll = Poll::new().expect("poll");
    poll.registry()
        .register(&mut tx, Token(1), Interest::READABLE)
        .expect("register");
    let reader = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        let got = (0..4)
            .map(|_| rx.recv().expect("queued"))
            .collect::<Vec<_>>();
        (got, rx)
    });
    let mut events = Events::with_capacity(4);
    poll.poll(&mut events, Some(Duration::from_secs(5)))
        .expect("poll");
    assert!(!events.is_empty(), "space freed wakes the writer");
    let (got, mut rx) = reader.join().expect("reader");
    tx.send(4).expect("room now");
    assert_eq!(got, vec![0, 1, 2, 3]);
    assert_eq!(rx.try_recv().expect("the fifth"), 4);
}

#[test]
fn two_contexts_do_not_interfere() {
    let a = Context::new();
    let b = Context::new();
    let la = a.bind("events").expect("bind in a");
    let lb = b.bind("events").expect("the same name binds in b too");
    assert!(
        a.bind("events").is_err(),
        "but twice in one context is refused"
    );
    let mut ca = a.connect("events").expect("connect a");
    let mut cb = b.connect("events").expect("connect b");
    ca.tx.send(Msg::new(b"for a")).expect("send");
    cb.tx.send(Msg::new(b"for b")).expect("send");
    let mut sa = la.accept().expect("a's connection");
    let mut sb = lb.accept().expect("b's connection");
    assert!(la.accept().is_none() && lb.accept().is_none());
    assert_eq!(&*sa.rx.try_recv().expect("a"), b"for a");
    assert_eq!(&*sb.rx.try_recv().expect("b"), b"for b");
    let report = a.shutdown(bizzy::core::queue::Linger::Drain);
    assert_eq!(report.pipes, 2, "one connection: a pipe each way");
    assert!(
        b.connect("events").is_ok(),
        "shutting a down leaves b alone"
    );
    assert!(a.connect("events").is_err());
    cb.tx
        .send(Msg::new(b"still"))
        .expect("b's pipes still work");
    assert_eq!(&*sb.rx.try_recv().expect("b"), b"still");
    assert!(matches!(
        ca.tx.send(Msg::new(b"x")),
        Err(SendError::Closed(_))
    ));
}

#[test]
fn large_messages_cross_without_copy() {
    let ctx = Context::new();
    let (mut tx, mut rx) = ctx.pipe::<Msg>().expect("pipe");
    let big = Msg::new(&vec![5u8; 100_000]);
    let ptr = big.as_bytes().as_ptr();
    tx.send(big.clone()).expect("send");
    let got = rx.try_recv().expect("recv");
    assert_eq!(got.as_bytes().as_ptr(), ptr, "the same shared block");
    assert_eq!(got, big);
}

#[test]
fn blocking_ends_between_threads_carry_a_million_in_order() {
    let ctx = Context::new();
    let (mut tx, mut rx) = ctx.pipe_with::<u64>(opts(64)).expect("pipe");
    let n = 1_000_000u64;
    let reader = thread::spawn(move || {
        for i in 0..n {
            assert_eq!(rx.recv().expect("in order"), i);
        }
        assert!(matches!(rx.recv(), Err(RecvError::Closed)));
    });
    for i in 0..n {
        tx.write_blocking(i, None).expect("reader alive");
        if i % 7 == 0 {
            tx.flush();
        }
    }
    drop(tx);
    reader.join().expect("reader");
}

#[test]
fn unbatched_pipes_deliver_the_same() {
    let ctx = Context::new();
    let (mut tx, mut rx) = ctx
        .pipe_with::<u64>(PipeOptions {
            hwm: 8,
            batching: false,
        })
        .expect("p");
    for i in 0..8 {
        tx.write(i).expect("room");
    }
    assert_eq!(tx.unflushed(), 0, "unbatched writes publish at once");
    assert!(tx.write(8).unwrap_err().is_would_block());
    assert_eq!(
        (0..8)
            .map(|_| rx.try_recv().expect("queued"))
            .collect::<Vec<_>>(),
        (0..8).collect::<Vec<_>>()
    );
}
