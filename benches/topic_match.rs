//! Topic routing cost and memory: a tree of 10,000 clients each subscribed to its own
//! `commands/sensor/{id}` plus 100 wildcard subscribers (50 on `sensors/+/counter`, 50 on
//! `sensors/#`), routing a sensor report (100 deliveries, overlapping for no client) and a
//! configuration push (one delivery); and a retained lookup on subscribe.
//!
//! `cargo bench --bench topic_match` first prints one `MEMORY ...` line: the bytes the tree's
//! allocations hold per client, counted by this binary's allocator (requested sizes, without
//! malloc's own per-chunk overhead), then criterion's figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

use bizzy::mqtt::router::{ClientKey, QoS, RetainedStore, SubscriptionTree};
use bytes::Bytes;
use criterion::Criterion;

/// Counts the bytes currently allocated through it.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s contract;
// the counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout, passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: `ptr` came from `System` with `layout`; `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const CLIENTS: u32 = 10_000;

fn sensor_tree() -> SubscriptionTree {
    let mut tree = SubscriptionTree::new();
    for id in 0..CLIENTS {
        let filter = format!("commands/sensor/dev-{id:04}");
        tree.subscribe(ClientKey(id), &filter, QoS::AtLeastOnce);
    }
    for w in 0..100 {
        let filter = if w % 2 == 0 {
            "sensors/+/counter"
        } else {
            "sensors/#"
        };
        tree.subscribe(ClientKey(CLIENTS + w), filter, QoS::AtMostOnce);
    }
    tree
}

fn report_memory() {
    let before = LIVE.load(Ordering::Relaxed);
    let mut tree = SubscriptionTree::new();
    for id in 0..CLIENTS {
        let filter = format!("commands/sensor/dev-{id:04}");
        tree.subscribe(ClientKey(id), &filter, QoS::AtLeastOnce);
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "MEMORY subscription tree: {} clients, {} nodes, {} bytes, {} bytes per client",
        CLIENTS,
        tree.node_count(),
        bytes,
        bytes / CLIENTS as isize
    );
    black_box(&tree);
}

fn bench_route(c: &mut Criterion) {
    let tree = sensor_tree();
    let mut out = Vec::with_capacity(256);
    c.bench_function(
        "route sensors/dev-0042/counter (100 wildcard matches)",
        |b| {
            b.iter(|| {
                tree.route(black_box("sensors/dev-0042/counter"), &mut out);
                black_box(out.len())
            })
        },
    );
    c.bench_function("route commands/sensor/dev-0042 (1 of 10,000)", |b| {
        b.iter(|| {
            tree.route(black_box("commands/sensor/dev-0042"), &mut out);
            black_box(out.len())
        })
    });
    let mut overlap = SubscriptionTree::new();
    for (f, q) in [
        ("a/+", QoS::AtLeastOnce),
        ("a/#", QoS::ExactlyOnce),
        ("a/b", QoS::AtMostOnce),
    ] {
        overlap.subscribe(ClientKey(1), f, q);
    }
    c.bench_function("route a/b (3 overlapping subscriptions, 1 delivery)", |b| {
        b.iter(|| {
            overlap.route(black_box("a/b"), &mut out);
            black_box(out.len())
        })
    });
}

fn bench_retained(c: &mut Criterion) {
    let mut store = RetainedStore::new();
    for id in 0..CLIENTS {
        let topic = format!("commands/sensor/dev-{id:04}");
        store.retain(
            &topic,
            Bytes::from_static(b"{\"interval\":60}"),
            QoS::AtLeastOnce,
        );
    }
    let mut out = Vec::with_capacity(16);
    c.bench_function(
        "retained matching commands/sensor/dev-0042 (of 10,000)",
        |b| {
            b.iter(|| {
                out.clear();
                store.matching(black_box("commands/sensor/dev-0042"), &mut out);
                black_box(out.len())
            })
        },
    );
}

fn main() {
    report_memory();
    let mut c = Criterion::default().configure_from_args();
    bench_route(&mut c);
    bench_retained(&mut c);
    c.final_summary();
}
