//! Clock, latency samples, error tally and the `RESULT` line every scenario prints.
//!
//! Times are nanoseconds since the generator's start (`now_ns`), so a timestamp fits the first
//! eight bytes of a payload and the receiver subtracts it from its own clock: sender and
//! receiver are tasks of this one process.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use crate::conn::LoadError;

static T0: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call.
pub fn now_ns() -> u64 {
    T0.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Latencies in microseconds; percentiles by sorting once at the end.
#[derive(Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn record(&mut self, since_ns: u64, now_ns: u64) {
        let us = now_ns.saturating_sub(since_ns) / 1000;
        self.0.push(us.min(u64::from(u32::MAX)) as u32);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// The `p`-th percentile (0..=100) in milliseconds, `None` without samples.
    pub fn percentile_ms(&mut self, p: f64) -> Option<f64> {
        if self.0.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        let (_, v, _) = self.0.select_nth_unstable(rank);
        Some(f64::from(*v) / 1000.0)
    }
}

/// Counts the connections that failed; prints the first few reasons to stderr, so a broker
/// that refuses 1,000 connections does not print 1,000 lines.
#[derive(Default)]
pub struct Errors(AtomicU64);

impl Errors {
    const SHOWN: u64 = 5;

    pub fn report(&self, who: &str, err: &LoadError) {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        if n < Self::SHOWN {
            eprintln!("mqtt_load: {who}: {err}");
        } else if n == Self::SHOWN {
            eprintln!("mqtt_load: more errors, counted in errors=");
        }
    }

    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// CPU seconds (user + system) this process has used, so a run shows whether the generator
/// itself was saturated.
pub fn self_cpu_s() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given, which points to
    // zeroed storage of the right type that lives across the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if rc != 0 {
        return f64::NAN;
    }
    // SAFETY: getrusage returned 0, so it filled the struct (and it was zeroed before).
    let ru = unsafe { ru.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// The broker's processes, whose CPU time a run reports, so that messages per server
/// CPU-second cover exactly the measured interval (not the connection set-up).
pub struct ServerCpu {
    pids: Vec<u32>,
}

impl ServerCpu {
    pub fn new(pids: Vec<u32>) -> ServerCpu {
        ServerCpu { pids }
    }

    /// utime + stime of all the processes in seconds; `None` without processes, or when one
    /// cannot be read (it ended: the figure would be wrong).
    pub fn read(&self) -> Option<f64> {
        if self.pids.is_empty() {
            return None;
        }
        // SAFETY: sysconf only reads its argument and has no other effect.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let mut ticks = 0u64;
        for pid in &self.pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The fields after the command name, which may hold spaces: state is the first,
            // utime the 12th, stime the 13th.
            let (_, rest) = stat.rsplit_once(") ")?;
            let mut f = rest.split(' ').skip(11);
            ticks += f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
        }
        (tick > 0).then(|| ticks as f64 / tick as f64)
    }

    /// CPU seconds since `before` (a `read`).
    pub fn since(&self, before: Option<f64>) -> Option<f64> {
        Some(self.read()? - before?)
    }
}

/// One scenario's figures, printed as `RESULT key=value ...`.
pub struct Outcome {
    pub scenario: &'static str,
    pub conns: usize,
    pub msgs: u64,
    pub elapsed_ns: u64,
    pub lat: Latencies,
    pub errors: u64,
    /// The broker's CPU seconds over the measured interval, with `--server-pids`.
    pub server_cpu_s: Option<f64>,
    /// Scenario-specific fields, printed after the common ones.
    pub extra: Vec<(&'static str, String)>,
}

impl Outcome {
    pub fn new(scenario: &'static str, conns: usize) -> Outcome {
        Outcome {
            scenario,
            conns,
            msgs: 0,
            elapsed_ns: 0,
            lat: Latencies::default(),
            errors: 0,
            server_cpu_s: None,
            extra: Vec::new(),
        }
    }

    pub fn print(mut self, cpu_before: f64) {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
        let rate = if self.elapsed_ns == 0 {
            0.0
        } else {
            self.msgs as f64 * 1e9 / self.elapsed_ns as f64
        };
        let mut line = format!(
            "RESULT scenario={} conns={} msgs={} rate={:.0} p50_ms={} p99_ms={} errors={}",
            self.scenario,
            self.conns,
            self.msgs,
            rate,
            ms(self.lat.percentile_ms(50.0)),
            ms(self.lat.percentile_ms(99.0)),
            self.errors,
        );
        for (k, v) in &self.extra {
            let _ = write!(line, " {k}={v}");
        }
        if let Some(cpu) = self.server_cpu_s {
            let _ = write!(line, " server_cpu_s={cpu:.2}");
        }
        let _ = write!(
            line,
            " elapsed_s={:.3} client_cpu_s={:.2}",
            self.elapsed_ns as f64 / 1e9,
            self_cpu_s() - cpu_before
        );
        println!("{line}");
        let _ = std::io::stdout().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut l = Latencies::default();
        assert_eq!(l.percentile_ms(99.0), None);
        for us in 1..=100u64 {
            l.record(0, us * 1000);
        }
        assert_eq!(l.percentile_ms(50.0), Some(0.051));
        assert_eq!(l.percentile_ms(99.0), Some(0.099));
        assert_eq!(l.percentile_ms(100.0), Some(0.1));
    }
}
