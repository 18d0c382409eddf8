//! `handler = "static"`: files under `root`, with index files, MIME types, ETag and
//! Last-Modified (so the not-modified filter answers 304), byte ranges (through the range
//! filter) and `expires`. Small files are read into memory so the gzip filter can compress them;
//! larger ones go out with sendfile(2) and are never copied through user space. The request
//! path is already percent-decoded and normalised, so it cannot climb out of `root`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;

use crate::http::conf::{LocationConf, STATIC_HANDLER};
use crate::http::module::{ContentKey, InitError, Module, Registry};
use crate::http::parse::Method;
use crate::http::phase::{ContentHandler, Cx};
use crate::http::response::Body;
use crate::http::{Flow, HttpError, Request, Response};

/// The `handler` of the locations this module answers.
const HANDLER: &str = STATIC_HANDLER;

pub struct StaticModule;

/// Files up to this size are read into memory (and may be compressed).
const IN_MEMORY: u64 = 64 * 1024;

struct Static {
    root: PathBuf,
    index: Vec<String>,
    expires: Option<Duration>,
    types: Rc<HashMap<String, Rc<str>>>,
    default_type: Rc<str>,
}

impl Module for StaticModule {
    fn name(&self) -> &'static str {
        HANDLER
    }

    fn handlers(&self) -> &[&'static str] {
        &[HANDLER]
    }

    fn init(&self, reg: &mut Registry<'_>) -> Result<(), InitError> {
        let mut types: HashMap<String, Rc<str>> = MIME
            .iter()
            .map(|(e, t)| (e.to_string(), Rc::from(*t)))
            .collect();
        for (e, t) in &reg.http.types {
            types.insert(e.to_ascii_lowercase(), Rc::from(t.as_str()));
        }
        let types = Rc::new(types);
        let default_type: Rc<str> = Rc::from(reg.http.default_type.as_str());
        reg.content(
            ContentKey::Handler(HANDLER),
            Box::new(move |l: &LocationConf| {
                let root = l
                    .root
                    .clone()
                    .ok_or(InitError::Missing("static needs root"))?;
                Ok(Rc::new(Static {
                    root,
                    index: l.index.clone(),
                    expires: l.expires.map(|d| d.0),
                    types: types.clone(),
                    default_type: default_type.clone(),
                }) as Rc<dyn ContentHandler>)
            }),
        );
        Ok(())
    }
}

impl ContentHandler for Static {
    fn handle(&self, req: &mut Request, _cx: &mut Cx<'_>) -> Result<Flow, HttpError> {
        if !matches!(req.method(), Method::Get | Method::Head) {
            let mut r = Response::error_page(405);
            r.header("Allow", "GET, HEAD");
            return Ok(Flow::Done(r));
        }
        if req.path == "*" || !req.path.starts_with('/') {
            return Ok(Flow::Done(Response::error_page(404)));
        }
        let path = self.root.join(&req.path[1..]);
        if req.path.ends_with('/') {
            return Ok(Flow::Done(self.index(&path)));
        }
        Ok(Flow::Done(match File::open(&path) {
            Ok(f) => self.file(f, &path, req),
            Err(e) => error_for(e.kind()),
        }))
    }
}

impl Static {
    fn index(&self, dir: &Path) -> Response {
        for name in &self.index {
            let p = dir.join(name);
            match File::open(&p) {
                Ok(f) => return self.file_at(f, &p),
                Err(e) if matches!(e.kind(), ErrorKind::NotFound) => continue,
                Err(e) => return error_for(e.kind()),
            }
        }
        if dir.is_dir() {
            Response::error_page(403)
        } else {
            Response::error_page(404)
        }
    }

    /// A file named by the request: a directory gets a redirect to its slash form.
    fn file(&self, f: File, path: &Path, req: &Request) -> Response {
        match f.metadata() {
            Ok(m) if m.is_dir() => {
                let mut r = Response::error_page(301);
                let mut loc = req.path.clone();
                loc.push('/');
                if let Some(q) = req.query() {
                    loc.push('?');
                    loc.push_str(&String::from_utf8_lossy(q));
                }
                r.header("Location", loc);
                r
            }
            _ => self.file_at(f, path),
        }
    }

    fn file_at(&self, mut f: File, path: &Path) -> Response {
        let m = match f.metadata() {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Response::error_page(404),
            Err(e) => return error_for(e.kind()),
        };
        let len = m.len();
        let body = if len <= IN_MEMORY {
            let mut v = Vec::with_capacity(len as usize);
            if let Err(e) = f.read_to_end(&mut v) {
                crate::log!(Error, "read() \"{}\" failed ({e})", path.display());
                return Response::error_page(500);
            }
            Body::Bytes(Bytes::from(v))
        } else {
            Body::File {
                file: Rc::new(f),
                offset: 0,
                len,
            }
        };
        let mut r = Response::new(200);
        r.content_length = Some(body.len());
        r.body = body;
        r.content_type = Some(self.mime(path).into());
        r.last_modified = Some(UNIX_EPOCH + Duration::from_secs(m.mtime().max(0) as u64));
        r.etag = Some(format!("\"{:x}-{:x}\"", m.mtime(), len).into());
        r.header("Accept-Ranges", "bytes");
        if let Some(e) = self.expires {
            r.header("Cache-Control", format!("max-age={}", e.as_secs()));
        }
        r
    }

    fn mime(&self, path: &Path) -> Rc<str> {
        path.extension()
            .and_then(|e| e.to_str())
            .and_then(|e| self.types.get(&e.to_ascii_lowercase()))
            .cloned()
            .unwrap_or_else(|| self.default_type.clone())
    }
}

fn error_for(kind: ErrorKind) -> Response {
    match kind {
        ErrorKind::NotFound | ErrorKind::NotADirectory => Response::error_page(404),
        ErrorKind::PermissionDenied => Response::error_page(403),
        _ => Response::error_page(500),
    }
}

/// The built-in extension table (nginx's mime.types, the common part).
const MIME: &[(&str, &str)] = &[
    ("html", "text/html"),
    ("htm", "text/html"),
    ("css", "text/css"),
    ("xml", "text/xml"),
    ("txt", "text/plain"),
    ("js", "application/javascript"),
    ("mjs", "application/javascript"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("geojson", "application/geo+json"),
    ("webmanifest", "application/manifest+json"),
    ("gif", "image/gif"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("png", "image/png"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("svg", "image/svg+xml"),
    ("svgz", "image/svg+xml"),
    ("ico", "image/x-icon"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("ttf", "font/ttf"),
    ("otf", "font/otf"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("tar", "application/x-tar"),
    ("wasm", "application/wasm"),
    ("mp3", "audio/mpeg"),
    ("ogg", "audio/ogg"),
    ("mp4", "video/mp4"),
    ("webm", "video/webm"),
    ("csv", "text/csv"),
    ("yaml", "application/yaml"),
    ("yml", "application/yaml"),
];
