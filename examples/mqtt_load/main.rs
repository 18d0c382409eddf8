//! MQTT 3.1.1 load generator, used by `scripts/bench-mqtt` to measure bizzy's broker beside
//! mosquitto with the same client, and by `scripts/bench-live` for the server-sent events of
//! `GET /v1/hives/{id}/live` driven by sensor reports (`live`). Each scenario prints one line
//! `RESULT scenario=... conns=... msgs=... rate=... p50_ms=... p99_ms=... errors=... [more]`.
//!
//! The clients are a lean MQTT client on tokio sockets (`conn`, `wire`): on a 2-core machine the
//! generator shares the CPU with the broker, and rumqttc spends several times more CPU per
//! message, so it would measure itself. `--client rumqttc` runs `qos1` through rumqttc as a
//! cross-check. Loopback runs only need `--port`; every run is bounded by `--duration` and the
//! 10 s stall timeout of each connection.

mod conn;
mod fleet;
mod idle;
mod ledger;
mod live;
mod paced;
mod publish;
mod push;
mod rumq;
mod sensors;
mod sse;
mod stats;
mod sub;
mod wire;

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use fleet::Plan;
use stats::ServerCpu;

const USAGE: &str = "\
usage: mqtt_load SCENARIO [options]

scenarios:
  qos1    N connections keep --inflight QoS 1 PUBLISHes in flight to sensors/{id}/counter;
          PUBACKs/s, latency PUBLISH -> PUBACK
  qos0    N connections publish QoS 0 as fast as the broker reads; a PINGREQ follows every
          chunk, and only chunks whose PINGRESP came back are counted
  fanout  one subscriber on sensors/+/counter, N publishers at --qos; messages/s received, lost
  push    N sensors subscribed (QoS 1) to push/sensor/{id}; one publisher sends one QoS 1
          message to each, in rounds; time until all received, delivery latency
  paced   --rate messages/s from one publisher to one subscriber; lost, delivery latency
  fleet   N sensors (2000) share --rate QoS 1 messages/s (20000), each on its own even
          schedule with one message in flight; PUBACKs/s, latency PUBLISH -> PUBACK
  idle    N connections, each CONNECT + SUBSCRIBE to commands/sensor/{id}; time until all are
          connected and subscribed, then held until stdin closes or --hold passes
  live    N SSE streams of GET /v1/hives/{id}/live over --hives hives, then sensor live-{k} of
          each hive (logged in with --password) publishes one entry per report, --rate
          reports/s in all; latency publish -> SSE event per (stream, report), events, streams
          left behind
  live-idle  N SSE streams over --hives hives, each waited for until its first event, then
          held until stdin closes or --hold passes

options:
  --host H        broker host (127.0.0.1)
  --port P        broker port (1883)
  --duration S    seconds of load, decimals allowed (5; at most 600)
  --conns N       connections (qos1, qos0, fanout: 50; push: 1000; fleet: 2000; idle: 10000);
                  live: streams (5000), live-idle: streams (10000)
  --inflight W    QoS 1 window per publisher (10; push: one message per sensor, all at once)
  --qos Q         publishers' QoS in fanout and paced, 0 or 1 (1)
  --sub-qos Q     subscriber's QoS in fanout (0) and paced (1)
  --rate R        paced: messages per second (10000); live: reports per second (1000);
                  fleet: all sensors together (20000)
  --lanes L       connections opened concurrently (64)
  --hold S        idle: longest hold in seconds (60; at most 600)
  --threads T     tokio worker threads; 1 runs everything on the main thread (1)
  --client C      raw or rumqttc (raw); rumqttc only for qos1
  --http-port P   live, live-idle: the HTTP port of the streams, on --host (8080)
  --hives H       live, live-idle: hives, stream j on hive first + j % H (live: 1000, live-idle: 100)
  --first-hive ID live, live-idle: the first hive's id; live's sensors: live-{k} on hive ID + k (1)
  --password P    live: the sensors' MQTT password
  --server-pids P comma-separated broker process ids: report their CPU seconds over the
                  measured interval (server_cpu_s=)
";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Qos1,
    Qos0,
    Fanout,
    Push,
    Paced,
    Fleet,
    Idle,
    Live,
    LiveIdle,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Client {
    Raw,
    Rumqttc,
}

/// The command line, checked.
pub struct Opts {
    pub addr: SocketAddr,
    pub duration: Duration,
    pub conns: usize,
    pub inflight: Option<usize>,
    pub qos: u8,
    pub sub_qos: Option<u8>,
    pub rate: u64,
    pub lanes: usize,
    pub hold: Duration,
    /// The HTTP address of `live`'s streams.
    pub http: SocketAddr,
    /// `live`: hives, one sensor and `conns / hives` streams each.
    pub hives: usize,
    pub first_hive: i64,
    /// `live`: the sensors' MQTT password.
    pub password: Option<String>,
    /// Prefix of every client id, unique per generator process.
    pub tag: String,
    pub server: ServerCpu,
    scenario: Scenario,
    threads: usize,
    client: Client,
}

impl Opts {
    pub fn plan(
        &self,
        role: &'static str,
        filter: Option<fn(usize) -> String>,
        sub_qos: u8,
        rbuf: usize,
    ) -> Plan {
        Plan {
            addr: self.addr,
            tag: self.tag.clone(),
            role,
            filter,
            sub_qos,
            lanes: self.lanes,
            rbuf,
            password: None,
        }
    }
}

fn number<T>(flag: &str, v: &str, lo: T, hi: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match v.parse::<T>() {
        Ok(n) if n >= lo && n <= hi => Ok(n),
        _ => Err(format!("{flag}: {v:?} is not a number in {lo}..={hi}")),
    }
}

