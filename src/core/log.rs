//! The error log: nginx's format and levels, one per process.
//!
//! The master opens the log file before forking; every process writes whole lines with one
//! `write(2)` on an `O_APPEND` descriptor, so lines from several processes never interleave. On
//! USR1 the master opens the file again and hands the new descriptor to its workers (they may no
//! longer have the rights to open it themselves). The log is process-wide state on purpose: a
//! line must be writable from any depth without threading a handle through every call.
//! Writing never blocks the caller for long and never fails loudly: a log that cannot be written
//! must not take the server down.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::core::config::LogLevel;

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);
static SINK: Mutex<Option<Sink>> = Mutex::new(None);

struct Sink {
    file: File,
    /// `pid#tid` as nginx prints it; set per process.
    pid: u32,
}

/// The stderr sink, used before the configured log is open and for `error_log = "stderr"`.
fn stderr_file() -> File {
    use std::os::fd::{AsFd, OwnedFd};
    let fd: OwnedFd = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .expect("stderr can be duplicated");
    File::from(fd)
}

/// Opens a log file for appending (creating it with mode 0644), or stderr for "stderr".
pub fn open(path: &Path) -> io::Result<File> {
    if path.as_os_str() == "stderr" {
        return Ok(stderr_file());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
}

/// Installs `file` as this process's error log at `level`.
pub fn install(file: File, level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    let mut sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
    *sink = Some(Sink {
        file,
        pid: std::process::id(),
    });
}

/// Replaces the log file, keeping the level (USR1).
pub fn replace(file: File) {
    let mut sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
    *sink = Some(Sink {
        file,
        pid: std::process::id(),
    });
}

/// Called in a child after fork: the pid in every line changes.
pub fn after_fork() {
    let mut sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = sink.as_mut() {
        s.pid = std::process::id();
    }
}

/// A duplicate of the current log descriptor (handed to a child, or to `exec`).
pub fn current() -> Option<File> {
    let sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
    sink.as_ref().and_then(|s| s.file.try_clone().ok())
}

/// True when a line at `level` would be written: check it before formatting anything costly.
#[inline]
pub fn enabled(level: LogLevel) -> bool {
    level as u8 >= LEVEL.load(Ordering::Relaxed)
}

/// Writes one line: `2026/11/22 18:30:05 [error] 1234#0: message`.
pub fn write(level: LogLevel, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let mut line = Vec::with_capacity(128);
    let _ = write!(
        line,
        "{} [{}] ",
        timestamp(SystemTime::now()),
        level.as_str()
    );
    let mut sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
    match sink.as_mut() {
        Some(s) => {
            let _ = writeln!(line, "{}#0: {}", s.pid, args);
            let _ = s.file.write_all(&line);
        }
        None => {
            let _ = writeln!(line, "{}#0: {}", std::process::id(), args);
            let _ = io::stderr().write_all(&line);
        }
    }
}

/// Local time as nginx writes it in the error log: `2026/11/22 18:30:05`.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    // SAFETY: an all-zero `tm` is a valid value; `localtime_r` only writes into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    unsafe { libc::localtime_r(&secs, &mut tm) };
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// `log!(Warn, "...", args)`: one error-log line if the level is enabled.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)+) => {
        if $crate::core::log::enabled($crate::core::config::LogLevel::$level) {
            $crate::core::log::write($crate::core::config::LogLevel::$level, format_args!($($arg)+))
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_has_nginx_shape() {
        let s = timestamp(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000));
        assert_eq!(s.len(), 19);
        assert_eq!(&s[4..5], "/");
        assert_eq!(&s[10..11], " ");
    }
}
