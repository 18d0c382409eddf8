//! One HTTP/1.1 connection: the keep-alive state machine.
//!
//! Reads go into a per-connection buffer that exists only while a request is in progress (an
//! idle keep-alive connection holds no buffer). Every complete request in the buffer is
//! answered in order (pipelining), the answers are queued, and the queue goes out with writev
//! (and sendfile for file bodies) until the socket would block. Errors that may desynchronise
//! framing answer and close; a close after an answer is lingering (our side shut, the rest of
//! the client's data read and dropped) so the answer is not lost to a reset.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mio::net::TcpStream;

use crate::core::event::{Conn, Cx, Next, Ready, Stop};
use crate::http::error::HttpError;
use crate::http::filter::FilterState;
use crate::http::parse::{self, ChunkedDecoder, Framing, Head, HeaderIdx, Limits, Method};
use crate::http::phase::{self, Outcome, Ran, Resume};
use crate::http::request::Request;
use crate::http::response::{self, Body, HeadCtx, Response};
use crate::http::runtime::Worker;
use crate::http::stats::State as Stat;
use crate::log;

/// Stop producing answers while this much output is queued (back-pressure on pipelining).
const OUT_HIGH: usize = 256 * 1024;
/// Reads one connection may do before the others get their turn.
const READS_PER_TURN: usize = 4;
/// How long a lingering close waits for the client to finish sending.
const LINGER: Duration = Duration::from_secs(2);

mod out;
mod stream;

use out::Out;
use stream::Streaming;

/// A head that was parsed while its body is still arriving.
struct Pending {
    head: Head,
    headers: Vec<HeaderIdx>,
    chunked: Option<(ChunkedDecoder, Vec<u8>, usize)>,
}

/// A request whose handler is waiting for an event.
struct Parked {
    req: Request,
    resume: Resume,
    /// When the handler's wait is up (loop clock, ms), if it set one.
    deadline: Option<u64>,
}

pub struct HttpConn {
    stream: TcpStream,
    w: Rc<Worker>,
    peer: SocketAddr,
    listen: SocketAddr,
    rbuf: BytesMut,
    out: Out,
    pending: Option<Box<Pending>>,
    parked: Option<Box<Parked>>,
    /// A response whose body is fed over time: no request is read while it lasts.
    stream_body: Option<Box<Streaming>>,
    continue_sent: bool,
    /// Loop time when the first byte of the current request arrived.
    request_start: Option<u64>,
    served: u64,
    readable: bool,
    writable: bool,
    /// Answer, then close.
    closing: bool,
    lingering: bool,
    draining: bool,
    /// The peer shut its side: read until EOF.
    peer_shut: bool,
    /// A request was refused before it was read whole: the client may still be sending.
    refused: bool,
    nodelay: bool,
    stat: Stat,
}

impl HttpConn {
    pub fn new(
        w: Rc<Worker>,
        stream: TcpStream,
        peer: SocketAddr,
        listen: SocketAddr,
        cx: &mut Cx<'_>,
    ) -> HttpConn {
        cx.set_timeout(w.http.conf.client_header_timeout.0);
        let listen = w.http.servers.address(listen, || stream.local_addr().ok());
        let mut c = HttpConn {
            stream,
            w,
            peer,
            listen,
            rbuf: BytesMut::new(),
            out: Out::default(),
            pending: None,
            parked: None,
            stream_body: None,
            continue_sent: false,
            request_start: None,
            served: 0,
            readable: false,
            writable: false,
            closing: false,
            lingering: false,
            draining: cx.draining(),
            peer_shut: false,
            refused: false,
            nodelay: false,
            stat: Stat::None,
        };
        c.set_stat(Stat::Reading);
        c
    }

    fn set_stat(&mut self, s: Stat) {
        self.w.stats.transition(self.stat, s);
        self.stat = s;
    }