fn seconds(flag: &str, v: &str) -> Result<Duration, String> {
    let s: f64 = number(flag, v, 0.001, 600.0)?;
    Ok(Duration::from_secs_f64(s))
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let scenario = match args.first().map(String::as_str) {
        Some("qos1") => Scenario::Qos1,
        Some("qos0") => Scenario::Qos0,
        Some("fanout") => Scenario::Fanout,
        Some("push") => Scenario::Push,
        Some("paced") => Scenario::Paced,
        Some("fleet") => Scenario::Fleet,
        Some("idle") => Scenario::Idle,
        Some("live") => Scenario::Live,
        Some("live-idle") => Scenario::LiveIdle,
        Some(other) => return Err(format!("unknown scenario {other:?}")),
        None => return Err("no scenario".to_string()),
    };
    let (mut host, mut port, mut http_port) = ("127.0.0.1".to_string(), 1883u16, 8080u16);
    let mut o = Opts {
        addr: SocketAddr::from(([127, 0, 0, 1], 1883)),
        duration: Duration::from_secs(5),
        conns: match scenario {
            Scenario::Push => 1000,
            Scenario::Fleet => 2000,
            Scenario::Idle | Scenario::LiveIdle => 10_000,
            Scenario::Live => 5000,
            Scenario::Paced => 1,
            _ => 50,
        },
        inflight: None,
        qos: 1,
        sub_qos: None,
        rate: match scenario {
            Scenario::Live => 1000,
            Scenario::Fleet => 20_000,
            _ => 10_000,
        },
        lanes: 64,
        hold: Duration::from_secs(60),
        http: SocketAddr::from(([127, 0, 0, 1], 8080)),
        hives: if scenario == Scenario::Live {
            1000
        } else {
            100
        },
        first_hive: 1,
        password: None,
        tag: format!("mqtt-load-{}", std::process::id()),
        server: ServerCpu::new(Vec::new()),
        scenario,
        threads: 1,
        client: Client::Raw,
    };
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let v = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--host" => host = v.clone(),
            "--port" => port = number(flag, v, 1, 65535)?,
            "--duration" => o.duration = seconds(flag, v)?,
            "--conns" => o.conns = number(flag, v, 1, 100_000)?,
            "--inflight" => o.inflight = Some(number(flag, v, 1, 65535)?),
            "--qos" => o.qos = number(flag, v, 0, 1)?,
            "--sub-qos" => o.sub_qos = Some(number(flag, v, 0, 1)?),
            "--rate" => o.rate = number(flag, v, 1, 1_000_000)?,
            "--lanes" => o.lanes = number(flag, v, 1, 100_000)?,
            "--hold" => o.hold = seconds(flag, v)?,
            "--http-port" => http_port = number(flag, v, 1, 65535)?,
            "--hives" => o.hives = number(flag, v, 1, 100_000)?,
            "--first-hive" => o.first_hive = number(flag, v, 1, i64::MAX / 2)?,
            "--password" => o.password = Some(v.clone()),
            "--threads" => o.threads = number(flag, v, 1, 64)?,
            "--server-pids" => {
                let pids = v.split(',').map(|p| number(flag, p, 1, u32::MAX));
                o.server = ServerCpu::new(pids.collect::<Result<_, _>>()?);
                if o.server.read().is_none() {
                    return Err(format!("--server-pids: cannot read /proc/PID/stat of {v}"));
                }
            }
            "--client" => {
                o.client = match v.as_str() {
                    "raw" => Client::Raw,
                    "rumqttc" => Client::Rumqttc,
                    _ => return Err(format!("--client: {v:?} is neither raw nor rumqttc")),
                }
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.client == Client::Rumqttc && o.scenario != Scenario::Qos1 {
        return Err("--client rumqttc runs qos1 only".to_string());
    }
    if o.scenario == Scenario::Live && o.password.is_none() {
        return Err("live needs --password, the sensors' MQTT password".to_string());
    }
    o.addr = address(&host, port)?;
    o.http = address(&host, http_port)?;
    Ok(o)
}

fn address(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("--host {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("--host {host}: no address"))
}

/// Raises the soft limit on open files to the hard limit: `idle` holds 10,000 sockets.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusively borrowed `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        eprintln!(
            "mqtt_load: getrlimit(NOFILE): {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit only reads the valid `lim`.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        eprintln!(
            "mqtt_load: setrlimit(NOFILE): {}",
            std::io::Error::last_os_error()
        );
    }
}

async fn run(opts: Opts) -> u64 {
    let cpu = stats::self_cpu_s();
    stats::now_ns();
    let (scenario, client) = (opts.scenario, opts.client);
    let opts = Arc::new(opts);
    let outcome = match (scenario, client) {
        (Scenario::Qos1, Client::Rumqttc) => rumq::qos1(opts).await,
        (Scenario::Qos1, Client::Raw) => publish::publish(opts, 1).await,
        (Scenario::Qos0, _) => publish::publish(opts, 0).await,
        (Scenario::Fanout, _) => publish::fanout(opts).await,
        (Scenario::Push, _) => push::push(opts).await,
        (Scenario::Paced, _) => paced::paced(opts).await,
        (Scenario::Live, _) => live::live(opts).await,
        (Scenario::Fleet, _) => sensors::fleet(opts).await,
        (Scenario::Idle, _) => return idle::idle(opts, cpu).await,
        (Scenario::LiveIdle, _) => return live::live_idle(opts, cpu).await,
    };
    let errors = outcome.errors;
    outcome.print(cpu);
    errors
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("mqtt_load: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    raise_nofile();
    let runtime = if opts.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mqtt_load: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(opts)) {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
