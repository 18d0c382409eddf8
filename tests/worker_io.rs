//! The worker's I/O thread (`core::io`) under a real event loop: requests from the loop are
//! served concurrently on the thread's runtime, every answer comes back once to the loop-side
//! callback, woken by the answers pipe, and `in_flight` counts what is still out.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bizzy::core::event::{Command, Control, EventLoop, LoopFiles, Posted, CONTROL};
use bizzy::core::io::{Io, News, Served, Work};
use bizzy::core::shm::Zones;
use bizzy::core::stats::ConnStats;
use mio::Waker;

/// Answers `n` with `2n` after `n % 7` milliseconds, so answers overtake one another.
struct Doubler {
    /// Made on the I/O thread: not `Send`, and that is fine.
    served: Rc<Cell<u64>>,
}

impl Work for Doubler {
    type Request = u64;
    type Answer = (u64, u64);

    fn serve(self: Rc<Self>, n: u64) -> Served<(u64, u64)> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(n % 7)).await;
            self.served.set(self.served.get() + 1);
            (n, 2 * n)
        })
    }
}

/// Ends the loop once `done` is set (the answer callback sets it and wakes the loop).
struct UntilDone {
    done: Rc<Cell<bool>>,
    waker: Rc<RefCell<Option<Arc<Waker>>>>,
}

impl Control for UntilDone {
    fn poll(&mut self, _files: &mut LoopFiles<'_>) -> Command {
        if self.done.get() {
            Command::Exit
        } else {
            Command::Continue
        }
    }

    fn register(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
        *self.waker.borrow_mut() = Some(Arc::new(Waker::new(registry, CONTROL)?));
        Ok(())
    }
}

fn event_loop(posted: &Posted) -> EventLoop {
    let zone = bizzy::core::stats::ZONE.to_string();
    let zones = Zones::build(&[(zone.clone(), bizzy::core::stats::zone_size())], None).unwrap();
    let stats = ConnStats::new(zones.get(&zone).unwrap().clone(), 0);
    EventLoop::new(Vec::new(), Vec::new(), 64, stats, posted.clone()).unwrap()
}

#[test]
fn every_request_is_answered_once_on_the_loop_thread() {
    const N: u64 = 900;
    let posted = Posted::new();
    let mut el = event_loop(&posted);
    let got: Rc<RefCell<Vec<(u64, u64)>>> = Rc::default();
    let done = Rc::new(Cell::new(false));
    let waker: Rc<RefCell<Option<Arc<Waker>>>> = Rc::default();
    let loop_thread = std::thread::current().id();
    let on_answer = {
        let (got, done, waker) = (Rc::clone(&got), Rc::clone(&done), Rc::clone(&waker));
        move |a: (u64, u64)| {
            assert_eq!(
                std::thread::current().id(),
                loop_thread,
                "answers reach the loop thread"
            );
            got.borrow_mut().push(a);
            if got.borrow().len() as u64 == N {
                done.set(true);
                if let Some(w) = waker.borrow().as_ref() {
                    w.wake().unwrap();
                }
            }
        }
    };
    let make = || Doubler {
        served: Rc::new(Cell::new(0)),
    };
    let mut io = Io::start("bizzy-io-test", make, &posted, on_answer).unwrap();
    for n in 0..N {
        io.send(n).unwrap();
    }
    assert_eq!(io.in_flight(), N as usize);
    let t = Instant::now();
    let mut ctl = UntilDone { done, waker };
    el.run(&mut ctl, Duration::from_secs(5)).unwrap();
    let mut got = got.borrow().clone();
    assert_eq!(got.len() as u64, N, "every answer, once");
    assert!(
        got.windows(2).any(|w| w[0].0 > w[1].0),
        "answers come back as they finish, not in request order"
    );
    got.sort_unstable();
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, &(n, d))| n == i as u64 && d == 2 * n));
    assert_eq!(io.in_flight(), 0);
    // Served one after another, the sleeps alone would take N * 3 ms on average.
    assert!(
        t.elapsed() < Duration::from_millis(N * 3),
        "{:?}",
        t.elapsed()
    );
}

/// Tells the loop `0..5` as news when it starts; answers a request only after a second.
struct Teller;

impl Work for Teller {
    type Request = u64;
    type Answer = u64;

    fn serve(self: Rc<Self>, n: u64) -> Served<u64> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            n
        })
    }

    fn started(self: Rc<Self>, news: News<u64>) {
        tokio::task::spawn_local(async move {
            for i in 0..5 {
                news.tell(i);
            }
        });
    }
}

#[test]
fn news_reach_the_loop_without_counting_as_answers() {
    let posted = Posted::new();
    let mut el = event_loop(&posted);
    let got: Rc<RefCell<Vec<u64>>> = Rc::default();
    let done = Rc::new(Cell::new(false));
    let waker: Rc<RefCell<Option<Arc<Waker>>>> = Rc::default();
    let on_answer = {
        let (got, done, waker) = (Rc::clone(&got), Rc::clone(&done), Rc::clone(&waker));
        move |a: u64| {
            got.borrow_mut().push(a);
            if got.borrow().len() == 5 {
                done.set(true);
                if let Some(w) = waker.borrow().as_ref() {
                    w.wake().unwrap();
                }
            }
        }
    };
    let mut io = Io::start("bizzy-io-news", || Teller, &posted, on_answer).unwrap();
    io.send(42).unwrap();
    let mut ctl = UntilDone { done, waker };
    el.run(&mut ctl, Duration::from_secs(5)).unwrap();
    assert_eq!(*got.borrow(), [0, 1, 2, 3, 4], "the news, in order");
    assert_eq!(
        io.in_flight(),
        1,
        "news are not answers: the request is still out"
    );
}
