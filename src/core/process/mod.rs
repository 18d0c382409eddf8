//! Processes: the master that supervises, the workers that serve, the helpers that run beside
//! them (the cache manager), and what the protocol layers give the master so that it can build
//! cycles without knowing them.

pub mod channel;
pub mod child;
pub mod error;
pub mod helper;
pub mod master;
pub mod signals;
pub mod title;
pub mod worker;

use std::path::PathBuf;

use crate::core::config::{Conf, Protocol, Sections};
pub use crate::core::event::Peer;
use crate::core::event::Service;
use crate::core::shm::Zones;

pub use error::{AppError, ProcessError};
pub use helper::{Helper, HelperCtx, Stop, StopKind};

/// What the protocol layers contribute to a cycle. Called in the master.
pub trait App {
    /// The configuration sections besides `[main]`, as the protocols and modules declared them.
    fn sections(&self) -> &Sections;
    /// The protocols this build serves; the master binds no other listener.
    fn kinds(&self) -> &[Protocol];
    /// Shared memory zones the modules want for `conf`: (name, size in bytes).
    fn zones(&self, conf: &Conf) -> Vec<(String, usize)>;
    /// Log files besides the error log (access logs), opened by the master.
    fn files(&self, conf: &Conf) -> Vec<PathBuf>;
    /// Builds everything the workers of this cycle share (locations, filter chains, modules),
    /// in the master, before forking: an error refuses the configuration.
    fn prepare(
        &self,
        conf: &Conf,
        zones: &Zones,
        files: &[(PathBuf, std::fs::File)],
    ) -> Result<Box<dyn Prepared>, AppError>;
    /// Checks what the configuration names besides itself (password and ACL files), for `-t`
    /// and `-s` before anything is started or signalled.
    fn check(&self, _conf: &Conf) -> Result<(), AppError> {
        Ok(())
    }
    /// A worker in `slot` died: reset the gauges it could not reset itself.
    fn reaped(&self, _zones: &Zones, _slot: usize) {}
    /// In the master, once, after the error log is open and before the first worker is forked
    /// (a schema migration run as a process of its own, say). `exe` is the server's binary.
    /// It must not leave a thread behind: the master forks next.
    fn before_workers(&self, _conf: &Conf, _exe: &std::path::Path) {}
}

/// A worker's services, each with the protocol of the listeners it serves.
pub type Services = Vec<(Protocol, Box<dyn Service>)>;

/// A cycle's prepared state, inherited by its workers through fork.
pub trait Prepared {
    /// In a new worker: one service per listener kind this process serves.
    fn services(&self, ctx: &WorkerCtx<'_>) -> Result<Services, AppError>;
    /// The processes this cycle runs beside its workers (nginx's cache manager): started after
    /// the workers, replaced on reload, restarted with back-off when they die.
    fn helpers(&self) -> Vec<std::rc::Rc<dyn Helper>> {
        Vec::new()
    }
}

/// What a new worker knows about itself.
pub struct WorkerCtx<'a> {
    pub slot: usize,
    pub conf: &'a Conf,
    pub zones: &'a Zones,
    pub files: &'a [(PathBuf, std::fs::File)],
    /// Where the worker's services post wake-ups for their connections.
    pub posted: crate::core::event::Posted,
    /// The cycle's generation (the number of reloads before it).
    pub generation: u64,
    /// Links to the sibling workers alive when this one was forked; a service takes them.
    pub peers: std::cell::RefCell<Vec<Peer>>,
}
