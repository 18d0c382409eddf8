//! What every child of the master does first, whatever its kind (a worker, a cache manager):
//! the master's signal handling undone, the child's own installed, the error log told its new
//! pid, the title set, the descriptor limit raised and the privileges dropped, in that order
//! (nginx's `ngx_worker_process_init`, which its cache manager shares).

use std::os::fd::OwnedFd;

use crate::core::config::Conf;
use crate::core::log;
use crate::core::process::{signals, title, ProcessError};
use crate::log;

/// Turns the process just forked into a child titled `title`. Returns the read end of the
/// signal wake-up pipe (QUIT, TERM, INT and USR1 sent to the child itself).
pub fn become_child(conf: &Conf, title: &str) -> Result<OwnedFd, ProcessError> {
    signals::reset_in_child();
    let wake = signals::install_worker().map_err(|e| ProcessError::io("pipe()", e))?;
    log::after_fork();
    title::set(title);
    if let Some(n) = conf.main.worker_rlimit_nofile {
        raise_nofile(n);
    }
    if nix::unistd::geteuid().is_root() {
        drop_privileges(&conf.main.user)?;
    }
    Ok(wake)
}

/// Sets RLIMIT_NOFILE to `n`; past the hard limit (which only a privileged process may raise)
/// it takes the hard limit and says so, as nginx goes on after a failed setrlimit.
fn raise_nofile(n: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if setrlimit(Resource::RLIMIT_NOFILE, n, n).is_ok() {
        return;
    }
    let hard = getrlimit(Resource::RLIMIT_NOFILE).map_or(n, |(_, h)| h);
    match setrlimit(Resource::RLIMIT_NOFILE, n.min(hard), hard) {
        Ok(()) => log!(
            Warn,
            "worker_rlimit_nofile {n} is above the hard limit: using {hard}"
        ),
        Err(e) => log!(Crit, "setrlimit(RLIMIT_NOFILE, {n}) failed ({e})"),
    }
}

/// Switches to `user` or `user:group`, with that user's supplementary groups.
fn drop_privileges(spec: &str) -> Result<(), ProcessError> {
    use nix::unistd::{initgroups, setgid, setuid, Group, User};
    let (uname, gname) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = User::from_name(uname)
        .ok()
        .flatten()
        .ok_or_else(|| not_found(format!("getpwnam(\"{uname}\")")))?;
    let gid = match gname {
        Some(g) => {
            Group::from_name(g)
                .ok()
                .flatten()
                .ok_or_else(|| not_found(format!("getgrnam(\"{g}\")")))?
                .gid
        }
        None => user.gid,
    };
    setgid(gid).map_err(|e| ProcessError::nix(format!("setgid({gid})"), e))?;
    let cname = std::ffi::CString::new(uname).map_err(|_| ProcessError::InvalidUserName)?;
    initgroups(&cname, gid).map_err(|e| ProcessError::nix(format!("initgroups({uname})"), e))?;
    setuid(user.uid).map_err(|e| ProcessError::nix(format!("setuid({})", user.uid), e))?;
    Ok(())
}

/// A look-up that found nothing: `getpwnam("x") failed`.
fn not_found(call: String) -> ProcessError {
    ProcessError::Sys { call, cause: None }
}
