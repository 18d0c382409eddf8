//! `return = { status, body, content_type, location }`: a fixed answer (nginx's `return`).
//! The body is built once per cycle and shared by every answer without copying; a 200 answer
//! carries an ETag of the body so conditional GETs get 304.

use std::rc::Rc;

use bytes::Bytes;

use crate::http::conf::LocationConf;
use crate::http::module::{ContentKey, InitError, Module, Registry};
use crate::http::phase::{ContentHandler, Cx};
use crate::http::response::Text;
use crate::http::{Flow, HttpError, Request, Response};

pub struct ReturnModule;

struct Return {
    status: u16,
    body: Bytes,
    content_type: Rc<str>,
    location: Option<String>,
    etag: Option<Rc<str>>,
}

impl Module for ReturnModule {
    fn name(&self) -> &'static str {
        "return"
    }

    fn init(&self, reg: &mut Registry<'_>) -> Result<(), InitError> {
        reg.content(
            ContentKey::Return,
            Box::new(|l: &LocationConf| {
                let r = l
                    .return_
                    .as_ref()
                    .ok_or(InitError::Missing("no return block"))?;
                let body = Bytes::from(r.body.clone().into_bytes());
                let etag =
                    (r.status == 200).then(|| Rc::from(format!("\"{:016x}\"", fnv1a(&body))));
                Ok(Rc::new(Return {
                    status: r.status,
                    body,
                    content_type: Rc::from(r.content_type.as_str()),
                    location: r.location.clone(),
                    etag,
                }) as Rc<dyn ContentHandler>)
            }),
        );
        Ok(())
    }
}

impl ContentHandler for Return {
    fn handle(&self, _req: &mut Request, _cx: &mut Cx<'_>) -> Result<Flow, HttpError> {
        let mut r = Response::with_body(self.status, self.content_type.clone(), self.body.clone());
        r.etag = self.etag.clone().map(Text::from);
        if let Some(loc) = &self.location {
            r.header("Location", loc.clone());
        }
        Ok(Flow::Done(r))
    }
}

/// FNV-1a, 64 bits: a stable fingerprint of a fixed body for its ETag.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
