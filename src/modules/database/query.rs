//! Questions a connection waits for: an HTTP handler hands its database work to the worker's
//! I/O thread and parks its request (`Flow::Wait`); the answer wakes that connection.
//!
//! ```text
//!   event loop                                   I/O thread
//!   Queries::ask(run, token) -> Pending  ---->   serve(pool, Query): a pooled connection,
//!     (kept in the request's ctx)                  run(&client) under the deadline,
//!   Queries::answered(id, Asked)  <----------      else the query is cancelled
//!     -> the slot is filled, the token woken
//! ```
//!
//! Nothing leaks when the connection dies first: dropping its [`Pending`] forgets the question,
//! and the answer, when it comes, goes nowhere. The I/O thread bounds every question by its
//! deadline too (a query still running then is cancelled on the server), so each is answered.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::time::Duration;

use mio::Token;
use tokio_postgres::Client;

use crate::core::event::Posted;
use crate::modules::cache::client::Client as Replica;
use crate::modules::database::pool::{describe, Pool};

/// What a question's work gives back; the asker knows its type.
pub type Answer = Box<dyn Any + Send>;

/// The work of a question: run on the I/O thread with a pooled connection.
pub type Run =
    Box<dyn for<'c> FnOnce(&'c Client) -> Pin<Box<dyn Future<Output = Answer> + 'c>> + Send>;

/// A question on its way to the I/O thread.
pub struct Query {
    pub id: u64,
    /// How long it may take, the wait for a connection included.
    pub timeout: Duration,
    pub run: Run,
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What a read may use on the I/O thread: the pool, and memcached when `[cache]` names servers.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub pool: &'a Pool,
    pub replica: Option<&'a Replica>,
}

/// The work of a read: it picks its own sources (the replica first, say) and gives back its
/// answer, errors included.
pub type Fetch =
    Box<dyn for<'c> FnOnce(Sources<'c>) -> Pin<Box<dyn Future<Output = Answer> + 'c>> + Send>;

/// A read on its way to the I/O thread.
pub struct Read {
    pub id: u64,
    /// How long it may take in all.
    pub timeout: Duration,
    pub fetch: Fetch,
}

impl fmt::Debug for Read {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Read")
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Serves `r` on the I/O thread within its deadline.
pub async fn serve_read(sources: Sources<'_>, r: Read) -> (u64, Asked) {
    match tokio::time::timeout(r.timeout, (r.fetch)(sources)).await {
        Ok(a) => (r.id, Asked::Answer(a)),
        Err(_) => (r.id, Asked::TimedOut),
    }
}

/// How a question ended.
#[derive(Debug)]
pub enum Asked {
    Answer(Answer),
    /// No connection could be had: the database is unreachable (why).
    Unreachable(String),
    /// The deadline passed first; the query was cancelled.
    TimedOut,
}

/// Serves `q` on the I/O thread: a connection of `pool`, then its work, both within its
/// deadline. A query still running at the deadline is cancelled on the server, so that a slow
/// statement does not keep holding PostgreSQL for an answer nobody waits for.
pub async fn serve(pool: &Pool, q: Query) -> (u64, Asked) {
    let deadline = tokio::time::Instant::now() + q.timeout;
    let client = match tokio::time::timeout_at(deadline, pool.get()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return (q.id, Asked::Unreachable(describe(&e))),
        Err(_) => return (q.id, Asked::TimedOut),
    };
    let cancel = client.cancel_token();
    match tokio::time::timeout_at(deadline, (q.run)(&client)).await {
        Ok(a) => (q.id, Asked::Answer(a)),
        Err(_) => {
            tokio::task::spawn_local(async move {
                let _ = cancel.cancel_query(tokio_postgres::NoTls).await;
            });
            (q.id, Asked::TimedOut)
        }
    }
}

/// The loop's questions in flight, by id.
#[derive(Default)]
pub struct Queries(Rc<Inner>);

#[derive(Default)]
struct Inner {
    next: Cell<u64>,
    waiting: RefCell<HashMap<u64, Waiter>>,
}

enum Waiter {
    /// A parked request: its slot is filled and its connection woken.
    Conn {
        token: Token,
        posted: Posted,
        slot: Rc<RefCell<Option<Asked>>>,
    },
    /// Nobody waits: the answer is handed to a function on the loop (a refresh in the
    /// background).
    Call(Box<dyn FnOnce(Asked)>),
}

/// A question asked for a parked request: its answer, once here. Dropping it (the request
/// finished another way, its connection closed) forgets the question.
pub struct Pending {
    id: u64,
    slot: Rc<RefCell<Option<Asked>>>,
    queries: Weak<Inner>,
}

impl Pending {
    /// The answer, if it came.
    pub fn take(&self) -> Option<Asked> {
        self.slot.borrow_mut().take()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(q) = self.queries.upgrade() {
            q.waiting.borrow_mut().remove(&self.id);
        }
    }
}

impl Queries {
    /// A new question for the connection `token`: its id (for the [`Query`]) and its
    /// [`Pending`]. When its answer comes, `token` is woken through `posted`.
    pub fn ask(&self, token: Token, posted: &Posted) -> (u64, Pending) {
        let id = self.0.next.get();
        self.0.next.set(id.wrapping_add(1));
        let slot = Rc::new(RefCell::new(None));
        self.0.waiting.borrow_mut().insert(
            id,
            Waiter::Conn {
                token,
                posted: posted.clone(),
                slot: Rc::clone(&slot),
            },
        );
        let pending = Pending {
            id,
            slot,
            queries: Rc::downgrade(&self.0),
        };
        (id, pending)
    }

