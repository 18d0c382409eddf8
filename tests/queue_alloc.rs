//! Heap allocations on the steady message path, counted with a counting global allocator
//! (in its own test binary, so the allocator applies only here). Prints the
//! `allocs_per_msg=` figure that `scripts/bench-queue` reports.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use bizzy::core::queue::{Context, IpcPair, Msg, RecvError};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every operation to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PAYLOAD: [u8; 16] = *b"0123456789abcdef";
const WARM: u64 = 10_000;
const STEADY: u64 = 1_000_000;

/// Allocations during `STEADY` messages after `WARM` messages, both sides counted.
fn inproc_allocs() -> u64 {
    let ctx = Context::new();
    let (mut tx, mut rx) = ctx.pipe::<Msg>().expect("pipe");
    let (mut go_tx, mut go_rx) = ctx.pipe::<u8>().expect("pipe");
    let reader = thread::spawn(move || {
        for _ in 0..WARM {
            rx.recv().expect("warm-up message");
        }
        go_tx.send(0).expect("start signal");
        for _ in 0..STEADY {
            assert_eq!(rx.recv().expect("message").len(), 16);
        }
        rx
    });
    for i in 0..WARM {
        tx.write_blocking(Msg::new(&PAYLOAD), None)
            .expect("reader alive");
        if i % 64 == 0 {
            tx.flush();
        }
    }
    tx.flush();
    go_rx.recv().expect("reader warmed up");
    let before = ALLOCS.load(Ordering::SeqCst);
    for i in 0..STEADY {
        tx.write_blocking(Msg::new(&PAYLOAD), None)
            .expect("reader alive");
        if i % 64 == 0 {
            tx.flush();
        }
    }
    tx.flush();
    let rx = reader.join().expect("reader");
    let after = ALLOCS.load(Ordering::SeqCst);
    drop(rx);
    after - before
}

/// The same over an ipc socket pair (one thread per end).
fn ipc_allocs() -> u64 {
    let (mut a, mut b) = IpcPair::new().expect("pair").into_ends();
    let ctx = Context::new();
    let (mut go_tx, mut go_rx) = ctx.pipe::<u8>().expect("pipe");
    let reader = thread::spawn(move || {
        let mut got = 0;
        while got < WARM + STEADY {
            match b.recv_deadline(None) {
                Ok(_) => got += 1,
                Err(RecvError::Closed) => break,
                Err(e) => panic!("{e}"),
            }
            if got == WARM {
                go_tx.send(0).expect("start signal");
            }
        }
        got
    });
    let send = |a: &mut bizzy::core::queue::IpcChannel, n: u64| {
        for i in 0..n {
            let mut msg = Msg::new(&PAYLOAD);
            while let Err(e) = a.write(msg) {
                msg = e.into_inner();
                a.flush_blocking(None).expect("reader alive");
            }
            if i % 64 == 0 {
                let _ = a.flush();
            }
        }
        a.flush_blocking(None).expect("reader alive");
    };
    send(&mut a, WARM);
    go_rx.recv().expect("reader warmed up");
    let before = ALLOCS.load(Ordering::SeqCst);
    send(&mut a, STEADY);
    let got = reader.join().expect("reader");
    let after = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(got, WARM + STEADY);
    after - before
}

#[test]
fn the_steady_path_allocates_nothing_per_message() {
    let inproc = inproc_allocs();
    let ipc = ipc_allocs();
    let per_msg = inproc as f64 / STEADY as f64;
    println!("allocs_per_msg={per_msg} (inproc: {inproc} in {STEADY} messages; ipc: {ipc})");
    assert_eq!(inproc, 0, "inproc pipe: no heap allocation per message");
    // The ipc output batch grows to its working size once (amortised doubling up to the
    // high-water mark); after that nothing is allocated, however many messages pass.
    assert!(
        ipc < 20,
        "ipc channel: {ipc} allocations in {STEADY} messages"
    );
}
