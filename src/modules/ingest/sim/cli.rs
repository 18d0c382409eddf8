//! `bizzy sim`'s command line and what it prints. `src/main.rs` parses the arguments after
//! `sim` with [`parse`], loads the configuration they name, and calls [`run`].
//!
//! Standard output is for machines: a line per hive, a summary line and latency lines, each
//! `word key=value ...` (see [`USAGE`]). Progress and errors go to standard error. Exit 0 when
//! the run ended with every QoS 1 message acknowledged, 1 otherwise or on an error, 2 on a
//! wrong command line.

use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

use super::measure::Histogram;
use super::run::Outcome;
use super::Options;
use crate::core::config::Conf;
use crate::mqtt::codec::QoS;

/// `bizzy sim -h`.
pub const USAGE: &str = "\
Usage: bizzy sim [-c FILE] [-p PREFIX] [--sensors N] [--duration S] [--rate R|max] [options]

Simulated sensors (sim-00000, sim-00001, ...) publish the binary reports of PROTOCOL.md over
real MQTT, one connection each (client id and user name = device id), then the simulator says
what the database must hold: the rows of sensor_report and each hive's occupancy.

Options:
  -c FILE          configuration: mqtt.listen is the broker, database.url holds the fleet
                   (default conf/bizzy.toml, relative to the prefix)
  -p PREFIX        prefix relative paths are resolved against (default: the current directory)
  --sensors N      simulated sensors (default 10)
  --duration S     seconds of publishing; 0: until SIGINT or SIGTERM (default 10)
  --rate R         reports per second over the whole fleet (default: one per sensor per
                   second), or max: every sensor keeps --inflight messages in flight
  --create         first replace the fleet in the database: an account, --hives hives without
                   a daily reset, --sensors sensors (one in ten reversed, one in seven wrapping
                   at 65523); earlier simulated sensors and hives are marked deleted
  --hives H        with --create: hives, sensors spread over them (default sensors/10, >= 1)
  --mix L,V,E      weights of legacy, v2 and event firmware, or legacy=L,v2=V,event=E
                   (default 1,1,1); a sensor whose counting mode is fixed keeps to it
  --qos 0|1        QoS of every publish (default 1)
  --bad N          malformed payloads spread over the run (default 0)
  --seed N         what every sensor sends follows from it (default 1)
  --password P     every sensor's MQTT password, and with --create its secret (default
                   sim-secret)
  --mqtt HOST:PORT the broker (default: the first mqtt.listen; a wildcard address is this host);
                   HOST:PORT,HOST:PORT,..: the sensors spread over them in turn (sim-00000 on
                   the first), the watcher on the first
  --inflight K     QoS 1 messages in flight per sensor at most (default 8)
  --drain S        once publishing ends, wait at most this long for the PUBACKs (default 60)
  --measure        latency histograms: publish to PUBACK, and publish to the occupancy seen on
                   hives/+/occupancy (hives with one simulated sensor); reports add people only
  -h, --help       this help

Output, on standard output:
  hive ID expected N sensors K   for each hive of the fleet: the occupancy it must show
  sim sensors=.. hives=.. qos=.. sent=.. acked=.. bad=.. stored=.. status=.. duplicates=..
      late=.. restarts=.. wraps=.. resent=.. status_resent=.. reconnects=.. configurations=..
      unacked=.. run_s=.. active_s=.. sent_per_s=..   (one line)
  latency puback n=.. p50_ms=.. p99_ms=.. max_ms=..
  latency visible n=.. p50_ms=.. p99_ms=.. max_ms=.. unseen=..   (with --measure)
sent counts every publish (bad ones too, resends not); stored is the rows sensor_report must
gain: every valid report once, duplicates (an identical counter or event payload) not. A
status message is never a duplicate, so one that was sent again after a broken connection
(status_resent) may have been stored twice. The expectation starts from the fleet's rows (each
sensor's baseline, each hive's occupancy, the payloads already claimed) and is exact when every
QoS 1 message was acknowledged (else the exit status is 1) and no other client reports for the
fleet's sensors meanwhile. A percentile is \"-\" when nothing was measured.
";

/// The parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub conf: Option<PathBuf>,
    pub prefix: Option<PathBuf>,
    pub options: Options,
}

