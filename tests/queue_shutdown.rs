//! Shutdown with work in flight: every queued message is drained in order or explicitly
//! discarded (and counted), no thread is left blocked, no message is lost silently.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bizzy::core::queue::{Context, Linger, Msg, PipeOptions, RecvError, SendError};

fn ctx(hwm: usize) -> Arc<Context> {
    Arc::new(Context::with_options(PipeOptions {
        hwm,
        batching: true,
    }))
}

type Writer = thread::JoinHandle<(u64, u64)>;
type Reader = thread::JoinHandle<(Vec<u64>, RecvError)>;

/// A writer that sends until refused (returns what was accepted and the refused message) and
/// a slow reader (returns what it got and how it ended).
fn in_flight(ctx: &Context) -> (Writer, Reader) {
    let (mut tx, mut rx) = ctx.pipe::<u64>().expect("pipe");
    let writer = thread::spawn(move || {
        let mut n = 0;
        loop {
            match tx.write_blocking(n, None) {
                Ok(()) => n += 1,
                Err(SendError::Closed(back)) => return (n, back),
                Err(e) => panic!("writer: {e}"),
            }
            if n % 5 == 0 {
                tx.flush();
            }
        }
    });
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        loop {
            match rx.recv() {
                Ok(v) => got.push(v),
                Err(e) => return (got, e),
            }
            if got.len() % 100 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
    });
    (writer, reader)
}

#[test]
fn drain_with_work_in_flight_delivers_everything_accepted_in_order() {
    let ctx = ctx(64);
    let (writer, reader) = in_flight(&ctx);
    thread::sleep(Duration::from_millis(50));
    let report = ctx.shutdown(Linger::Drain);
    assert_eq!(report.linger, Linger::Drain);
    assert_eq!(report.pipes, 1);
    let (accepted, refused) = writer.join().expect("writer woke up");
    let (got, end) = reader.join().expect("reader woke up");
    assert_eq!(
        refused, accepted,
        "the refused message came back to the writer"
    );
    assert!(matches!(end, RecvError::Closed));
    assert_eq!(
        got,
        (0..accepted).collect::<Vec<_>>(),
        "all accepted, in order, none twice"
    );
}

#[test]
fn discard_with_work_in_flight_accounts_for_every_message() {
    let ctx = ctx(64);
    let (writer, reader) = in_flight(&ctx);
    thread::sleep(Duration::from_millis(50));
    let report = ctx.shutdown(Linger::Discard);
    let (accepted, _) = writer.join().expect("writer woke up");
    let (got, end) = reader.join().expect("reader woke up");
    let RecvError::Discarded(discarded) = end else {
        panic!("told of the discard: {end:?}")
    };
    assert_eq!(
        got.len() as u64 + discarded as u64,
        accepted,
        "delivered + discarded = accepted"
    );
    assert_eq!(
        got,
        (0..got.len() as u64).collect::<Vec<_>>(),
        "delivered in order"
    );
    // The report is a snapshot taken as the pipe closes: a send completing at that instant
    // still lands its message, and the ones the writer had not flushed (it flushes every 5),
    // and they are discarded with the rest. The report may miss those, never more.
    assert!(
        discarded <= report.queued + 6,
        "the report saw what was queued: {discarded} discarded, {} reported",
        report.queued
    );
}

#[test]
fn discard_reports_the_queued_count_then_closed() {
    let ctx = ctx(16);
    let (mut tx, mut rx) = ctx.pipe::<Msg>().expect("pipe");
    for i in 0..10u8 {
        tx.send(Msg::new(&[i])).expect("room");
    }
    assert_eq!(rx.try_recv().expect("first")[0], 0);
    let report = ctx.shutdown(Linger::Discard);
    assert_eq!((report.pipes, report.queued), (1, 9));
    assert!(matches!(rx.try_recv(), Err(RecvError::Discarded(9))));
    assert!(matches!(rx.try_recv(), Err(RecvError::Closed)));
    assert!(matches!(tx.send(Msg::new(b"late")), Err(SendError::Closed(m)) if &*m == b"late"));
}

#[test]
fn no_thread_is_left_blocked() {
    let ctx = ctx(4);
    let (mut full_tx, _full_rx) = ctx.pipe::<u32>().expect("pipe");
    let (_empty_tx, mut empty_rx) = ctx.pipe::<u32>().expect("pipe");
    for i in 0..4 {
        full_tx.write(i).expect("room");
    }
    let blocked_writer = thread::spawn(move || full_tx.send_blocking(99, None));
    let blocked_reader = thread::spawn(move || empty_rx.recv());
    thread::sleep(Duration::from_millis(50));
    ctx.shutdown(Linger::Drain);
    assert!(matches!(
        blocked_writer.join().expect("writer"),
        Err(SendError::Closed(99))
    ));
    assert!(matches!(
        blocked_reader.join().expect("reader"),
        Err(RecvError::Closed)
    ));
}

#[test]
fn closing_a_receiver_hands_back_what_was_queued() {
    let ctx = ctx(16);
    let (mut tx, rx) = ctx.pipe::<u32>().expect("pipe");
    for i in 0..5 {
        tx.send(i).expect("room");
    }
    assert_eq!(rx.close(), vec![0, 1, 2, 3, 4]);
    assert!(matches!(tx.send(5), Err(SendError::Closed(5))));
    assert_eq!(ctx.dropped_unread(), 0);
}

#[test]
fn dropping_a_receiver_with_messages_is_counted_not_silent() {
    let ctx = ctx(16);
    let (mut tx, rx) = ctx.pipe::<u32>().expect("pipe");
    for i in 0..3 {
        tx.send(i).expect("room");
    }
    drop(rx);
    assert_eq!(ctx.dropped_unread(), 3);
    assert_eq!(ctx.shutdown(Linger::Drain).dropped_unread, 3);
}

#[test]
fn a_dropped_context_drains_and_a_writer_that_leaves_is_drained_first() {
    let (mut tx, mut rx) = {
        let ctx = Context::new();
        ctx.pipe::<u32>().expect("pipe")
    };
    assert!(
        matches!(tx.send(1), Err(SendError::Closed(1))),
        "the context is gone"
    );
    assert!(matches!(rx.try_recv(), Err(RecvError::Closed)));
    let ctx = Context::new();
    let (mut tx, mut rx) = ctx.pipe::<u32>().expect("pipe");
    tx.write(7).expect("room");
    drop(tx);
    assert_eq!(rx.try_recv().expect("flushed on drop"), 7);
    assert!(matches!(rx.try_recv(), Err(RecvError::Closed)));
}

#[test]
fn a_shut_context_refuses_new_pipes() {
    let ctx = Context::new();
    ctx.shutdown(Linger::Drain);
    assert!(ctx.pipe::<u32>().is_err());
    assert!(ctx.bind("x").is_err());
}
