//! Request phases as nginx has them, and the engine that runs their handlers.
//!
//! Handlers of each phase run in registration order; each returns a [`Flow`]: go on to the next
//! handler, skip to the next phase, finish with a response, or wait for an event (the
//! connection parks the request and runs the same handler again when woken). Find-location is
//! the engine's own step; the content phase runs the location's handler. The log phase runs after
//! the response went out, through [`Logger`]s.

use std::rc::Rc;

use crate::core::event::Posted;
use crate::http::error::HttpError;
use crate::http::request::Request;
use crate::http::response::Response;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    PostRead,
    ServerRewrite,
    FindLocation,
    Rewrite,
    Access,
    Content,
    Log,
}

/// nginx's DECLINED, OK, finalize and AGAIN, as a type.
#[derive(Debug)]
pub enum Flow {
    /// On to the next handler of this phase.
    Next,
    /// Skip the rest of this phase.
    NextPhase,
    /// Finished: send this response.
    Done(Response),
    /// The handler started something and posted-wake-up will resume it (same handler again).
    Wait,
}

/// What a handler can reach besides its request.
pub struct Cx<'a> {
    pub now_ms: u64,
    /// The connection's token and the loop's wake-up queue, for handlers that wait.
    pub token: mio::Token,
    pub posted: &'a Posted,
    /// Set by a handler that returns [`Flow::Wait`]: how long it may wait. The connection runs
    /// the handler again when that time is up, with `expired` set, if nothing woke it first; a
    /// handler woken early that waits on without setting it keeps its first deadline.
    pub wait: Option<std::time::Duration>,
    /// This run is the one that follows a wait whose time is up: answer now.
    pub expired: bool,
}

pub trait PhaseHandler {
    fn phase(&self) -> Phase;
    fn handle(&self, req: &mut Request, cx: &mut Cx<'_>) -> Result<Flow, HttpError>;
}

/// A content handler attached to a location (nginx's `clcf->handler`).
pub trait ContentHandler {
    fn handle(&self, req: &mut Request, cx: &mut Cx<'_>) -> Result<Flow, HttpError>;
}

/// What the log phase knows of a finished request.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub status: u16,
    /// Bytes sent for the response, head included.
    pub bytes_sent: u64,
    pub body_bytes_sent: u64,
    /// Request duration in ms.
    pub duration_ms: u64,
}

/// A log-phase handler; also told when to flush and when files were reopened.
pub trait Logger {
    fn log(&self, req: &Request, out: &Outcome);
    /// A request refused before it could be parsed whole (400, 408, 413, 414, 431, 505...).
    fn refused(&self, _peer: std::net::SocketAddr, _out: &Outcome) {}
    fn flush(&self) {}
    fn reopen(&self, _files: &[(std::path::PathBuf, std::fs::File)]) {}
}

/// Where a parked request resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume(usize);

/// The handlers of every phase before content, flattened in phase order, and the content
/// handler of every location.
#[derive(Default, Clone)]
pub struct Engine {
    handlers: Vec<Rc<dyn PhaseHandler>>,
    /// For each handler, the index of the first handler of the next phase.
    next_phase: Vec<usize>,
    /// By location id.
    contents: Vec<Rc<dyn ContentHandler>>,
    pub loggers: Vec<Rc<dyn Logger>>,
}

/// What running the engine gave.
pub enum Ran {
    Done(Response),
    Wait(Resume),
}

impl Engine {
    /// Builds the engine from handlers in registration order and the content handlers of the
    /// locations, by id.
    pub fn new(
        mut handlers: Vec<Rc<dyn PhaseHandler>>,
        loggers: Vec<Rc<dyn Logger>>,
        contents: Vec<Rc<dyn ContentHandler>>,
    ) -> Engine {
        handlers
            .retain(|h| !matches!(h.phase(), Phase::FindLocation | Phase::Content | Phase::Log));
        handlers.sort_by_key(|h| h.phase());
        let next_phase = (0..handlers.len())
            .map(|i| {
                let p = handlers[i].phase();
                (i..handlers.len())
                    .find(|&j| handlers[j].phase() != p)
                    .unwrap_or(handlers.len())
            })
            .collect();
        Engine {
            handlers,
            next_phase,
            contents,
            loggers,
        }
    }

