//! Periodic work on the event loop that no socket drives (a job handed to the I/O thread every
//! so often): a connection without a socket whose deadline is the only thing that wakes it. It
//! sits in the loop's timer heap like any connection's deadline, costs nothing between runs, and
//! does not keep a stopping worker alive: it ends when the drain begins.

use std::time::Duration;

use crate::core::event::{Conn, Cx, Next, Posted, Ready};

/// Runs `f` on the loop thread after `first`, then again after each delay `f` returns, until
/// the worker stops.
pub fn every(posted: &Posted, first: Duration, f: impl FnMut() -> Duration + 'static) {
    let timer = Timer { f: Box::new(f) };
    posted.adopt(
        Box::new(move |cx: &mut Cx<'_>| {
            cx.set_timeout(first);
            Some(Box::new(timer) as Box<dyn Conn>)
        }),
        false,
    );
}

struct Timer {
    f: Box<dyn FnMut() -> Duration>,
}

impl Conn for Timer {
    fn ready(&mut self, _cx: &mut Cx<'_>, _ev: Ready) -> Next {
        Next::Keep
    }

    fn timeout(&mut self, cx: &mut Cx<'_>) -> Next {
        let next = (self.f)();
        cx.set_timeout(next);
        Next::Keep
    }

    fn drain(&mut self, _cx: &mut Cx<'_>) -> Next {
        Next::Close
    }
}