    /// A question whose answer goes to `then`, on the loop, whatever it is: its id.
    pub fn ask_then(&self, then: impl FnOnce(Asked) + 'static) -> u64 {
        let id = self.0.next.get();
        self.0.next.set(id.wrapping_add(1));
        self.0
            .waiting
            .borrow_mut()
            .insert(id, Waiter::Call(Box::new(then)));
        id
    }

    /// Forgets question `id` (it could not be sent).
    pub fn forget(&self, id: u64) {
        self.0.waiting.borrow_mut().remove(&id);
    }

    /// The answer to question `id`: kept for its request, whose connection is woken, or handed
    /// to its function. An answer nobody waits for any more is dropped.
    pub fn answered(&self, id: u64, asked: Asked) {
        let w = self.0.waiting.borrow_mut().remove(&id);
        match w {
            Some(Waiter::Conn {
                token,
                posted,
                slot,
            }) => {
                *slot.borrow_mut() = Some(asked);
                posted.post(token);
            }
            Some(Waiter::Call(then)) => then(asked),
            None => {}
        }
    }

    /// Questions waiting for their answer.
    pub fn waiting(&self) -> usize {
        self.0.waiting.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_fills_the_slot_and_wakes_the_connection() {
        let queries = Queries::default();
        let posted = Posted::new();
        let (id, pending) = queries.ask(Token(7), &posted);
        assert!(pending.take().is_none());
        queries.answered(id, Asked::TimedOut);
        assert!(matches!(pending.take(), Some(Asked::TimedOut)));
        assert_eq!(queries.waiting(), 0);
    }

    #[test]
    fn a_dropped_pending_forgets_and_its_answer_goes_nowhere() {
        let queries = Queries::default();
        let posted = Posted::new();
        let (id, pending) = queries.ask(Token(3), &posted);
        let (other, kept) = queries.ask(Token(4), &posted);
        drop(pending);
        assert_eq!(queries.waiting(), 1);
        queries.answered(id, Asked::TimedOut);
        assert_eq!(queries.waiting(), 1);
        queries.answered(other, Asked::Unreachable("down".into()));
        assert!(matches!(kept.take(), Some(Asked::Unreachable(_))));
    }

    #[test]
    fn an_answer_nobody_waits_for_goes_to_its_function_once() {
        let queries = Queries::default();
        let got = Rc::new(Cell::new(0));
        let g = Rc::clone(&got);
        let id = queries.ask_then(move |a| {
            assert!(matches!(a, Asked::TimedOut));
            g.set(g.get() + 1);
        });
        queries.answered(id, Asked::TimedOut);
        queries.answered(id, Asked::TimedOut);
        assert_eq!(got.get(), 1);
        let forgotten = queries.ask_then(|_| panic!("forgotten"));
        queries.forget(forgotten);
        queries.answered(forgotten, Asked::TimedOut);
        assert_eq!(queries.waiting(), 0);
    }
}
