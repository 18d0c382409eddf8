//! `handler = "status"`: nginx's stub_status figures, summed over every worker of the node.

use std::fmt::Write;
use std::rc::Rc;

use bytes::Bytes;

use crate::core::shm::Zone;
use crate::core::stats;
use crate::http::conf::LocationConf;
use crate::http::module::{ContentKey, InitError, Module, Registry};
use crate::http::phase::{ContentHandler, Cx};
use crate::http::stats as hstats;
use crate::http::{Flow, HttpError, Request, Response};

/// The `handler` of the locations this module answers.
const HANDLER: &str = "status";

pub struct StatusModule;

struct Status {
    core: Zone,
    http: Zone,
}

/// The zones every counter page reads.
pub fn zones(reg: &Registry<'_>) -> Result<(Zone, Zone), InitError> {
    let core = reg
        .zones
        .get(stats::ZONE)
        .ok_or(InitError::Missing("core stats zone missing"))?
        .clone();
    let http = reg
        .zones
        .get(hstats::ZONE)
        .ok_or(InitError::Missing("http stats zone missing"))?
        .clone();
    Ok((core, http))
}

impl Module for StatusModule {
    fn name(&self) -> &'static str {
        HANDLER
    }

    fn handlers(&self) -> &[&'static str] {
        &[HANDLER]
    }

    fn init(&self, reg: &mut Registry<'_>) -> Result<(), InitError> {
        let (core, http) = zones(reg)?;
        reg.content(
            ContentKey::Handler(HANDLER),
            Box::new(move |_: &LocationConf| {
                Ok(Rc::new(Status {
                    core: core.clone(),
                    http: http.clone(),
                }) as Rc<dyn ContentHandler>)
            }),
        );
        Ok(())
    }
}

impl ContentHandler for Status {
    fn handle(&self, _req: &mut Request, _cx: &mut Cx<'_>) -> Result<Flow, HttpError> {
        let c = stats::totals(&self.core);
        let h = hstats::totals(&self.http);
        let mut s = String::with_capacity(160);
        let _ = write!(
            s,
            "Active connections: {} \nserver accepts handled requests\n {} {} {} \nReading: {} Writing: {} Waiting: {} \n",
            c.active, c.accepted, c.handled, h.requests, h.reading, h.writing, h.waiting
        );
        let mut r = Response::with_body(200, "text/plain", Bytes::from(s));
        r.header("Cache-Control", "no-cache");
        Ok(Flow::Done(r))
    }
}
