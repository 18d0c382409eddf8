//! `handler = "api"`: the JSON API under `/v1/`. This cycle of the project serves no API
//! resource yet, so every call answers the API's own 404 shape rather than an HTML page.

pub mod accounts;
pub mod body;
pub mod caller;
pub mod config;
pub mod db;
pub mod error;
pub mod hives;
pub mod page;
pub mod route;
pub mod sensors;
pub mod tokens;

use std::rc::Rc;

use crate::http::conf::LocationConf;
use crate::http::module::{ContentKey, InitError, Module, Registry};
use crate::http::phase::{ContentHandler, Cx};
use crate::http::{Flow, HttpError, Request, Response};

/// The `handler` of the locations this module answers.
const HANDLER: &str = "api";

pub struct ApiModule;

struct Api;

impl Module for ApiModule {
    fn name(&self) -> &'static str {
        HANDLER
    }

    fn handlers(&self) -> &[&'static str] {
        &[HANDLER]
    }

    fn init(&self, reg: &mut Registry<'_>) -> Result<(), InitError> {
        reg.content(
            ContentKey::Handler(HANDLER),
            Box::new(|_: &LocationConf| Ok(Rc::new(Api) as Rc<dyn ContentHandler>)),
        );
        Ok(())
    }
}

impl ContentHandler for Api {
    fn handle(&self, req: &mut Request, _cx: &mut Cx<'_>) -> Result<Flow, HttpError> {
        let msg = format!("no API resource at {}", req.path);
        Ok(Flow::Done(Response::error_json(404, "not_found", &msg)))
    }
}
