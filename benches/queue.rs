//! Queue engine benchmarks: 16-byte messages between two threads (the engine's inproc pipe,
//! crossbeam-channel bounded 1024 and std's `sync_channel(1024)` in the same run), between two
//! processes over the ipc transport (the bench forks its peer), and the hand-off latency of a
//! sparse stream through the batched and the unbatched pipe.
//!
//! `cargo bench --bench queue` prints criterion's figures, then one `SPARSE ...` line per pipe
//! for `scripts/bench-queue`.

use std::hint::black_box;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bizzy::core::queue::{
    Context, EndStats, IpcChannel, IpcPair, Msg, PipeOptions, Receiver, RecvError, SendError,
    Sender,
};
use criterion::{Criterion, Throughput};

const PAYLOAD: [u8; 16] = *b"0123456789abcdef";
/// Messages the producer writes before one flush: what one network read typically yields.
const BATCH: u64 = 64;

/// Pins the calling thread to one CPU, so that the two ends of every inproc contender run on
/// two different cores (as an event loop and its I/O thread would), whatever else the machine
/// runs. Best effort: a machine with one CPU just keeps its default.
fn pin(cpu: usize) {
    let n = thread::available_parallelism().map_or(1, |n| n.get());
    if n >= 2 {
        set_affinity(&[cpu % n]);
    }
}

/// Lets the calling thread run on every CPU again (the ipc bench's child inherits it).
fn unpin() {
    let n = thread::available_parallelism().map_or(1, |n| n.get());
    set_affinity(&(0..n).collect::<Vec<_>>());
}

fn set_affinity(cpus: &[usize]) {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set, CPU_SET writes inside it, and
    // sched_setaffinity(0, ...) only changes the calling thread's placement.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Runs `reader` on a thread pinned to CPU 1 and `writer` here pinned to CPU 0; returns the
/// writer's elapsed time until the reader finished, and what the reader returned.
fn two_cores<R: Send + 'static>(
    reader: impl FnOnce() -> R + Send + 'static,
    writer: impl FnOnce(),
) -> (Duration, R) {
    let reader = thread::spawn(move || {
        pin(1);
        reader()
    });
    pin(0);
    let start = Instant::now();
    writer();
    let r = reader.join().expect("the reader does not panic");
    let elapsed = start.elapsed();
    unpin();
    (elapsed, r)
}

/// Writes `n` messages in batches of `BATCH`, each built in place in the pipe, one flush per
/// batch; sleeps (after a short spin) while the pipe is full.
fn produce<T: Send + 'static>(tx: &mut Sender<T>, n: u64, make: impl Fn() -> T) {
    let mut sent = 0;
    while sent < n {
        if !tx.has_room() {
            tx.wait_writable(None).expect("eventfd wait");
        }
        match tx.write_with(&make) {
            Ok(()) => {
                sent += 1;
                if sent % BATCH == 0 {
                    tx.flush();
                }
            }
            Err(SendError::WouldBlock(())) => {
                tx.wait_writable(None).expect("eventfd wait");
            }
            Err(e) => panic!("pipe closed during the bench: {e}"),
        }
    }
    tx.flush();
}

/// Takes `n` messages a pre-read batch at a time, sleeping (after a short spin) when empty.
fn consume<T: Send + 'static>(rx: &mut Receiver<T>, n: u64) {
    let mut got = 0;
    while got < n {
        if !rx.has_pending() {
            rx.wait_readable(None).expect("eventfd wait");
        }
        match rx.read_batch(1024, |m| {
            black_box(m);
        }) {
            Ok(k) => got += k as u64,
            Err(RecvError::WouldBlock) => {
                rx.wait_readable(None).expect("eventfd wait");
            }
            Err(e) => panic!("pipe closed during the bench: {e}"),
        }
    }
}

fn bizzy_pipe(iters: u64, opts: PipeOptions) -> Duration {
    let (elapsed, writer, reader) = bizzy_pipe_stats(iters, opts);
    black_box((writer, reader));
    elapsed
}

/// One run, with what both ends did on their slow paths (sleeps and wakes).
fn bizzy_pipe_stats(iters: u64, opts: PipeOptions) -> (Duration, EndStats, EndStats) {
    let ctx = Context::new();
    let (mut tx, mut rx) = ctx.pipe_with::<Msg>(opts).expect("eventfds are available");
    let (elapsed, rx_stats) = two_cores(
        move || {
            consume(&mut rx, iters);
            rx.stats()
        },
        || produce(&mut tx, iters, || Msg::new(&PAYLOAD)),
    );
    (elapsed, tx.stats(), rx_stats)
}

/// The same pipe carrying plain 16-byte values instead of message handles: the payload type
/// crossbeam and mpsc carry here.
fn bizzy_pipe_raw16(iters: u64) -> Duration {
    let ctx = Context::new();
    let (mut tx, mut rx) = ctx.pipe::<[u8; 16]>().expect("eventfds are available");
    two_cores(
        move || consume(&mut rx, iters),
        || produce(&mut tx, iters, || PAYLOAD),
    )
    .0
}

fn crossbeam(iters: u64) -> Duration {
    let (tx, rx) = crossbeam_channel::bounded::<[u8; 16]>(1024);
    let reader = move || {
        for _ in 0..iters {
            black_box(rx.recv().expect("the producer sends everything")[0]);
        }
    };
    let writer = || {
        for _ in 0..iters {
            tx.send(PAYLOAD).expect("the reader is alive");
        }
    };
    two_cores(reader, writer).0
}

