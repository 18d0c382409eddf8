//! Loom checks of the lock-free ring (`src/core/queue/ring.rs`): every interleaving of one
//! producer and one consumer, including the sleep handshake on both counters. Run with
//! `RUSTFLAGS="--cfg loom" cargo test --release --test queue_loom`.
#![cfg(loom)]

use bizzy::core::queue::ring::{ring, Consumer, Producer};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// An eventfd stand-in: signals accumulate until a wait consumes them.
#[derive(Default)]
struct Signal(AtomicUsize);

impl Signal {
    fn signal(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    /// Spins (yielding to loom) until at least one signal is pending, then consumes them.
    fn wait(&self) {
        while self.0.swap(0, Ordering::Acquire) == 0 {
            thread::yield_now();
        }
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

/// Writes `values` in batches of `batch`, sleeping on `writer_sig` when full.
fn produce(
    mut p: Producer<u32>,
    values: u32,
    batch: u32,
    reader_sig: &Signal,
    writer_sig: &Signal,
) {
    for v in 0..values {
        let mut v = v;
        loop {
            match p.push(v) {
                Ok(()) => break,
                Err(back) => {
                    v = back;
                    if p.flush() {
                        reader_sig.signal();
                    }
                    if p.sleep() {
                        writer_sig.wait();
                    }
                }
            }
        }
        if (v + 1) % batch == 0 && p.flush() {
            reader_sig.signal();
        }
    }
    if p.flush() {
        reader_sig.signal();
    }
}

/// Reads `values` messages, sleeping on `reader_sig` when empty; checks order.
fn consume(mut c: Consumer<u32>, values: u32, reader_sig: &Signal, writer_sig: &Signal) {
    let mut next = 0;
    while next < values {
        match c.pop() {
            Some(v) => {
                assert_eq!(v, next, "in order, once");
                next += 1;
            }
            None => {
                if c.take_wake_writer() {
                    writer_sig.signal();
                }
                if c.sleep() {
                    if c.take_wake_writer() {
                        writer_sig.signal();
                    }
                    reader_sig.wait();
                }
            }
        }
        if c.take_wake_writer() {
            writer_sig.signal();
        }
    }
    assert!(c.pop().is_none(), "nothing more than was sent");
}

fn run(capacity: usize, values: u32, batch: u32) {
    model(move || {
        let (p, c) = ring::<u32>(capacity, true);
        let sigs = Arc::new((Signal::default(), Signal::default()));
        let theirs = Arc::clone(&sigs);
        let producer = thread::spawn(move || produce(p, values, batch, &theirs.0, &theirs.1));
        consume(c, values, &sigs.0, &sigs.1);
        producer.join().expect("producer");
    });
}

#[test]
fn sleeping_reader_always_wakes_for_a_batch() {
    run(4, 3, 3);
}

#[test]
fn one_message_batches_with_a_sleeping_reader() {
    run(4, 3, 1);
}

#[test]
fn a_full_ring_puts_the_writer_to_sleep_and_it_always_wakes() {
    run(2, 4, 4);
}

#[test]
fn values_left_in_the_ring_are_dropped_once() {
    model(|| {
        let (mut p, mut c) = ring::<Arc<u32>>(2, true);
        let value = Arc::new(7);
        let producer = {
            let value = Arc::clone(&value);
            thread::spawn(move || {
                p.push(Arc::clone(&value)).expect("room");
                p.push(value).expect("room");
                p.flush();
            })
        };
        let first = c.pop();
        producer.join().expect("producer");
        drop(first);
        drop(c);
        assert_eq!(
            Arc::strong_count(&value),
            1,
            "every copy dropped exactly once"
        );
    });
}
