//! The HTTP runtime of a cycle: modules register phase handlers, filters and location content
//! handlers once, in the master ([`Http::build`]); the result is inherited by every worker
//! through fork, and each worker adds its own counters and date cache ([`Worker`]).

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use crate::core::config::Conf;
use crate::core::event::Posted;
use crate::core::shm::Zones;
use crate::http::conf::{HttpConf, LocationConf};
use crate::http::date::DateCache;
use crate::http::filter::{self, Chains, GzipConf};
use crate::http::location::{Location, Server, Servers};
use crate::http::module::{ContentFactory, ContentKey, InitError, Module, Registry, Shared};
use crate::http::phase::{ContentHandler, Engine};
use crate::http::stats::Stats;

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
        shared: &Shared,
    ) -> Result<Http, InitError> {
        let h = conf.section::<HttpConf>();
        let mut reg = Registry {
            conf,
            shared,
            http: h,
            zones,
            files,
            handlers: Vec::new(),
            loggers: Vec::new(),
            filters: Vec::new(),
            content: Vec::new(),
        };
        for m in modules {
            m.init(&mut reg).map_err(|e| e.at(m.name()))?;
        }
        reg.filters.extend(filter::builtin(GzipConf {
            types: h.gzip_types.clone(),
            min_length: h.gzip_min_length.0,
            level: h.gzip_comp_level,
            default_on: h.gzip,
        }));
        let (servers, contents) = locations(h, &reg.content)?;
        let server_header = if h.server_tokens {
            format!("bizzy/{}", env!("CARGO_PKG_VERSION"))
        } else {
            "bizzy".to_string()
        };
        Ok(Http {
            conf: h.clone(),
            servers: Servers::new(&h.server, servers),
            engine: Engine::new(reg.handlers, reg.loggers, contents),
            chains: Chains::new(reg.filters),
            server_header,
            zones: zones.clone(),
        })
    }
}

/// The content handler of each location, by id.
type Contents = Vec<Rc<dyn ContentHandler>>;

/// Every server with its locations, and the content handler of each location by id.
fn locations(
    h: &HttpConf,
    factories: &[(ContentKey, ContentFactory)],
) -> Result<(Vec<Server>, Contents), InitError> {
    let mut servers = Vec::with_capacity(h.server.len());
    let mut contents = Vec::new();
    for (si, s) in h.server.iter().enumerate() {
        let mut locs = Vec::with_capacity(s.location.len());
        for (li, l) in s.location.iter().enumerate() {
            let content = content_for(factories, l)
                .map_err(|e| e.at(format!("http.server[{si}].location[{li}]")))?;
            locs.push(Location::new(l.clone(), contents.len()).map_err(InitError::Regex)?);
            contents.push(content);
        }
        servers.push(Server::new(s, locs));
    }
    Ok((servers, contents))
}

fn content_for(
    factories: &[(ContentKey, ContentFactory)],
    l: &LocationConf,
) -> Result<Rc<dyn ContentHandler>, InitError> {
    let (_, f) = factories
        .iter()
        .find(|(k, _)| match (k, &l.return_, &l.handler) {
            (ContentKey::Return, Some(_), _) => true,
            (ContentKey::Handler(name), None, Some(h)) => name == h,
            _ => false,
        })
        .ok_or_else(|| match (&l.return_, &l.handler) {
            (Some(_), _) => InitError::NotServed(None),
            (None, Some(h)) => InitError::NotServed(Some(h.clone())),
            (None, None) => InitError::NoContent,
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