    /// Reads, answers and writes until nothing more can be done now.
    fn drive(&mut self, cx: &mut Cx<'_>) -> Next {
        let mut reads = 0;
        loop {
            if self.lingering {
                return self.linger(cx);
            }
            let held = self.process(cx);
            self.feed(cx);
            if self.flush().is_err() {
                return Next::Close;
            }
            if !self.out.is_empty() {
                cx.set_timeout(self.w.http.conf.send_timeout.0);
                self.set_stat(Stat::Writing);
                return Next::Keep;
            }
            if self.closing {
                return self.start_linger(cx);
            }
            if let Some(p) = &self.parked {
                match p.deadline {
                    Some(at) => {
                        cx.set_timeout(Duration::from_millis(at.saturating_sub(cx.now_ms())))
                    }
                    None => cx.clear_timeout(),
                }
                return Next::Keep;
            }
            if self.stream_body.is_some() {
                if self.stream_due(cx.now_ms()) {
                    continue;
                }
                return self.streaming(cx);
            }
            if held {
                // The output went out: answer the rest of the pipeline already buffered.
                continue;
            }
            if !self.readable {
                break;
            }
            if reads == READS_PER_TURN {
                cx.yield_now();
                break;
            }
            reads += 1;
            match self.read(cx) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(()) => return Next::Close,
            }
        }
        self.idle_or_reading(cx);
        Next::Keep
    }

    /// Sets the deadline and gauge for a connection waiting for bytes.
    fn idle_or_reading(&mut self, cx: &mut Cx<'_>) {
        let h = &self.w.http.conf;
        if self.pending.is_some() {
            cx.set_timeout(h.client_body_timeout.0);
            self.set_stat(Stat::Reading);
        } else if let Some(start) = self.request_start {
            let left =
                (start + h.client_header_timeout.0.as_millis() as u64).saturating_sub(cx.now_ms());
            cx.set_timeout(Duration::from_millis(left));
            self.set_stat(Stat::Reading);
        } else {
            self.rbuf = BytesMut::new();
            self.out.tail = Vec::new();
            let t = if self.draining {
                h.keepalive_drain.0
            } else if self.served == 0 {
                h.client_header_timeout.0
            } else {
                h.keepalive_timeout.0
            };
            cx.set_timeout(t);
            self.set_stat(if self.served == 0 {
                Stat::Reading
            } else {
                Stat::Waiting
            });
        }
    }

    /// Reads once into the buffer. Ok(true): new bytes; Ok(false): would block.
    fn read(&mut self, cx: &mut Cx<'_>) -> Result<bool, ()> {
        let h = &self.w.http.conf;
        if self.rbuf.capacity() - self.rbuf.len() < 512 {
            let want = (h.client_header_buffer_size.0 as usize).max(1024);
            self.rbuf.reserve(want.max(self.rbuf.len()));
        }
        let spare = self.rbuf.spare_capacity_mut();
        let room = spare.len();
        // SAFETY: read(2) writes at most `spare.len()` bytes into the uninitialised spare
        // capacity; exactly `n` of them are then marked initialised.
        let res = unsafe {
            let buf = std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), spare.len());
            self.stream.read(buf)
        };
        match res {
            Ok(0) => Err(()),
            Ok(n) => {
                // SAFETY: the kernel initialised `n` bytes past the old length.
                unsafe { self.rbuf.set_len(self.rbuf.len() + n) };
                if n < room && !self.peer_shut {
                    // A short read drained the socket: the next bytes raise a new edge, so
                    // there is no need to read again only to be told EAGAIN (nginx does this).
                    self.readable = false;
                }
                if self.request_start.is_none() {
                    self.request_start = Some(cx.now_ms());
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => {
                log!(Info, "recv() from {} failed ({e})", self.peer);
                Err(())
            }
        }
    }

    fn limits(&self) -> Limits {
        let h = &self.w.http.conf;
        Limits {
            max_line: h.large_client_header_buffers.0 as usize,
            max_head: h.large_client_header_buffers.0 as usize,
            max_headers: h.max_headers,
        }
    }

    /// Answers every complete request in the buffer, in order. True when it stopped because
    /// too much output is queued, with buffered requests perhaps left to answer.
    fn process(&mut self, cx: &mut Cx<'_>) -> bool {
        while !self.closing
            && self.parked.is_none()
            && self.stream_body.is_none()
            && !self.rbuf.is_empty()
        {
            if self.out.bytes >= OUT_HIGH {
                return true;
            }
            let progressed = match self.pending.take() {
                None => self.parse_head(cx),
                Some(p) => self.read_body(cx, p),
            };
            if !progressed {
                break;
            }
        }
        false
    }

    fn parse_head(&mut self, cx: &mut Cx<'_>) -> bool {
        let mut headers = Vec::new();
        match parse::parse_head(&self.rbuf, &self.limits(), &mut headers) {
            Ok(None) => false,
            Ok(Some(head)) => {
                if self.request_start.is_none() {
                    self.request_start = Some(cx.now_ms());
                }
                let max = self.w.http.conf.client_max_body_size.0;
                let chunked = match head.framing {
                    Framing::Length(n) if max > 0 && n > max => {
                        self.fail(HttpError::Status {
                            status: 413,
                            why: "body larger than client_max_body_size",
                        });
                        return false;
                    }
                    Framing::Chunked => Some((ChunkedDecoder::new(max), Vec::new(), 0)),
                    _ => None,
                };
                self.continue_sent = false;
                self.pending = Some(Box::new(Pending {
                    head,
                    headers,
                    chunked,
                }));
                true
            }
            Err(e) => {
                self.fail(e.into());
                false
            }
        }
    }

    /// Completes the body of a parsed head; runs the request once it is whole.
    fn read_body(&mut self, cx: &mut Cx<'_>, mut p: Box<Pending>) -> bool {
        let head_len = p.head.len;
        let whole = match (&p.head.framing, &mut p.chunked) {
            (Framing::Chunked, Some((dec, body, used))) => {
                match dec.decode(&self.rbuf[head_len + *used..], body) {
                    Ok((n, done)) => {
                        *used += n;
                        done.then_some(*used)
                    }
                    Err(e) => {
                        self.fail(e.into());
                        return false;
                    }
                }
            }
            (Framing::Length(n), _) => {
                let n = *n as usize;
                (self.rbuf.len() >= head_len + n).then_some(n)
            }
            _ => Some(0),
        };
        let Some(body_len) = whole else {
            self.send_continue(&p.head);
            self.pending = Some(p);
            return false;
        };
        let raw = self.rbuf.split_to(head_len).freeze();
        let body_raw = self.rbuf.split_to(body_len).freeze();
        let body = match p.chunked.take() {
            Some((_, decoded, _)) => Bytes::from(decoded),
            None => body_raw,
        };
        self.run(cx, raw, p.head, std::mem::take(&mut p.headers), body);
        true
    }

    /// `Expect: 100-continue` and the body is not here yet: invite it, once.
    fn send_continue(&mut self, head: &Head) {
        if head.expect_continue && head.minor == 1 && !self.continue_sent {
            self.continue_sent = true;
            self.out
                .push_bytes(Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"));
        }
    }

    /// Runs a whole request through the phases and queues its answer.
    fn run(
        &mut self,
        cx: &mut Cx<'_>,
        raw: Bytes,
        head: Head,
        headers: Vec<HeaderIdx>,
        body: Bytes,
    ) {
        let start = self.request_start.take().unwrap_or(cx.now_ms());
        if !self.rbuf.is_empty() {
            // Part of the next pipelined request is already here: its head timer starts now,
            // and the connection is not idle, so its buffer must be kept.
            self.request_start = Some(cx.now_ms());
        }
        self.set_stat(Stat::Writing);
        let mut path = String::new();
        let query = match parse::normalize_path(&raw[head.target.clone()], &mut path) {
            Ok(q) => q.map(|r| r.start + head.target.start..r.end + head.target.start),
            Err(e) => return self.fail(e.into()),
        };
        let mut req = Request::new(raw, head, headers, path, query, body, self.peer, start);
        let http = &self.w.http;
        req.server = http.servers.select(self.listen, req.host());
        let h = &http.conf;
        if self.draining
            || cx.draining()
            || self.served + 1 >= h.keepalive_requests
            || h.keepalive_timeout.0.is_zero()
        {
            req.keep_alive = false;
        }
        match req.method() {
            Method::Other => return self.respond(cx, req, Response::error_page(501)),
            Method::Trace | Method::Connect => {
                return self.respond(cx, req, Response::error_page(405))
            }
            _ => {}
        }
        self.run_phases(cx, req, None, false);
    }

    fn run_phases(
        &mut self,
        cx: &mut Cx<'_>,
        mut req: Request,
        from: Option<Resume>,
        expired: bool,
    ) {
        let w = self.w.clone();
        let http = &w.http;
        let mut pcx = phase::Cx {
            now_ms: cx.now_ms(),
            token: cx.token(),
            posted: &w.posted,
            wait: None,
            expired,
        };
        let find = |r: &mut Request| r.location = http.servers.servers[r.server].find(&r.path);
        match http.engine.run(&mut req, &mut pcx, from, &find) {
            Ok(Ran::Done(resp)) => self.respond(cx, req, resp),
            Ok(Ran::Wait(resume)) => {
                let deadline = pcx.wait.map(|d| cx.now_ms() + d.as_millis() as u64);
                self.parked = Some(Box::new(Parked {
                    req,
                    resume,
                    deadline,
                }))
            }
            Err(e) => {
                let mut resp = error_response(&e);
                if e.closes() {
                    req.keep_alive = false;
                }
                if e.status() == 500 {
                    log!(Error, "{} while serving {} for {}", e, req.path, self.peer);
                }
                resp.close |= e.closes();
                self.respond(cx, req, resp)
            }
        }
    }

    /// Runs the filters and queues head and body; then the log phase.
    fn respond(&mut self, cx: &mut Cx<'_>, mut req: Request, mut resp: Response) {
        let w = self.w.clone();
        let http = &w.http;
        let mut st = FilterState::default();
        if let Err(e) = http.chains.head(&req, &mut resp, &mut st) {
            log!(Error, "header filter failed ({e}) for {}", self.peer);
            resp = Response::error_page(500);
            st = FilterState::default();
        }
        let keep_alive = req.keep_alive && !resp.close;
        req.keep_alive = keep_alive;
        let before = self.out.bytes;
        let head_bytes = self.queue_head(&resp, keep_alive, req.http11(), st.chunked);
        let with_body = req.method() != Method::Head && resp.has_body_status();
        if matches!(resp.body, Body::Stream(_)) && with_body {
            let Body::Stream(body) = std::mem::take(&mut resp.body) else {
                unreachable!("matched above");
            };
            self.set_nodelay();
            self.start_stream(req, body, st, resp.status, head_bytes);
            return;
        }
        if with_body {
            self.queue_body(&req, resp.body, &mut st);
        }
        let bytes_sent = (self.out.bytes - before) as u64;
        let status = resp.status;
        w.stats.request(status, bytes_sent);
        let out = Outcome {
            status,
            bytes_sent,
            body_bytes_sent: bytes_sent - head_bytes,
            duration_ms: cx.now_ms().saturating_sub(req.start_ms),
        };
        http.engine.log(&req, &out);
        self.served += 1;
        if !keep_alive {
            self.closing = true;
        } else {
            self.set_nodelay();
        }
    }

    /// A connection that stays open may carry small answers back to back: without
    /// TCP_NODELAY, Nagle and delayed ACKs could hold one for 40 ms. A connection that closes
    /// after one answer never needs the extra syscall (nginx's tcp_nodelay).
    fn set_nodelay(&mut self) {
        if !self.nodelay {
            self.nodelay = self.stream.set_nodelay(true).is_ok();
        }
    }

    /// Writes the response head straight into the output tail (no buffer of its own); returns
    /// its length.
    fn queue_head(
        &mut self,
        resp: &Response,
        keep_alive: bool,
        http11: bool,
        chunked: bool,
    ) -> u64 {
        let w = &self.w;
        let tail = &mut self.out.tail;
        let start = tail.len();
        w.date.with(|date| {
            let hc = HeadCtx {
                server: &w.http.server_header,
                date,
                keep_alive,
                http11,
                chunked,
            };
            response::write_head(resp, &hc, tail);
        });
        let n = tail.len() - start;
        self.out.bytes += n;
        n as u64
    }

    fn queue_body(&mut self, req: &Request, body: Body, st: &mut FilterState) {
        let chains = &self.w.http.chains;
        let mut chain = match body {
            Body::File { file, offset, len } => {
                self.out.push_file(file, offset, len);
                return;
            }
            Body::Bytes(b) => vec![b],
            Body::Empty | Body::Stream(_) => Vec::new(),
        };
        if let Err(e) = chains.body(req, &mut chain, true, st) {
            log!(Error, "body filter failed ({e}) for {}", self.peer);
            self.closing = true;
            return;
        }
        for b in chain {
            self.out.push_bytes(b);
        }
    }

    /// Answers an error that ends the connection (framing may be lost).
    fn fail(&mut self, e: HttpError) {
        log!(Info, "client {} sent an invalid request: {}", self.peer, e);
        self.pending = None;
        let resp = error_response(&e);
        let status = resp.status;
        let before = self.out.bytes;
        let head_len = self.queue_head(&resp, false, true, false);
        if let Body::Bytes(b) = resp.body {
            self.out.push_bytes(b);
        }
        let bytes_sent = (self.out.bytes - before) as u64;
        self.w.stats.request(status, bytes_sent);
        let out = Outcome {
            status,
            bytes_sent,
            body_bytes_sent: bytes_sent - head_len,
            duration_ms: 0,
        };
        for l in &self.w.http.engine.loggers {
            l.refused(self.peer, &out);
        }
        self.refused = true;
        self.closing = true;
        self.request_start = None;
    }

    /// Closes after the last answer went out. Lingers (nginx's `lingering_close on`) only when
    /// the client may still be sending: a refused request, unread bytes, or a socket not known
    /// to be drained; closing with unread data would reset the connection and could destroy the
    /// answer on its way.
    fn start_linger(&mut self, cx: &mut Cx<'_>) -> Next {
        if !self.refused && self.rbuf.is_empty() && !self.readable && self.pending.is_none() {
            return Next::Close;
        }
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return Next::Close;
        }
        self.lingering = true;
        self.rbuf.clear();
        self.set_stat(Stat::None);
        cx.set_timeout(LINGER);
        self.linger(cx)
    }

    /// Reads and drops whatever the client still sends, until it closes or the time is up.
    fn linger(&mut self, _cx: &mut Cx<'_>) -> Next {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Next::Close,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Next::Close,
            }
        }
    }

    /// Runs a parked request's handler again: woken, or (`expired`) its wait is up. Woken
    /// early, a handler that waits on without a new deadline keeps the one it set.
    fn resume(&mut self, cx: &mut Cx<'_>, expired: bool) {
        if let Some(p) = self.parked.take() {
            self.run_phases(cx, p.req, Some(p.resume), expired);
            if let (Some(again), false) = (&mut self.parked, expired) {
                again.deadline = again.deadline.or(p.deadline);
            }
        }
    }
}