/// A command line that cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    NotUtf8,
    NeedsValue(String),
    Unknown(String),
    Value {
        option: String,
        value: String,
        why: &'static str,
    },
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::NotUtf8 => f.write_str("arguments must be UTF-8"),
            ArgError::NeedsValue(o) => write!(f, "option \"{o}\" requires a value"),
            ArgError::Unknown(o) => write!(f, "invalid option: \"{o}\""),
            ArgError::Value { option, value, why } => {
                write!(f, "{option} {value:?}: {why}")
            }
        }
    }
}

/// The arguments after `sim`, or how the command ends here: `-h` (exit 0, usage printed) or a
/// wrong command line (exit 2, said with the usage).
pub fn parse(args: &[OsString]) -> Result<Args, ExitCode> {
    match parse_args(args) {
        Ok(None) => {
            print!("{USAGE}");
            Err(ExitCode::SUCCESS)
        }
        Ok(Some(a)) => Ok(a),
        Err(e) => {
            eprintln!("bizzy: sim: {e}\n\n{USAGE}");
            Err(ExitCode::from(2))
        }
    }
}

/// The parsed arguments; `None` for `-h`.
pub fn parse_args(args: &[OsString]) -> Result<Option<Args>, ArgError> {
    let mut a = Args {
        conf: None,
        prefix: None,
        options: Options::default(),
    };
    let o = &mut a.options;
    let (mut rate, mut hives) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let arg = arg.to_str().ok_or(ArgError::NotUtf8)?;
        if matches!(arg, "-h" | "--help") {
            return Ok(None);
        }
        if arg == "--create" {
            o.create = true;
            continue;
        }
        if arg == "--measure" {
            o.measure = true;
            continue;
        }
        let v = it
            .next()
            .ok_or_else(|| ArgError::NeedsValue(arg.to_string()))?
            .to_str()
            .ok_or(ArgError::NotUtf8)?;
        match arg {
            "-c" => a.conf = Some(PathBuf::from(v)),
            "-p" => a.prefix = Some(PathBuf::from(v)),
            "--sensors" => o.sensors = number(arg, v, 1, 100_000)?,
            "--duration" => o.duration = Some(seconds(arg, v)?).filter(|d| !d.is_zero()),
            "--rate" => rate = Some(self::rate(v)?),
            "--hives" => hives = Some(number(arg, v, 1, 100_000)?),
            "--mix" => o.mix = mix(v)?,
            "--qos" => o.qos = qos(v)?,
            "--bad" => o.bad = number(arg, v, 0, 1_000_000)?,
            "--seed" => o.seed = number(arg, v, 0, u64::MAX)?,
            "--password" => o.password = v.to_string(),
            "--mqtt" => o.mqtt = v.split(',').map(address).collect::<Result<_, _>>()?,
            "--inflight" => o.inflight = number(arg, v, 1, 1000)?,
            "--drain" => o.drain = seconds(arg, v)?,
            other => return Err(ArgError::Unknown(other.to_string())),
        }
    }
    let o = &mut a.options;
    o.rate = rate.unwrap_or(Some(o.sensors as f64));
    if hives.is_some() && !o.create {
        return Err(bad("--hives", "", "only with --create"));
    }
    o.hives = hives;
    Ok(Some(a))
}

fn bad(option: &str, value: &str, why: &'static str) -> ArgError {
    ArgError::Value {
        option: option.to_string(),
        value: value.to_string(),
        why,
    }
}

fn number<T: FromStr + PartialOrd>(option: &str, v: &str, lo: T, hi: T) -> Result<T, ArgError> {
    match v.parse::<T>() {
        Ok(n) if n >= lo && n <= hi => Ok(n),
        Ok(_) => Err(bad(option, v, "out of range")),
        Err(_) => Err(bad(option, v, "not a whole number")),
    }
}

/// Seconds, possibly fractional.
fn seconds(option: &str, v: &str) -> Result<Duration, ArgError> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=1e9).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(bad(option, v, "not a number of seconds")),
    }
}

/// `max` (flat out) or reports per second.
fn rate(v: &str) -> Result<Option<f64>, ArgError> {
    if v == "max" {
        return Ok(None);
    }
    match v.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(Some(r)),
        _ => Err(bad("--rate", v, "reports per second above 0, or max")),
    }
}

