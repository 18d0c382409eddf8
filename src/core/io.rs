//! The worker's I/O thread: nginx's thread pool done the queue engine's way. Work that may
//! take time (a database, memcached, a file to fsync) never runs on the event loop: the loop
//! hands a request to its I/O thread over an inproc pipe, the thread serves it inside a
//! current-thread tokio runtime (many requests at once, each its own task), and the answer
//! comes back over a second pipe whose signaller wakes the loop, where it is handed to the
//! loop-side callback in arrival order.
//!
//! ```text
//!   event loop thread                         I/O thread (tokio, current-thread)
//!   Io::send(req) --[requests pipe]--> one task per request: Work::serve(req).await
//!   on_answer(ans) <--[answers pipe]-- (the answer pipe's eventfd wakes the loop)
//! ```
//!
//! The thread is started after fork, by whoever needs it in the worker (a module's per-worker
//! hook): the master holds no thread when it forks. It owns what [`Work`] makes there (a
//! database pool, say), so nothing of it is shared with the loop. [`Io::in_flight`] tells a
//! draining worker whether work is still out, so it stays until the answers are in. When the
//! loop side is dropped the requests pipe closes; the thread finishes the requests it holds
//! and exits (their answers go nowhere: the loop is gone), or ends with the process.
//! Nothing here blocks the loop: a full requests pipe is the caller's back-pressure
//! ([`Io::send`] hands the request back).
//!
//! The thread may also tell the loop what nobody asked for (a database notification, say):
//! [`Work::started`] hands the work a [`News`] handle whose messages take the answers pipe to
//! the same callback, without counting as answers (they keep no worker alive).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;

use mio::Interest;

use crate::core::event::{Conn, Cx, Next, Posted, Ready};
use crate::core::queue::{Context, Receiver, RecvError, SendError, Sender};
use crate::log;

/// A request's future on the I/O thread; it need not be `Send` (the runtime is one thread).
pub type Served<A> = Pin<Box<dyn Future<Output = A>>>;

/// What the I/O thread does with each request. Made on the I/O thread, so it may hold
/// anything (connections, a runtime's handles) without being `Send`.
pub trait Work: 'static {
    type Request: Send + 'static;
    type Answer: Send + 'static;
    /// Serves one request; runs concurrently with the others.
    fn serve(self: Rc<Self>, req: Self::Request) -> Served<Self::Answer>;

    /// Called once on the I/O thread, inside its runtime, before the first request: work
    /// that tells the loop things unasked keeps `news` (and may spawn its tasks here).
    fn started(self: Rc<Self>, _news: News<Self::Answer>) {}
}

/// What the I/O thread sends back: the answer to a request, or news nobody asked for.
enum Reply<A> {
    Answer(A),
    News(A),
}

/// The I/O thread's handle for telling the loop things nobody asked for: each message reaches
/// the loop's callback as an answer does, in order with them, but is not counted in
/// [`Io::in_flight`]. Lives on the I/O thread (cheap to clone there).
pub struct News<A: Send + 'static>(Rc<RefCell<Sender<Reply<A>>>>);

impl<A: Send + 'static> Clone for News<A> {
    fn clone(&self) -> Self {
        News(Rc::clone(&self.0))
    }
}

impl<A: Send + 'static> News<A> {
    /// Sends `a` to the loop; waits only if the loop is a whole pipe behind, as answers do.
    pub fn tell(&self, a: A) {
        answer(&self.0, Reply::News(a));
    }
}

/// The loop's side of a worker's I/O thread.
pub struct Io<W: Work> {
    requests: Sender<W::Request>,
    /// The pipes' context: dropping it (with the `Io`) closes them, which ends the thread.
    _ctx: Context,
    /// Requests sent and not yet answered.
    in_flight: Rc<Cell<usize>>,
}

impl<W: Work> Io<W> {
    /// Starts the thread: `make` builds the work there; every answer is handed to `on_answer`
    /// on the loop thread (the answers pipe joins the loop through `posted`).
    pub fn start(
        name: &str,
        make: impl FnOnce() -> W + Send + 'static,
        posted: &Posted,
        on_answer: impl FnMut(W::Answer) + 'static,
    ) -> io::Result<Io<W>> {
        let ctx = Context::new();
        let (requests, req_rx) = ctx.pipe::<W::Request>()?;
        let (ans_tx, answers) = ctx.pipe::<Reply<W::Answer>>()?;
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || serve_all(make, req_rx, ans_tx))?;
        let in_flight = Rc::new(Cell::new(0));
        let conn = AnswerConn {
            answers,
            on_answer: Box::new(on_answer),
            in_flight: Rc::clone(&in_flight),
        };
        adopt(posted, conn);
        Ok(Io {
            requests,
            _ctx: ctx,
            in_flight,
        })
    }

    /// Hands `req` to the I/O thread. A full pipe hands it back: stop taking input until
    /// [`Io::has_room`] (TCP back-pressure), never buffer without bound.
    pub fn send(&mut self, req: W::Request) -> Result<(), SendError<W::Request>> {
        self.requests.send(req)?;
        self.in_flight.set(self.in_flight.get() + 1);
        Ok(())
    }

    /// Whether [`Io::send`] can take a request now.
    pub fn has_room(&mut self) -> bool {
        self.requests.has_room()
    }

    /// Requests sent and not yet answered: a draining worker waits for them.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }
}

