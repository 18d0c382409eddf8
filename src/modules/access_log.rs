//! The access log, `combined` (nginx's default format) or `json`, one line per request.
//!
//! Lines gather in a per-worker buffer that is written with one `write(2)` per event-loop
//! iteration (or sooner when it fills), so logging costs no syscall per request. The file is
//! opened by the master and reopened on USR1.

use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::config::Conf;
use crate::http::conf::{AccessLogFormat, HttpConf};
use crate::http::module::{InitError, Module, Registry};
use crate::http::phase::{Logger, Outcome};
use crate::http::response::json_string;
use crate::http::Request;

pub struct AccessLogModule;

const FLUSH_AT: usize = 64 * 1024;

impl Module for AccessLogModule {
    fn name(&self) -> &'static str {
        "access_log"
    }

    fn files(&self, conf: &Conf) -> Vec<PathBuf> {
        conf.section::<HttpConf>()
            .access_log
            .iter()
            .cloned()
            .collect()
    }

    fn init(&self, reg: &mut Registry<'_>) -> Result<(), InitError> {
        let Some(path) = reg.http.access_log.clone() else {
            return Ok(());
        };
        let file = reg
            .files
            .iter()
            .find(|(p, _)| *p == path)
            .ok_or(InitError::Missing("access log file was not opened"))?
            .1
            .try_clone()
            .map_err(|err| InitError::Io { call: "dup()", err })?;
        reg.logger(Rc::new(AccessLog {
            path,
            format: reg.http.access_log_format,
            file: RefCell::new(file),
            buf: RefCell::new(Vec::new()),
            time: RefCell::new((u64::MAX, String::new())),
        }));
        Ok(())
    }
}

struct AccessLog {
    path: PathBuf,
    format: AccessLogFormat,
    file: RefCell<File>,
    buf: RefCell<Vec<u8>>,
    /// (second, formatted local time) of the last line.
    time: RefCell<(u64, String)>,
}

impl Logger for AccessLog {
    fn log(&self, req: &Request, out: &Outcome) {
        if req.location.as_ref().and_then(|l| l.conf.access_log) == Some(false) {
            return;
        }
        let mut buf = self.buf.borrow_mut();
        match self.format {
            AccessLogFormat::Combined => self.combined(&mut buf, req, out),
            AccessLogFormat::Json => json(&mut buf, req, out),
        }
        if buf.len() >= FLUSH_AT {
            drop(buf);
            self.flush();
        }
    }

    fn refused(&self, peer: std::net::SocketAddr, out: &Outcome) {
        let mut buf = self.buf.borrow_mut();
        let now = SystemTime::now();
        match self.format {
            AccessLogFormat::Combined => {
                let _ = writeln!(
                    buf,
                    "{} - - [{}] \"-\" {} {} \"-\" \"-\"",
                    peer.ip(),
                    local_time(now),
                    out.status,
                    out.body_bytes_sent
                );
            }
            AccessLogFormat::Json => {
                let _ = writeln!(
                    buf,
                    "{{\"time\":\"{}\",\"remote_addr\":\"{}\",\"method\":null,\"uri\":null,\"status\":{},\"body_bytes_sent\":{},\"bytes_sent\":{}}}",
                    httpdate_iso(now),
                    peer.ip(),
                    out.status,
                    out.body_bytes_sent,
                    out.bytes_sent
                );
            }
        }
    }

    fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        if let Err(e) = self.file.borrow_mut().write_all(&buf) {
            crate::log!(Crit, "write() to \"{}\" failed ({e})", self.path.display());
        }
        buf.clear();
        if buf.capacity() > 4 * FLUSH_AT {
            buf.shrink_to(FLUSH_AT);
        }
    }

    fn reopen(&self, files: &[(PathBuf, File)]) {
        self.flush();
        if let Some((_, f)) = files.iter().find(|(p, _)| *p == self.path) {
            match f.try_clone() {
                Ok(f) => *self.file.borrow_mut() = f,
                Err(e) => crate::log!(Crit, "dup() failed ({e})"),
            }
        }
    }
}

impl AccessLog {
    fn combined(&self, buf: &mut Vec<u8>, req: &Request, out: &Outcome) {
        let secs = req
            .time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut t = self.time.borrow_mut();
        if t.0 != secs {
            *t = (secs, local_time(req.time));
        }
        let _ = write!(buf, "{} - - [{}] \"", req.peer.ip(), t.1);
        escape(buf, req.method_str().as_bytes());
        buf.push(b' ');
        escape(buf, req.target());
        let _ = write!(
            buf,
            " HTTP/1.{}\" {} {} \"",
            req.head.minor, out.status, out.body_bytes_sent
        );
        escape(buf, req.referer().unwrap_or(b"-"));
        buf.extend_from_slice(b"\" \"");
        escape(buf, req.user_agent().unwrap_or(b"-"));
        buf.extend_from_slice(b"\"\n");
    }
}

/// nginx's escaping of variables in the log: `"`, `\` and bytes outside printable ASCII as \xHH.
fn escape(buf: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(buf, "\\x{b:02X}");
        } else {
            buf.push(b);
        }
    }
}

fn json(buf: &mut Vec<u8>, req: &Request, out: &Outcome) {
    let s = |b: &[u8]| json_string(&String::from_utf8_lossy(b));
    let time = httpdate_iso(req.time);
    let _ = writeln!(
        buf,
        "{{\"time\":\"{}\",\"remote_addr\":\"{}\",\"method\":{},\"uri\":{},\"protocol\":\"HTTP/1.{}\",\"status\":{},\"body_bytes_sent\":{},\"bytes_sent\":{},\"request_time\":{}.{:03},\"host\":{},\"http_referer\":{},\"http_user_agent\":{}}}",
        time,
        req.peer.ip(),
        s(req.method_str().as_bytes()),
        s(req.target()),
        req.head.minor,
        out.status,
        out.body_bytes_sent,
        out.bytes_sent,
        out.duration_ms / 1000,
        out.duration_ms % 1000,
        s(req.host().unwrap_or(b"")),
        s(req.referer().unwrap_or(b"")),
        s(req.user_agent().unwrap_or(b"")),
    );
}

/// `22/Nov/2026:18:30:05 +0000`, in local time as nginx's `$time_local`.
fn local_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    // SAFETY: an all-zero tm is valid; localtime_r writes into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers for the call.
    unsafe { libc::localtime_r(&secs, &mut tm) };
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let off = tm.tm_gmtoff / 60;
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} {}{:02}{:02}",
        tm.tm_mday,
        MON[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        if off < 0 { '-' } else { '+' },
        off.abs() / 60,
        off.abs() % 60
    )
}

/// RFC 3339 UTC with milliseconds: `2026-11-22T18:30:05.123Z`.
pub fn httpdate_iso(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Howard Hinnant's days-to-civil conversion.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_time() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_795_372_205_123);
        assert_eq!(httpdate_iso(t), "2026-11-22T18:30:05.123Z");
    }

    #[test]
    fn escapes_like_nginx() {
        let mut b = Vec::new();
        escape(&mut b, b"a\"b\\\x01\xff");
        assert_eq!(b, b"a\\x22b\\x5C\\x01\\xFF");
    }
}
