//! `bizzy sim` (DESIGN.md section 3): simulated sensors over real MQTT, and the occupancy the
//! server must show once they are done.
//!
//! A short-lived process of its own, a client of the server like any sensor: it reads its
//! fleet from the database (`fleet.rs`; `--create` writes one first), opens one MQTT connection
//! per sensor (client id, user name = device id) and publishes the real binary formats of
//! PROTOCOL.md, drawn per sensor from the seed (`sensor.rs`): legacy and v2 counters, event
//! batches, status messages, wraps, restarts, late reports, clock-less and skewed clocks,
//! reversed sensors, and malformed payloads on request. Every report goes through the counting
//! rules as it leaves (`model.rs`), so that at the end, once every QoS 1 message is
//! acknowledged (committed), the simulator can say what `sensor_report` must hold and what
//! each hive's occupancy must be. With `--measure` it also keeps latency histograms
//! (`measure.rs`).
//!
//! Files: `cli.rs` the command line and the printed results, `fleet.rs` the database side,
//! `sensor.rs` the report generator, `model.rs` the expectation, `link.rs` one MQTT
//! connection, `run.rs` the loop over all of them, `measure.rs` latencies, `rng.rs` the seeded
//! random numbers. Only `run.rs` does I/O on the network, only `fleet.rs` on the database; the
//! database is done with before the first connection opens.

pub mod cli;
pub mod fleet;
pub mod link;
pub mod measure;
pub mod model;
pub mod rng;
pub mod run;
pub mod sensor;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::core::config::Conf;
use crate::modules::database::migrate::redact;
use crate::modules::database::DatabaseConf;
use crate::modules::ingest::IngestConf;
use crate::mqtt::codec::{ConnackCode, QoS};
use crate::mqtt::conf::MqttConf;
use fleet::{Fleet, FleetError};
use model::{HiveModel, Model, SensorModel};
use run::{Outcome, Sensor, Sim};
use sensor::{Baseline, Profile, SimSensor};

/// What a run does: the command line's options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Simulated sensors.
    pub sensors: usize,
    /// With `create`: hives to spread them over (`None`: one per ten sensors).
    pub hives: Option<usize>,
    /// How long to publish; `None`: until SIGINT or SIGTERM.
    pub duration: Option<Duration>,
    /// Reports per second over the fleet; `None`: flat out.
    pub rate: Option<f64>,
    /// Replace the fleet in the database first.
    pub create: bool,
    /// Weights of legacy, v2 and event firmware.
    pub mix: [u32; 3],
    pub qos: QoS,
    /// Malformed payloads to send.
    pub bad: u64,
    pub seed: u64,
    /// Every sensor's MQTT password (and, with `create`, its stored secret).
    pub password: String,
    /// The brokers, the sensors spread over them in turn; none: the configuration's first
    /// `mqtt.listen`.
    pub mqtt: Vec<SocketAddr>,
    /// QoS 1 messages in flight per sensor at most.
    pub inflight: usize,
    /// Longest wait for the PUBACKs once publishing ended.
    pub drain: Duration,
    /// Latency histograms, entries-only traffic.
    pub measure: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            sensors: 10,
            hives: None,
            duration: Some(Duration::from_secs(10)),
            rate: Some(10.0),
            create: false,
            mix: [1, 1, 1],
            qos: QoS::AtLeastOnce,
            bad: 0,
            seed: 1,
            password: "sim-secret".to_string(),
            mqtt: Vec::new(),
            inflight: 8,
            drain: Duration::from_secs(60),
            measure: false,
        }
    }
}

impl Options {
    /// The hives `--create` makes.
    pub fn hives(&self) -> usize {
        self.hives.unwrap_or(self.sensors / 10).max(1)
    }

    /// How it publishes, for the progress line.
    pub fn describe(&self) -> String {
        let how_long = self.duration.map_or("until stopped".to_string(), |d| {
            format!("for {}s", d.as_secs_f64())
        });
        let rate = self
            .rate
            .map_or("flat out".to_string(), |r| format!("at {r} reports/s"));
        format!(
            "{how_long} {rate} (QoS {}, mix legacy={} v2={} event={})",
            self.qos as u8, self.mix[0], self.mix[1], self.mix[2]
        )
    }
}