/// `L,V,E` or `legacy=L,v2=V,event=E` (names left out weigh 0).
fn mix(v: &str) -> Result<[u32; 3], ArgError> {
    let why = "weights L,V,E or legacy=L,v2=V,event=E, not all 0";
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    let mut w = [0u32; 3];
    if parts.iter().all(|p| p.contains('=')) {
        for p in parts {
            let (name, n) = p.split_once('=').ok_or_else(|| bad("--mix", v, why))?;
            let at = ["legacy", "v2", "event"]
                .iter()
                .position(|x| *x == name)
                .ok_or_else(|| bad("--mix", v, why))?;
            w[at] = n.parse().map_err(|_| bad("--mix", v, why))?;
        }
    } else if parts.len() == 3 {
        for (slot, p) in w.iter_mut().zip(parts) {
            *slot = p.parse().map_err(|_| bad("--mix", v, why))?;
        }
    } else {
        return Err(bad("--mix", v, why));
    }
    if w.iter().all(|x| *x == 0) || w.iter().any(|x| *x > 1_000_000) {
        return Err(bad("--mix", v, why));
    }
    Ok(w)
}

fn qos(v: &str) -> Result<QoS, ArgError> {
    match v {
        "0" => Ok(QoS::AtMostOnce),
        "1" => Ok(QoS::AtLeastOnce),
        _ => Err(bad("--qos", v, "0 or 1")),
    }
}

fn address(v: &str) -> Result<SocketAddr, ArgError> {
    v.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| bad("--mqtt", v, "not HOST:PORT"))
}

/// Set by SIGINT and SIGTERM: publishing ends, the run drains and reports.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn catch_stop() {
    let act = SigAction::new(
        SigHandler::Handler(on_stop),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        if let Err(e) = unsafe { signal::sigaction(sig, &act) } {
            eprintln!("bizzy sim: sigaction({sig}) failed ({e}); a signal ends the run at once");
        }
    }
}

