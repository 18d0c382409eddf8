//! The HTTP service of a worker: what a cycle hands its workers ([`HttpPrepared`]) and the
//! [`HttpService`] that turns each accepted socket into an [`HttpConn`] on the event loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;

use mio::net::TcpStream;

use crate::core::event::{self, Service};
use crate::core::process::{AppError, Prepared, Services, WorkerCtx};
use crate::http::conf::PROTOCOL;
use crate::http::conn::HttpConn;
use crate::http::date::DateCache;
use crate::http::module::InitError;
use crate::http::runtime::{Http, Worker};
use crate::http::stats::{self, Stats};

/// The prepared state a cycle hands to its workers.
pub struct HttpPrepared {
    pub http: Rc<Http>,
}

impl Prepared for HttpPrepared {
    fn services(&self, ctx: &WorkerCtx<'_>) -> Result<Services, AppError> {
        let zone = ctx
            .zones
            .get(stats::ZONE)
            .ok_or(InitError::Missing("the http stats zone is missing"))?
            .clone();
        let worker = Rc::new(Worker {
            http: self.http.clone(),
            stats: Stats::new(zone, ctx.slot),
            date: DateCache::default(),
            posted: ctx.posted.clone(),
            slot: ctx.slot,
        });
        Ok(vec![(PROTOCOL, Box::new(HttpService { worker }))])
    }
}

/// The HTTP side of a worker's event loop.
pub struct HttpService {
    worker: Rc<Worker>,
}

impl Service for HttpService {
    fn accept(
        &mut self,
        cx: &mut event::Cx<'_>,
        stream: TcpStream,
        peer: SocketAddr,
        listen: SocketAddr,
    ) -> Option<Box<dyn event::Conn>> {
        Some(Box::new(HttpConn::new(
            self.worker.clone(),
            stream,
            peer,
            listen,
            cx,
        )))
    }

    /// An HTTP connection touches no registry in its first turn, and most `Connection: close`
    /// requests are answered and closed in it.
    fn registers_late(&self) -> bool {
        true
    }

    fn idle(&mut self, _now_ms: u64) {
        for l in &self.worker.http.engine.loggers {
            l.flush();
        }
    }

    fn stop(&mut self) {
        self.idle(0);
    }

    fn reopen(&mut self, files: &[(PathBuf, std::fs::File)]) {
        for l in &self.worker.http.engine.loggers {
            l.reopen(files);
        }
    }
}
