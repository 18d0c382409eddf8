//! A connection whose response body is a stream ([`crate::http::stream`]): pulled when the
//! output it gave before is gone and something is due, ended by the stream, by a stopping
//! worker, or by the client leaving (logged then too, with what was sent).

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::HttpConn;
use crate::core::event::{Cx, Next};
use crate::http::filter::FilterState;
use crate::http::phase::Outcome;
use crate::http::request::Request;
use crate::http::stream::{Pulled, Stream, StreamCx};
use crate::log;

/// A response being streamed.
pub(super) struct Streaming {
    req: Request,
    body: Box<dyn Stream>,
    st: FilterState,
    status: u16,
    /// Bytes queued for this response, head included, and the head's share.
    sent: u64,
    head_bytes: u64,
    /// Woken, or just started: pull when the output has room.
    pub(super) due_now: bool,
    /// When the stream asked to be pulled again (loop clock, ms).
    pub(super) due_at: Option<u64>,
}

impl Streaming {
    fn due(&self, now_ms: u64) -> bool {
        self.due_now || self.due_at.is_some_and(|at| now_ms >= at)
    }
}

impl HttpConn {
    /// The response's head is queued and its body is `body`: from now on the connection feeds
    /// it instead of reading requests.
    pub(super) fn start_stream(
        &mut self,
        mut req: Request,
        body: Box<dyn Stream>,
        st: FilterState,
        status: u16,
        head_bytes: u64,
    ) {
        // A stream may last for hours: it keeps its request's head and body, not the read buffer
        // they came in (an empty slice of it would keep it all), nor spare room in its lists.
        req.raw = Bytes::copy_from_slice(&req.raw);
        req.body = Bytes::copy_from_slice(&req.body);
        req.headers.shrink_to_fit();
        if self.rbuf.is_empty() {
            self.rbuf = bytes::BytesMut::new();
        }
        if let Some(n) = body.send_buffer() {
            set_send_buffer(&self.stream, n);
        }
        self.stream_body = Some(Box::new(Streaming {
            req,
            body,
            st,
            status,
            sent: head_bytes,
            head_bytes,
            due_now: true,
            due_at: None,
        }));
    }

    /// Pulls the stream if it is due and everything it gave before has left the worker.
    pub(super) fn feed(&mut self, cx: &mut Cx<'_>) {
        let now = cx.now_ms();
        let Some(s) = self.stream_body.as_mut() else {
            return;
        };
        // The first pull joins the head; later ones wait until the output is gone.
        let room = self.out.is_empty() || s.sent == s.head_bytes;
        if !room || !s.due(now) {
            return;
        }
        s.due_now = false;
        let mut scx = StreamCx {
            now_ms: now,
            token: cx.token(),
            posted: &self.w.posted,
            wait: None,
        };
        let mut chain = Vec::new();
        let pulled = s.body.pull(&mut scx, &mut chain);
        s.due_at = scx.wait.map(|d| now + d.as_millis() as u64);
        self.stream_out(chain, pulled == Pulled::End, now);
    }

    /// The worker is stopping: the stream's last words, and the end of the body.
    pub(super) fn stop_stream(&mut self, now_ms: u64) {
        let Some(s) = self.stream_body.as_mut() else {
            return;
        };
        let mut chain = Vec::new();
        s.body.stop(&mut chain);
        s.req.keep_alive = false;
        self.stream_out(chain, true, now_ms);
    }

    /// Whether the stream is due to be pulled, once the output is gone.
    pub(super) fn stream_due(&self, now_ms: u64) -> bool {
        self.stream_body.as_ref().is_some_and(|s| s.due(now_ms))
    }

    /// How long until the stream is due by its clock (None: only a wake-up makes it due).
    pub(super) fn stream_wait(&self, now_ms: u64) -> Option<Duration> {
        let at = self.stream_body.as_ref()?.due_at?;
        Some(Duration::from_millis(at.saturating_sub(now_ms)))
    }

    /// Runs `chain` through the body filters and queues it; `last` ends the response.
    fn stream_out(&mut self, mut chain: Vec<Bytes>, last: bool, now_ms: u64) {
        let w = self.w.clone();
        let Some(s) = self.stream_body.as_mut() else {
            return;
        };
        if let Err(e) = w.http.chains.body(&s.req, &mut chain, last, &mut s.st) {
            log!(Error, "body filter failed ({e}) for {}", self.peer);
            self.closing = true;
            self.end_stream(now_ms);
            return;
        }
        let before = self.out.bytes;
        for b in chain {
            self.out.push_bytes(b);
        }
        s.sent += (self.out.bytes - before) as u64;
        if last {
            if !s.req.keep_alive {
                self.closing = true;
            }
            self.end_stream(now_ms);
        }
    }

    /// The response is over (whole, or cut short): counted and logged.
    pub(super) fn end_stream(&mut self, now_ms: u64) {
        let Some(s) = self.stream_body.take() else {
            return;
        };
        self.w.stats.request(s.status, s.sent);
        let out = Outcome {
            status: s.status,
            bytes_sent: s.sent,
            body_bytes_sent: s.sent - s.head_bytes,
            duration_ms: now_ms.saturating_sub(s.req.start_ms),
        };
        self.w.http.engine.log(&s.req, &out);
        self.served += 1;
    }

    /// A streaming connection with nothing to write: waits for its stream's clock or a
    /// wake-up, and reads only to notice that the client left (what a client sends meanwhile is
    /// kept, up to one large header buffer, for after the stream).
    pub(super) fn streaming(&mut self, cx: &mut Cx<'_>) -> Next {
        // Most of a stream's life is waiting: it holds no output queue meanwhile.
        self.out.queue = std::collections::VecDeque::new();
        loop {
            match self.stream_wait(cx.now_ms()) {
                Some(d) => cx.set_timeout(d),
                None => cx.clear_timeout(),
            }
            let room = self.rbuf.len() < self.w.http.conf.large_client_header_buffers.0 as usize;
            if !self.readable || !room {
                return Next::Keep;
            }
            match self.read(cx) {
                Ok(true) => continue,
                Ok(false) => return Next::Keep,
                Err(()) => return Next::Close,
            }
        }
    }

    /// The client left in the middle of a stream: logged with the wall clock (no loop here).
    pub(super) fn stream_cut(&mut self) {
        if let Some(s) = &self.stream_body {
            let ms = SystemTime::now()
                .duration_since(s.req.time)
                .map_or(0, |d| d.as_millis() as u64);
            let at = s.req.start_ms + ms;
            self.end_stream(at);
        }
    }
}

/// SO_SNDBUF for a streaming connection (the kernel doubles it, and keeps a floor); a refusal
/// leaves the default, which only makes conflation start later.
fn set_send_buffer(stream: &mio::net::TcpStream, n: usize) {
    let _ = socket2::SockRef::from(stream).set_send_buffer_size(n);
}
