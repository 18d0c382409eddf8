//! The cache manager process (`bizzy: cache manager process`): one per node and cycle, started
//! by the master after the workers when the configuration has a `[cache]` section.

use crate::core::config::Conf;
use crate::core::process::{AppError, Helper, HelperCtx};
use crate::modules::cache::CacheConf;

/// The cache manager of a cycle.
pub struct CacheManager {
    conf: CacheConf,
}

impl CacheManager {
    /// The cycle's cache manager: only when `[cache]` is written in the configuration.
    pub fn new(conf: &Conf) -> Option<CacheManager> {
        conf.written::<CacheConf>().then(|| CacheManager {
            conf: conf.section::<CacheConf>().clone(),
        })
    }
}

impl Helper for CacheManager {
    fn name(&self) -> &'static str {
        "cache manager"
    }

    fn run(&self, ctx: &HelperCtx<'_>) -> Result<(), AppError> {
        let _ = &self.conf;
        let mut p = libc::pollfd {
            fd: ctx.stop.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        while ctx.stop.requested().is_none() {
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, -1) };
        }
        Ok(())
    }
}
