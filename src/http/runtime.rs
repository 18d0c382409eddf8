//! The HTTP runtime of a cycle: modules register phase handlers, filters and location content
//! handlers once, in the master; the result is inherited by every worker through fork, and each
//! worker adds its own counters and date cache.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use mio::net::TcpStream;

use crate::core::config::Conf;
use crate::core::event::{self, Posted, Service};
use crate::core::process::{Prepared, Services, WorkerCtx};
use crate::core::shm::Zones;
use crate::http::conf::{HttpConf, LocationConf, PROTOCOL};
use crate::http::conn::HttpConn;
use crate::http::date::DateCache;
use crate::http::filter::{self, Chains, Filter, GzipConf};
use crate::http::location::{Location, Server, Servers};
use crate::http::phase::{ContentHandler, Engine, Logger, PhaseHandler};
use crate::http::stats::{self, Stats};

/// A feature module (nginx's `ngx_module_t`): says what it needs from the master and registers
/// its handlers for a cycle.
pub trait Module {
    fn name(&self) -> &'static str;
    /// The names of the content handlers it serves, which locations may give as `handler`.
    fn handlers(&self) -> &[&'static str] {
        &[]
    }
    /// Shared memory zones: (name, bytes).
    fn zones(&self, _conf: &Conf) -> Vec<(String, usize)> {
        Vec::new()
    }
    /// Log files the master opens for it.
    fn files(&self, _conf: &Conf) -> Vec<PathBuf> {
        Vec::new()
    }
    fn init(&self, reg: &mut Registry<'_>) -> Result<(), String>;
}

/// Makes the content handler of a location.
pub type ContentFactory = Box<dyn Fn(&LocationConf) -> Result<Rc<dyn ContentHandler>, String>>;

/// Which locations a content factory serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKey {
    /// Locations with a `return`.
    Return,
    /// Locations with `handler = ...`: one of the module's [`Module::handlers`].
    Handler(&'static str),
}

/// What modules register into during a cycle's preparation.
pub struct Registry<'a> {
    pub conf: &'a Arc<Conf>,
    /// The `[http]` section of `conf`.
    pub http: &'a HttpConf,
    pub zones: &'a Zones,
    pub files: &'a [(PathBuf, std::fs::File)],
    handlers: Vec<Rc<dyn PhaseHandler>>,
    loggers: Vec<Rc<dyn Logger>>,
    filters: Vec<Rc<dyn Filter>>,
    content: Vec<(ContentKey, ContentFactory)>,
}

impl Registry<'_> {
    pub fn phase_handler(&mut self, h: Rc<dyn PhaseHandler>) {
        self.handlers.push(h);
    }
    pub fn logger(&mut self, l: Rc<dyn Logger>) {
        self.loggers.push(l);
    }
    pub fn filter(&mut self, f: Rc<dyn Filter>) {
        self.filters.push(f);
    }
    pub fn content(&mut self, key: ContentKey, f: ContentFactory) {
        self.content.push((key, f));
    }
}

/// A cycle's HTTP configuration, ready to serve.
pub struct Http {
    /// The cycle's `[http]` section.
    pub conf: HttpConf,
    pub servers: Servers,
    pub engine: Engine,
    pub chains: Chains,
    pub server_header: String,
    pub zones: Zones,
}

impl Http {
    /// Runs every module's `init` and builds servers, locations and chains.
    pub fn build(
        conf: &Arc<Conf>,
        zones: &Zones,
        files: &[(PathBuf, std::fs::File)],
        modules: &[Box<dyn Module>],
    ) -> Result<Http, String> {
        let h = conf.section::<HttpConf>();
        let mut reg = Registry {
            conf,
            http: h,
            zones,
            files,
            handlers: Vec::new(),
            loggers: Vec::new(),
            filters: Vec::new(),
            content: Vec::new(),
        };
        for m in modules {
            m.init(&mut reg).map_err(|e| format!("{}: {e}", m.name()))?;
        }
        reg.filters.extend(filter::builtin(GzipConf {
            types: h.gzip_types.clone(),
            min_length: h.gzip_min_length.0,
            level: h.gzip_comp_level,
            default_on: h.gzip,
        }));
        let mut servers = Vec::with_capacity(h.server.len());
        for (si, s) in h.server.iter().enumerate() {
            let mut locs = Vec::with_capacity(s.location.len());
            for (li, l) in s.location.iter().enumerate() {
                let content = content_for(&reg.content, l)
                    .map_err(|e| format!("http.server[{si}].location[{li}]: {e}"))?;
                locs.push(Location::new(l.clone(), content)?);
            }
            servers.push(Server::new(s, locs));
        }
        let server_header = if h.server_tokens {
            format!("bizzy/{}", env!("CARGO_PKG_VERSION"))
        } else {
            "bizzy".to_string()
        };
        Ok(Http {
            conf: h.clone(),
            servers: Servers::new(&h.server, servers),
            engine: Engine::new(reg.handlers, reg.loggers),
            chains: Chains::new(reg.filters),
            server_header,
            zones: zones.clone(),
        })
    }
}

fn content_for(
    factories: &[(ContentKey, ContentFactory)],
    l: &LocationConf,
) -> Result<Rc<dyn ContentHandler>, String> {
    let (_, f) = factories
        .iter()
        .find(|(k, _)| match (k, &l.return_, &l.handler) {
            (ContentKey::Return, Some(_), _) => true,
            (ContentKey::Handler(name), None, Some(h)) => name == h,
            _ => false,
        })
        .ok_or_else(|| match (&l.return_, &l.handler) {
            (Some(_), _) => "no module serves Return".to_string(),
            (None, Some(h)) => format!("no module serves handler {h:?}"),
            (None, None) => "no content: set `return` or `handler`".to_string(),
        })?;
    f(l)
}

/// One worker's view: the cycle's runtime plus what is per process.
pub struct Worker {
    pub http: Rc<Http>,
    pub stats: Stats,
    pub date: DateCache,
    pub posted: Posted,
    pub slot: usize,
}

/// The prepared state a cycle hands to its workers.
pub struct HttpPrepared {
    pub http: Rc<Http>,
}

impl Prepared for HttpPrepared {
    fn services(&self, ctx: &WorkerCtx<'_>) -> Result<Services, String> {
        let zone = ctx
            .zones
            .get(stats::ZONE)
            .ok_or("the http stats zone is missing")?
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
