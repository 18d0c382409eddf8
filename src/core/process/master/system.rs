//! What the master does with the system around it rather than with its children: the pid
//! file, detaching from the terminal, and `-s SIGNAL` sent to a running master.

use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::unistd::{fork, ForkResult, Pid};

use crate::core::process::ProcessError;

/// Writes the pid file (creating its directory).
pub fn write_pid(path: &Path) -> Result<(), ProcessError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| ProcessError::io(format!("mkdir \"{}\"", dir.display()), e))?;
    }
    std::fs::write(path, format!("{}\n", std::process::id()))
        .map_err(|e| ProcessError::open(path, e))
}

/// The pid in a pid file, if it holds one.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Detaches like nginx: fork, the parent exits, the child starts a session and points its
/// standard descriptors at /dev/null.
pub(super) fn daemonize() -> Result<(), ProcessError> {
    // SAFETY: single-threaded at this point.
    match unsafe { fork() } {
        Err(e) => return Err(ProcessError::nix("fork()", e)),
        Ok(ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(ForkResult::Child) => {}
    }
    nix::unistd::setsid().map_err(|e| ProcessError::nix("setsid()", e))?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| ProcessError::io("open(\"/dev/null\")", e))?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors of this process.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
    }
    Ok(())
}

/// `-s SIGNAL`: sends the signal to the master named in the pid file.
pub fn signal_master(pid_file: &Path, name: &str) -> Result<(), ProcessError> {
    let sig = match name {
        "stop" => Signal::SIGTERM,
        "quit" => Signal::SIGQUIT,
        "reload" => Signal::SIGHUP,
        "reopen" => Signal::SIGUSR1,
        other => return Err(ProcessError::BadSignal(other.to_string())),
    };
    let text = std::fs::read_to_string(pid_file).map_err(|e| ProcessError::open(pid_file, e))?;
    let pid: i32 = text.trim().parse().map_err(|_| ProcessError::BadPid {
        text: text.trim().to_string(),
        file: pid_file.to_path_buf(),
    })?;
    kill(Pid::from_raw(pid), sig).map_err(|e| ProcessError::nix(format!("kill({pid}, {sig})"), e))
}
