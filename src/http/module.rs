//! The module registry: what a feature module implements ([`Module`], nginx's `ngx_module_t`)
//! and what it registers into while a cycle is prepared ([`Registry`]): phase handlers,
//! filters, loggers and the content handlers of locations, by [`ContentKey`].
//!
//! Used in the master, once per cycle, by [`super::runtime::Http::build`]; nothing here runs
//! per request. What goes wrong there is an [`InitError`], which refuses the configuration.

use std::any::{Any, TypeId};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use crate::core::config::Conf;
use crate::core::shm::Zones;
use crate::http::conf::{HttpConf, LocationConf};
use crate::http::filter::Filter;
use crate::http::phase::{ContentHandler, Logger, PhaseHandler};

/// Why a cycle's HTTP state could not be built.
#[derive(Debug)]
pub enum InitError {
    /// Something the cycle should hold for a module or location is not there; says what.
    Missing(&'static str),
    /// The shared-memory zone of a `limit_req_zone` was not made.
    ZoneNotMade(String),
    /// A system call failed.
    Io { call: &'static str, err: io::Error },
    /// A location's regex does not compile.
    Regex(regex::Error),
    /// A location with neither `return` nor `handler`.
    NoContent,
    /// No module serves the location's `return` (`None`) or its handler.
    NotServed(Option<String>),
    /// An error of the module or location named by `at`.
    In { at: String, source: Box<InitError> },
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::Missing(what) => f.write_str(what),
            InitError::ZoneNotMade(name) => write!(f, "zone {name} was not made"),
            InitError::Io { call, err } => write!(f, "{call} failed ({err})"),
            InitError::Regex(e) => e.fmt(f),
            InitError::NoContent => f.write_str("no content: set `return` or `handler`"),
            InitError::NotServed(None) => f.write_str("no module serves Return"),
            InitError::NotServed(Some(h)) => write!(f, "no module serves handler {h:?}"),
            InitError::In { at, source } => write!(f, "{at}: {source}"),
        }
    }
}

impl std::error::Error for InitError {}

impl InitError {
    /// This error, said to be about `at` (a module, a location).
    pub fn at(self, at: impl Into<String>) -> InitError {
        InitError::In {
            at: at.into(),
            source: Box::new(self),
        }
    }
}

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
    fn init(&self, reg: &mut Registry<'_>) -> Result<(), InitError>;
}

/// Makes the content handler of a location.
pub type ContentFactory = Box<dyn Fn(&LocationConf) -> Result<Rc<dyn ContentHandler>, InitError>>;

/// Which locations a content factory serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKey {
    /// Locations with a `return`.
    Return,
    /// Locations with `handler = ...`: one of the module's [`Module::handlers`].
    Handler(&'static str),
}

/// What the wiring hands the modules for a cycle, by type: parts made once per cycle that a
/// module's handlers use in the workers (the worker's I/O thread, the token verifier). The
/// modules take what they need in [`Module::init`]; http itself knows none of these types.
#[derive(Default)]
pub struct Shared(Vec<(TypeId, Rc<dyn Any>)>);

impl Shared {
    /// Shares `v` (replacing what was shared under its type).
    pub fn put<T: 'static>(&mut self, v: Rc<T>) {
        self.0.retain(|(t, _)| *t != TypeId::of::<T>());
        self.0.push((TypeId::of::<T>(), v));
    }

    /// What was shared under `T`, if anything.
    pub fn get<T: 'static>(&self) -> Option<Rc<T>> {
        self.0
            .iter()
            .find(|(t, _)| *t == TypeId::of::<T>())
            .and_then(|(_, v)| Rc::clone(v).downcast::<T>().ok())
    }
}

/// What modules register into during a cycle's preparation.
pub struct Registry<'a> {
    pub conf: &'a Arc<Conf>,
    /// What the wiring shares with the modules this cycle.
    pub shared: &'a Shared,
    /// The `[http]` section of `conf`.
    pub http: &'a HttpConf,
    pub zones: &'a Zones,
    pub files: &'a [(PathBuf, std::fs::File)],
    pub(super) handlers: Vec<Rc<dyn PhaseHandler>>,
    pub(super) loggers: Vec<Rc<dyn Logger>>,
    pub(super) filters: Vec<Rc<dyn Filter>>,
    pub(super) content: Vec<(ContentKey, ContentFactory)>,
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