fn error_response(e: &HttpError) -> Response {
    let mut r = Response::error_page(e.status());
    if let HttpError::Unavailable { retry_after } = e {
        r.header("Retry-After", retry_after.to_string());
    }
    r
}

impl Conn for HttpConn {
    fn ready(&mut self, cx: &mut Cx<'_>, ev: Ready) -> Next {
        if ev.readable || ev.closed {
            self.readable = true;
        }
        if ev.read_closed || ev.closed {
            self.peer_shut = true;
        }
        if ev.writable || ev.closed {
            self.writable = true;
        }
        if self.stream_body.is_some() && self.peer_shut {
            return Next::Close;
        }
        if self.parked.is_some() && self.peer_shut {
            // nginx's ngx_http_test_reading: the client left while its request waits; the
            // parked request (and the question it waits for) goes with the connection.
            log!(
                Info,
                "client {} prematurely closed the connection while its request waited",
                self.peer
            );
            return Next::Close;
        }
        if ev.woken {
            match self.stream_body.as_mut() {
                Some(s) => s.due_now = true,
                None => self.resume(cx, false),
            }
        }
        self.drive(cx)
    }

    fn timeout(&mut self, cx: &mut Cx<'_>) -> Next {
        if self.parked.is_some() {
            self.resume(cx, true);
            return self.drive(cx);
        }
        if self.stream_body.is_some() && self.out.is_empty() {
            // The stream's own clock (a heartbeat): `feed` sees it due.
            return self.drive(cx);
        }
        if self.lingering || !self.out.is_empty() {
            return Next::Close;
        }
        if self.pending.is_some() || self.request_start.is_some() {
            self.fail(HttpError::Status {
                status: 408,
                why: "client timed out",
            });
            return self.drive(cx);
        }
        Next::Close
    }

    fn drain(&mut self, cx: &mut Cx<'_>) -> Next {
        self.draining = true;
        if self.stream_body.is_some() {
            self.stop_stream(cx.now_ms());
            return self.drive(cx);
        }
        if self.out.is_empty()
            && self.pending.is_none()
            && self.parked.is_none()
            && self.request_start.is_none()
            && !self.lingering
        {
            cx.set_timeout(self.w.http.conf.keepalive_drain.0);
        }
        Next::Keep
    }

    fn abort(&mut self, _why: Stop) {
        self.set_stat(Stat::None);
    }
}

impl Drop for HttpConn {
    fn drop(&mut self) {
        self.stream_cut();
        self.set_stat(Stat::None);
    }
}