fn std_mpsc(iters: u64) -> Duration {
    let (tx, rx) = mpsc::sync_channel::<[u8; 16]>(1024);
    let reader = move || {
        for _ in 0..iters {
            black_box(rx.recv().expect("the producer sends everything")[0]);
        }
    };
    let writer = || {
        for _ in 0..iters {
            tx.send(PAYLOAD).expect("the reader is alive");
        }
    };
    two_cores(reader, writer).0
}

/// The child process of the ipc bench: writes `n` messages in batches, flushing each, then
/// leaves without running any destructor of the parent's state.
fn ipc_child(mut ch: IpcChannel, n: u64) -> ! {
    let mut sent = 0;
    while sent < n {
        match ch.write(Msg::new(&PAYLOAD)) {
            Ok(()) => sent += 1,
            Err(SendError::WouldBlock(_)) => {
                ch.flush_blocking(None)
                    .expect("the parent reads until the end");
            }
            Err(_) => unsafe_exit(1),
        }
        if sent % BATCH == 0 {
            let _ = ch.flush();
        }
    }
    let code = i32::from(ch.flush_blocking(None).is_err());
    unsafe_exit(code)
}

fn unsafe_exit(code: i32) -> ! {
    // SAFETY: _exit ends the forked child at once; it touches no state shared with the parent.
    unsafe { libc::_exit(code) }
}

fn ipc(iters: u64) -> Duration {
    let pair = IpcPair::new().expect("socketpair works");
    // SAFETY: the child only uses its own channel end and then calls _exit; the bench is
    // single-threaded at this point (every other bench joined its threads).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        ipc_child(pair.into_child(), iters);
    }
    let mut ch = pair.into_parent();
    let start = Instant::now();
    let mut got = 0;
    while got < iters {
        match ch.recv_deadline(None) {
            Ok(m) => {
                black_box(m.as_bytes()[0]);
                got += 1;
            }
            Err(e) => panic!("ipc child stopped early: {e}"),
        }
    }
    let elapsed = start.elapsed();
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(status, 0, "the ipc child reports success");
    elapsed
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("inproc");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bizzy_pipe", |b| {
        b.iter_custom(|n| bizzy_pipe(n, PipeOptions::default()))
    });
    g.bench_function("bizzy_pipe_raw16", |b| b.iter_custom(bizzy_pipe_raw16));
    g.bench_function("crossbeam_bounded_1024", |b| b.iter_custom(crossbeam));
    g.bench_function("std_mpsc_sync_1024", |b| b.iter_custom(std_mpsc));
    g.finish();
    let mut g = c.benchmark_group("ipc");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bizzy_ipc", |b| b.iter_custom(ipc));
    g.finish();
}

/// Hand-off latencies (ns) of `n` messages sent one every `gap` to a reader that sleeps.
fn sparse(opts: PipeOptions, n: usize, gap: Duration) -> Vec<u64> {
    let ctx = Context::new();
    let (mut tx, mut rx) = ctx.pipe_with::<Msg>(opts).expect("eventfds are available");
    let base = Instant::now();
    let reader = thread::spawn(move || {
        let mut lat = Vec::with_capacity(n);
        loop {
            match rx.recv() {
                Ok(m) => {
                    let now = base.elapsed().as_nanos() as u64;
                    let sent = u64::from_le_bytes(m.as_bytes()[..8].try_into().expect("8 bytes"));
                    lat.push(now.saturating_sub(sent));
                }
                Err(RecvError::Closed) => return lat,
                Err(e) => panic!("sparse reader: {e}"),
            }
        }
    });
    let mut next = Instant::now();
    for _ in 0..n {
        next += gap;
        while Instant::now() < next {
            thread::sleep(next.saturating_duration_since(Instant::now()).min(gap));
        }
        let stamp = base.elapsed().as_nanos() as u64;
        tx.send(Msg::from_parts(&[&stamp.to_le_bytes(), &PAYLOAD[8..]]))
            .expect("reader alive");
    }
    drop(tx);
    let mut lat = reader.join().expect("the reader does not panic");
    lat.sort_unstable();
    lat
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn sparse_report(n: usize) {
    let gap = Duration::from_micros(100);
    let batched = PipeOptions::default();
    let unbatched = PipeOptions {
        batching: false,
        ..PipeOptions::default()
    };
    // Interleaved rounds, so that the machine's noise falls on both alike.
    let (mut b, mut u) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        b.extend(sparse(batched, n / 5, gap));
        u.extend(sparse(unbatched, n / 5, gap));
    }
    b.sort_unstable();
    u.sort_unstable();
    for (name, lat) in [("batched", &b), ("unbatched", &u)] {
        println!(
            "SPARSE {name} n={} p50_us={:.1} p99_us={:.1} max_us={:.1}",
            lat.len(),
            percentile(lat, 0.5),
            percentile(lat, 0.99),
            percentile(lat, 1.0)
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    throughput(&mut c);
    c.final_summary();
    let n = std::env::var("SPARSE_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    if std::env::args().any(|a| a == "--bench") {
        sparse_report(n);
    }
}
