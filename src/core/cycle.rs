//! A cycle: one validated configuration with everything opened for it (listening sockets, log
//! files, shared memory zones, the modules' prepared state). A cycle is built whole or not at
//! all, so a failed reload leaves the running cycle untouched; listening sockets whose address
//! did not change are shared with the previous cycle (nginx's `ngx_init_cycle`, in small parts).

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crate::core::config::Conf;
use crate::core::listen::{self, Listening};
use crate::core::log;
use crate::core::process::{App, Prepared, ProcessError};
use crate::core::shm::Zones;
use crate::core::stats;

pub struct Cycle {
    pub conf: Arc<Conf>,
    pub listening: Vec<Listening>,
    pub error_log: File,
    /// Other log files the modules write (access logs), by path.
    pub files: Vec<(PathBuf, File)>,
    pub zones: Zones,
    pub prepared: Box<dyn Prepared>,
}

impl Cycle {
    /// Opens everything `conf` needs. `old` is the running cycle's listeners and zones (or
    /// sockets inherited from a previous binary).
    pub fn build(
        conf: Conf,
        app: &dyn App,
        old_listening: &[Listening],
        old_zones: Option<&Zones>,
    ) -> Result<Cycle, ProcessError> {
        let conf = Arc::new(conf);
        let error_log = log::open(&conf.main.error_log)
            .map_err(|e| ProcessError::open(&conf.main.error_log, e))?;
        let mut files = Vec::new();
        for path in app.files(&conf) {
            let f = log::open(&path).map_err(|e| ProcessError::open(&path, e))?;
            files.push((path, f));
        }
        let mut wanted = app.zones(&conf);
        wanted.push((stats::ZONE.to_string(), stats::zone_size()));
        let zones = Zones::build(&wanted, old_zones).map_err(|e| ProcessError::io("mmap()", e))?;
        let specs: Vec<_> = conf
            .listeners()
            .into_iter()
            .filter(|l| app.kinds().contains(&l.kind))
            .collect();
        let workers = conf.main.worker_processes;
        let listening =
            listen::open_all(&specs, old_listening, workers).map_err(ProcessError::Listen)?;
        let prepared = app.prepare(&conf, &zones, &files)?;
        Ok(Cycle {
            conf,
            listening,
            error_log,
            files,
            zones,
            prepared,
        })
    }

    /// Opens the log files again (USR1): the error log, then `files` in order.
    pub fn reopen(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        match log::open(&self.conf.main.error_log) {
            Ok(f) => self.error_log = f,
            Err(e) => errors.push(format!(
                "reopen \"{}\" failed ({e})",
                self.conf.main.error_log.display()
            )),
        }
        for (path, file) in &mut self.files {
            match log::open(path) {
                Ok(f) => *file = f,
                Err(e) => errors.push(format!("reopen \"{}\" failed ({e})", path.display())),
            }
        }
        errors
    }
}