    /// Runs from `from` (the start, or where a waiting request parked) to a response.
    /// `find_location` is called once, between the server-rewrite and rewrite phases.
    pub fn run(
        &self,
        req: &mut Request,
        cx: &mut Cx<'_>,
        from: Option<Resume>,
        find_location: &dyn Fn(&mut Request),
    ) -> Result<Ran, HttpError> {
        let mut i = from.map_or(0, |r| r.0);
        let content = self.handlers.len();
        let mut located = req.location.is_some();
        while i <= content {
            let phase = self.handlers.get(i).map_or(Phase::Content, |h| h.phase());
            if !located && phase > Phase::ServerRewrite {
                find_location(req);
                located = true;
            }
            if i == content {
                return self.content(req, cx, i);
            }
            match self.handlers[i].handle(req, cx)? {
                Flow::Next => i += 1,
                Flow::NextPhase => i = self.next_phase[i],
                Flow::Done(r) => return Ok(Ran::Done(r)),
                Flow::Wait => return Ok(Ran::Wait(Resume(i))),
            }
        }
        unreachable!("the loop returns at the content phase")
    }

    fn content(&self, req: &mut Request, cx: &mut Cx<'_>, i: usize) -> Result<Ran, HttpError> {
        let Some(id) = req.location.as_ref().map(|l| l.id) else {
            return Ok(Ran::Done(Response::error_page(404)));
        };
        let content = self
            .contents
            .get(id)
            .expect("a location's id indexes the content handlers of its own cycle")
            .clone();
        match content.handle(req, cx)? {
            Flow::Done(r) => Ok(Ran::Done(r)),
            Flow::Wait => Ok(Ran::Wait(Resume(i))),
            Flow::Next | Flow::NextPhase => Ok(Ran::Done(Response::error_page(404))),
        }
    }

    pub fn log(&self, req: &Request, out: &Outcome) {
        for l in &self.loggers {
            l.log(req, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    use bytes::Bytes;

    use crate::http::parse::{self, Limits};

    fn request(raw: &'static [u8]) -> Request {
        let mut headers = Vec::new();
        let head = parse::parse_head(raw, &Limits::default(), &mut headers)
            .unwrap()
            .unwrap();
        let peer = "127.0.0.1:1".parse().unwrap();
        Request::new(
            Bytes::from_static(raw),
            head,
            headers,
            "/".into(),
            None,
            Bytes::new(),
            peer,
            0,
        )
    }

    fn cx(posted: &Posted) -> Cx<'_> {
        Cx {
            now_ms: 0,
            token: mio::Token(1),
            posted,
            wait: None,
            expired: false,
        }
    }

    /// Waits on its first call, then passes; counts its calls.
    struct WaitOnce(Phase, Cell<u32>);
    impl PhaseHandler for WaitOnce {
        fn phase(&self) -> Phase {
            self.0
        }
        fn handle(&self, _req: &mut Request, _cx: &mut Cx<'_>) -> Result<Flow, HttpError> {
            self.1.set(self.1.get() + 1);
            Ok(if self.1.get() == 1 {
                Flow::Wait
            } else {
                Flow::Next
            })
        }
    }

    /// Skips the rest of its phase.
    struct Skip(Phase);
    impl PhaseHandler for Skip {
        fn phase(&self) -> Phase {
            self.0
        }
        fn handle(&self, _req: &mut Request, _cx: &mut Cx<'_>) -> Result<Flow, HttpError> {
            Ok(Flow::NextPhase)
        }
    }

    #[test]
    fn a_waiting_handler_resumes_where_it_parked() {
        let waits = Rc::new(WaitOnce(Phase::Access, Cell::new(0)));
        let before = Rc::new(WaitOnce(Phase::Rewrite, Cell::new(1)));
        let engine = Engine::new(vec![waits.clone(), before.clone()], Vec::new(), Vec::new());
        let posted = Posted::new();
        let mut cx = cx(&posted);
        let mut req = request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let found = Cell::new(0);
        let find = |_: &mut Request| found.set(found.get() + 1);
        let resume = match engine.run(&mut req, &mut cx, None, &find).unwrap() {
            Ran::Wait(r) => r,
            Ran::Done(r) => panic!("finished with {}", r.status),
        };
        assert_eq!(
            (before.1.get(), waits.1.get()),
            (2, 1),
            "rewrite ran, access parked"
        );
        match engine.run(&mut req, &mut cx, Some(resume), &find).unwrap() {
            Ran::Done(r) => assert_eq!(r.status, 404, "no location: 404"),
            Ran::Wait(_) => panic!("waited twice"),
        }
        assert_eq!(
            (before.1.get(), waits.1.get()),
            (2, 2),
            "rewrite not run again"
        );
    }

    #[test]
    fn next_phase_skips_the_rest_of_the_phase() {
        let skipped = Rc::new(WaitOnce(Phase::Access, Cell::new(5)));
        let engine = Engine::new(
            vec![Rc::new(Skip(Phase::Access)), skipped.clone()],
            Vec::new(),
            Vec::new(),
        );
        let posted = Posted::new();
        let mut cx = cx(&posted);
        let mut req = request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = engine.run(&mut req, &mut cx, None, &|_| {}).unwrap();
        assert!(matches!(r, Ran::Done(_)));
        assert_eq!(skipped.1.get(), 5, "the second access handler never ran");
    }
}