/// The answers pipe as a connection of the event loop (not a client: it does not keep a
/// stopping worker alive by itself; [`Io::in_flight`] does, through the service's `busy`).
struct AnswerConn<A: Send + 'static> {
    answers: Receiver<Reply<A>>,
    on_answer: Box<dyn FnMut(A)>,
    in_flight: Rc<Cell<usize>>,
}

fn adopt<A: Send + 'static>(posted: &Posted, mut conn: AnswerConn<A>) {
    posted.adopt(
        Box::new(move |cx: &mut Cx<'_>| {
            let token = cx.token();
            if let Err(e) = cx
                .registry()
                .register(&mut conn.answers, token, Interest::READABLE)
            {
                log!(
                    Crit,
                    "epoll_ctl(ADD) for the I/O thread's answers failed ({e})"
                );
                return None;
            }
            // Answers may have come before the registration armed the wake-up.
            cx.yield_now();
            Some(Box::new(conn) as Box<dyn Conn>)
        }),
        false,
    );
}

impl<A: Send + 'static> Conn for AnswerConn<A> {
    fn ready(&mut self, _cx: &mut Cx<'_>, _ev: Ready) -> Next {
        loop {
            match self.answers.try_recv() {
                Ok(Reply::Answer(a)) => {
                    self.in_flight.set(self.in_flight.get().saturating_sub(1));
                    (self.on_answer)(a);
                }
                Ok(Reply::News(a)) => (self.on_answer)(a),
                Err(RecvError::WouldBlock) => return Next::Keep,
                Err(_) => return Next::Close,
            }
        }
    }

    fn timeout(&mut self, _cx: &mut Cx<'_>) -> Next {
        Next::Keep
    }

    fn drain(&mut self, _cx: &mut Cx<'_>) -> Next {
        // Answers still due must reach the loop while the worker drains.
        Next::Keep
    }
}

/// The I/O thread: one task per request until the requests pipe closes, then the answers of
/// the tasks still running.
fn serve_all<W: Work>(
    make: impl FnOnce() -> W,
    mut requests: Receiver<W::Request>,
    answers: Sender<Reply<W::Answer>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log!(Crit, "the I/O thread cannot start its runtime ({e})");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let work = Rc::new(make());
        let answers = Rc::new(RefCell::new(answers));
        Rc::clone(&work).started(News(Rc::clone(&answers)));
        let mut tasks = tokio::task::JoinSet::new();
        let fd = SignalFd(requests.signal_fd());
        // SAFETY: the eventfd belongs to `requests`, which is moved into this future and so
        // outlives `wake`, a local of it; it stays open and the same for all that time.
        let wake = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        };
        let wake = match wake.map_err(io::Error::from) {
            Ok(fd) => fd,
            Err(e) => {
                log!(Crit, "the I/O thread cannot watch its requests ({e})");
                return;
            }
        };
        loop {
            loop {
                match requests.try_recv() {
                    Ok(req) => {
                        let (work, answers) = (Rc::clone(&work), Rc::clone(&answers));
                        tasks.spawn_local(async move {
                            let a = work.serve(req).await;
                            answer(&answers, Reply::Answer(a));
                        });
                    }
                    Err(RecvError::WouldBlock) => break,
                    Err(_) => {
                        while tasks.join_next().await.is_some() {}
                        return;
                    }
                }
            }
            while let Some(done) = tasks.try_join_next() {
                if done.is_err() {
                    log!(Crit, "an I/O task panicked");
                }
            }
            match wake.readable().await {
                Ok(mut guard) => guard.clear_ready(),
                Err(e) => {
                    log!(Crit, "the I/O thread lost its requests ({e})");
                    return;
                }
            }
        }
    });
}

/// Sends an answer to the loop. A full answers pipe waits for the loop to read (it always
/// does, promptly): the only place the I/O thread blocks on the loop, and only when the loop
/// is behind by the pipe's whole high-water mark.
fn answer<A: Send + 'static>(answers: &RefCell<Sender<A>>, mut a: A) {
    let mut tx = answers.borrow_mut();
    loop {
        match tx.send(a) {
            Ok(()) => return,
            Err(SendError::WouldBlock(back)) => {
                a = back;
                if tx.wait_writable(None).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// The requests pipe's eventfd, for tokio to watch (the pipe keeps owning it).
struct SignalFd(RawFd);

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}