/// As many open files as the hard limit allows: one socket per sensor.
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Runs the simulation and prints its results.
pub fn run(options: &Options, conf: &Conf) -> ExitCode {
    catch_stop();
    raise_nofile();
    match super::run(options, conf, &STOP) {
        Ok(outcome) => {
            print!("{}", results(options, &outcome));
            let unacked = outcome.counts.unacked;
            if unacked > 0 {
                eprintln!(
                    "bizzy sim: {unacked} QoS 1 messages were never acknowledged within {}s: \
                     the expectation may not hold",
                    options.drain.as_secs_f64()
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bizzy sim: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The lines printed on standard output.
pub fn results(options: &Options, o: &Outcome) -> String {
    let mut out = String::new();
    for (id, h) in o.model.hives() {
        let _ = writeln!(
            out,
            "hive {id} expected {} sensors {}",
            h.state.occupancy, h.sensors
        );
    }
    let (c, t) = (&o.counts, &o.model.tally);
    let run_s = o.published_for.as_secs_f64();
    let _ = writeln!(
        out,
        "sim sensors={} hives={} qos={} sent={} acked={} bad={} stored={} status={} \
         duplicates={} late={} restarts={} wraps={} resent={} status_resent={} reconnects={} \
         configurations={} unacked={} run_s={run_s:.3} active_s={:.3} sent_per_s={:.0}",
        options.sensors,
        o.model.hives().len(),
        options.qos as u8,
        c.sent,
        c.acked,
        c.bad,
        t.stored,
        t.status,
        t.duplicates,
        t.late,
        t.restarts,
        t.wraps,
        c.resent,
        c.status_resent,
        c.reconnects,
        c.configurations,
        c.unacked,
        o.active.as_secs_f64(),
        if run_s > 0.0 {
            c.sent as f64 / run_s
        } else {
            0.0
        },
    );
    let _ = writeln!(out, "latency puback {}", latency(&o.puback));
    if let Some(v) = &o.visible {
        let _ = writeln!(
            out,
            "latency visible {} unseen={}",
            latency(&v.latency),
            v.unseen()
        );
    }
    out
}

/// `n=.. p50_ms=.. p99_ms=.. max_ms=..`.
fn latency(h: &Histogram) -> String {
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_string(), |d| {
            format!("{:.3}", d.as_secs_f64() * 1000.0)
        })
    };
    format!(
        "n={} p50_ms={} p99_ms={} max_ms={}",
        h.count(),
        ms(h.quantile(0.5)),
        ms(h.quantile(0.99)),
        ms(h.max())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_on(args: &[&str]) -> Result<Option<Args>, ArgError> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse_args(&args)
    }

    fn options(args: &[&str]) -> Options {
        parse_on(args).expect("valid").expect("not -h").options
    }

    #[test]
    fn defaults_and_every_option() {
        let o = options(&[]);
        assert_eq!(o.rate, Some(10.0), "one report per sensor per second");
        let o = options(&[
            "--sensors",
            "200",
            "--duration",
            "2.5",
            "--rate",
            "max",
            "--create",
            "--hives",
            "20",
            "--mix",
            "legacy=2,event=1",
            "--qos",
            "0",
            "--bad",
            "5",
            "--seed",
            "9",
            "--password",
            "pw",
            "--mqtt",
            "127.0.0.1:1884",
            "--inflight",
            "4",
            "--drain",
            "3",
            "--measure",
        ]);
        assert_eq!(o.sensors, 200);
        assert_eq!(o.duration, Some(Duration::from_millis(2500)));
        assert_eq!(o.rate, None);
        assert!(o.create && o.measure);
        assert_eq!(
            (o.hives, o.mix, o.qos),
            (Some(20), [2, 0, 1], QoS::AtMostOnce)
        );
        assert_eq!((o.bad, o.seed, o.password.as_str()), (5, 9, "pw"));
        assert_eq!(o.mqtt, ["127.0.0.1:1884".parse().expect("an address")]);
        assert_eq!(
            options(&["--mqtt", "127.0.0.1:1,127.0.0.1:2"]).mqtt.len(),
            2,
            "a list of brokers"
        );
        assert_eq!((o.inflight, o.drain), (4, Duration::from_secs(3)));
        assert_eq!(options(&["--mix", "1,2,3"]).mix, [1, 2, 3]);
        assert_eq!(options(&["--duration", "0"]).duration, None);
        assert_eq!(options(&["--sensors", "50"]).rate, Some(50.0));
        let a = parse_on(&["-c", "x.toml", "-p", "/srv"])
            .expect("valid")
            .expect("not -h");
        assert_eq!(a.conf, Some(PathBuf::from("x.toml")));
        assert_eq!(parse_on(&["--sensors", "3", "-h"]), Ok(None));
    }

    #[test]
    fn wrong_command_lines_say_why() {
        let e = |args: &[&str]| parse_on(args).expect_err("refused").to_string();
        assert_eq!(e(&["--sensors"]), "option \"--sensors\" requires a value");
        assert_eq!(e(&["--x", "1"]), "invalid option: \"--x\"");
        assert_eq!(e(&["--sensors", "0"]), "--sensors \"0\": out of range");
        assert_eq!(
            e(&["--sensors", "abc"]),
            "--sensors \"abc\": not a whole number"
        );
        assert_eq!(
            e(&["--sensors", "99999999999999999999999"]),
            "--sensors \"99999999999999999999999\": not a whole number"
        );
        assert_eq!(
            e(&["--duration", "-1"]),
            "--duration \"-1\": not a number of seconds"
        );
        for v in ["1e10", "inf", "NaN"] {
            assert!(e(&["--drain", v]).starts_with("--drain \""), "{v}");
        }
        for v in ["inf", "NaN", "-5"] {
            assert!(e(&["--rate", v]).starts_with("--rate \""), "{v}");
        }
        assert_eq!(e(&["--qos", "2"]), "--qos \"2\": 0 or 1");
        assert_eq!(
            e(&["--rate", "0"]),
            "--rate \"0\": reports per second above 0, or max"
        );
        assert!(e(&["--mix", "0,0,0"]).starts_with("--mix \"0,0,0\""));
        assert!(e(&["--mix", "lagacy=1"]).starts_with("--mix"));
        assert_eq!(e(&["--hives", "3"]), "--hives \"\": only with --create");
    }
}