/// Why a run failed.
#[derive(Debug)]
pub enum SimError {
    /// The configuration has no `[database]` section.
    NoDatabase,
    /// No `--mqtt` and no `mqtt.listen`.
    NoListener,
    /// The runtime for the database could not start.
    Runtime(std::io::Error),
    /// The database could not be reached or refused a statement.
    Db(String, tokio_postgres::Error),
    Fleet(FleetError),
    Io(std::io::Error),
    Connect(SocketAddr, std::io::Error),
    /// Not every sensor could log in within the connect phase.
    NotConnected {
        open: usize,
        sensors: usize,
        within: Duration,
    },
    /// The server refused a sensor's login.
    Refused(String, ConnackCode),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::NoDatabase => f.write_str(
                "the configuration has no [database] section: the simulator reads its sensors \
                 from database.url",
            ),
            SimError::NoListener => {
                f.write_str("the configuration has no mqtt.listen: name the broker with --mqtt")
            }
            SimError::Runtime(e) => write!(f, "cannot start the runtime: {e}"),
            SimError::Db(url, e) => {
                write!(f, "{url}: ")?;
                db_error(e, f)
            }
            SimError::Fleet(e) => e.fmt(f),
            SimError::Io(e) => e.fmt(f),
            SimError::Connect(addr, e) => write!(f, "cannot connect to {addr}: {e}"),
            SimError::NotConnected {
                open,
                sensors,
                within,
            } => write!(
                f,
                "{open} of {sensors} sensors logged in within {}s",
                within.as_secs()
            ),
            SimError::Refused(id, code) => write!(f, "the server refused {id}'s login: {code:?}"),
        }
    }
}

impl std::error::Error for SimError {}

/// A database error with its cause (tokio-postgres keeps the server's message there).
fn db_error(e: &tokio_postgres::Error, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match std::error::Error::source(e) {
        Some(cause) => write!(f, "{e}: {cause}"),
        None => write!(f, "{e}"),
    }
}

/// Runs the simulation `opts` describes against the server and database `conf` names; `stop`
/// (set on SIGINT or SIGTERM) ends the publishing early.
pub fn run(opts: &Options, conf: &Conf, stop: &AtomicBool) -> Result<Outcome, SimError> {
    if !conf.written::<DatabaseConf>() {
        return Err(SimError::NoDatabase);
    }
    let addrs = brokers(opts, conf.section::<MqttConf>())?;
    let ingest = conf.section::<IngestConf>();
    let window = Duration::from(ingest.dedupe_window);
    let fleet = read_fleet(opts, &conf.section::<DatabaseConf>().url, window)?;
    let (sensors, model) = build(opts, &fleet, ingest);
    Sim::new(opts, addrs, sensors, model)?.run(stop)
}

/// `--mqtt`, or the first `mqtt.listen` (a wildcard address meaning this host).
fn brokers(opts: &Options, mqtt: &MqttConf) -> Result<Vec<SocketAddr>, SimError> {
    let mut addrs = opts.mqtt.clone();
    if addrs.is_empty() {
        addrs.extend(mqtt.listen.first().copied());
    }
    if addrs.is_empty() {
        return Err(SimError::NoListener);
    }
    for addr in &mut addrs {
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
    }
    Ok(addrs)
}

/// The fleet, created first with `--create`, on a runtime of its own that ends with it;
/// `window` is `ingest.dedupe_window`.
fn read_fleet(opts: &Options, url: &str, window: Duration) -> Result<Fleet, SimError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SimError::Runtime)?;
    let db = |e| SimError::Db(redact(url), e);
    rt.block_on(async {
        let mut config: tokio_postgres::Config = url.parse().map_err(db)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("bizzy sim");
        let (mut client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(db)?;
        tokio::spawn(connection);
        if opts.create {
            fleet::create(
                &mut client,
                opts.sensors,
                opts.hives(),
                &opts.password,
                opts.seed,
            )
            .await
            .map_err(db)?;
        }
        fleet::load(&mut client, opts.sensors, window)
            .await
            .map_err(SimError::Fleet)
    })
}

/// The simulated sensors and the model, from the fleet's rows.
fn build(opts: &Options, fleet: &Fleet, ingest: &IngestConf) -> (Vec<Sensor>, Model) {
    let mut sensors = Vec::with_capacity(fleet.members.len());
    let mut models = Vec::with_capacity(fleet.members.len());
    for (i, m) in fleet.members.iter().enumerate() {
        let row = &m.row;
        let zone = fleet
            .hives
            .get(&row.hive_id)
            .map_or(chrono_tz::Tz::UTC, |h| h.zone);
        let index = i as u64;
        let profile = Profile::draw(opts.seed, index, opts.mix, row.state.mode);
        let baseline = row.state.totals.map(|totals| Baseline {
            totals,
            message_counter: row.state.message_counter,
        });
        let sim = SimSensor::new(
            profile,
            opts.seed,
            index,
            row.direction,
            row.modulus,
            ingest.wrap_window,
            zone,
            baseline,
        );
        sensors.push(Sensor::new(&m.device_id, &opts.password, sim));
        models.push(SensorModel::new(
            row.hive_id,
            row.direction,
            row.modulus,
            row.state,
            &m.claimed,
            ingest,
        ));
    }
    let hives: BTreeMap<i64, HiveModel> = fleet
        .hives
        .iter()
        .map(|(id, h)| {
            let model = HiveModel {
                zone: h.zone,
                reset: h.reset,
                state: h.state,
                sensors: 0,
            };
            (*id, model)
        })
        .collect();
    (sensors, Model::new(models, hives, ingest))
}
