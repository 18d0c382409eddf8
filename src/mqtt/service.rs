//! The MQTT side of a worker: what the master prepares for every worker of a cycle (the
//! `[mqtt]` limits, the password and ACL files, read and checked before any worker starts), the
//! [`Hooks`] the wiring installs in every worker's broker (who may log in, where accepted
//! messages go), and the per-worker [`MqttService`] that the event loop hands accepted sockets
//! and sibling links.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use mio::net::TcpStream;

use crate::core::config::Conf;
use crate::core::event::Peer;
use crate::core::event::{Conn, Cx, Service};
use crate::core::process::WorkerCtx;
use crate::core::shm::Zones;
use crate::log;
use crate::mqtt::auth::acl::AclError;
use crate::mqtt::auth::passwd::PasswdError;
use crate::mqtt::auth::{Acl, Authority, FileAuthority, Passwords, Verdicts};
use crate::mqtt::broker::{self, Broker, Limits};
use crate::mqtt::conf::MqttConf;
use crate::mqtt::conn::MqttConn;
use crate::mqtt::ingest::{Acks, Ingest, NoIngest, Outbox};
use crate::mqtt::link;
use crate::mqtt::stats::{self, Stats};

/// What the wiring installs in every worker's broker, made in the worker after fork (so a hook
/// may start threads there). The defaults: mosquitto's files alone, and no ingest.
pub trait Hooks {
    /// The worker's authority. `files` answers for `[mqtt]`'s password and ACL files (and
    /// `allow_anonymous`); an authority that answers a CONNECT later does so through
    /// `verdicts`.
    fn authority(
        &self,
        _ctx: &WorkerCtx<'_>,
        files: Rc<FileAuthority>,
        _verdicts: &Verdicts,
    ) -> Rc<dyn Authority> {
        files
    }

    /// The worker's ingest hook; it completes the acknowledgements it holds through `acks`,
    /// and publishes the server's own messages through `outbox`.
    fn ingest(&self, _ctx: &WorkerCtx<'_>, _acks: &Acks, _outbox: &Outbox) -> Box<dyn Ingest> {
        Box::new(NoIngest)
    }
}

/// The hooks of a server without product modules.
#[derive(Debug, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}

/// What every worker of a cycle shares, built in the master: an unreadable or malformed
/// password or ACL file refuses the configuration (`bizzy -t` says which line).
pub struct MqttPrepared {
    conf: MqttConf,
    auth: Rc<FileAuthority>,
    hooks: Rc<dyn Hooks>,
}

impl MqttPrepared {
    pub fn build(conf: &Conf, hooks: Rc<dyn Hooks>) -> Result<MqttPrepared, PrepareError> {
        let m = conf.section::<MqttConf>();
        let passwords = match &m.password_file {
            Some(p) => Some(Passwords::load(p).map_err(PrepareError::PasswordFile)?),
            None => None,
        };
        let acl = match &m.acl_file {
            Some(p) => Some(Acl::load(p).map_err(PrepareError::AclFile)?),
            None => None,
        };
        Ok(MqttPrepared {
            conf: m.clone(),
            auth: Rc::new(FileAuthority {
                allow_anonymous: m.allow_anonymous,
                passwords,
                acl,
            }),
            hooks,
        })
    }

    /// The worker's service and its broker.
    pub fn service(&self, ctx: &WorkerCtx<'_>) -> Result<MqttService, PrepareError> {
        let zone = ctx
            .zones
            .get(stats::ZONE)
            .ok_or(PrepareError::NoStatsZone)?
            .clone();
        let c = &self.conf;
        let limits = Limits::from_conf(c);
        let verdicts = Verdicts::default();
        let acks = Acks::default();
        let outbox = Outbox::default();
        let hooks = broker::Hooks {
            authority: self.hooks.authority(ctx, Rc::clone(&self.auth), &verdicts),
            verdicts,
            ingest: self.hooks.ingest(ctx, &acks, &outbox),
            acks,
            outbox,
        };
        let broker = Rc::new(RefCell::new(Broker::new(
            limits,
            hooks,
            ctx.posted.clone(),
            Stats::new(zone, ctx.slot),
            (ctx.slot, ctx.generation),
        )));
        let peers = std::mem::take(&mut *ctx.peers.borrow_mut());
        for p in peers {
            link::adopt(&broker, &ctx.posted, p.slot, p.generation, p.fd, true);
        }
        Ok(MqttService {
            broker,
            posted: ctx.posted.clone(),
            rate: c.connect_rate.as_ref().map(|r| r.per_second),
            buckets: HashMap::new(),
            last_sweep_ms: 0,
        })
    }
}

/// The zones MQTT needs.
pub fn zones(_conf: &Conf) -> Vec<(String, usize)> {
    vec![(stats::ZONE.to_string(), stats::zone_size())]
}

/// The master resets a dead worker's gauges.
pub fn reaped(zones: &Zones, slot: usize) {
    if let Some(z) = zones.get(stats::ZONE) {
        stats::reap(z, slot);
    }
}

/// One worker's MQTT listener.
pub struct MqttService {
    broker: Rc<RefCell<Broker>>,
    posted: crate::core::event::Posted,
    /// `mqtt.connect_rate` in connections per second per client address, if limited.
    rate: Option<f64>,
    /// Per address: (allowance, last update ms), a token bucket of one second's burst.
    buckets: HashMap<IpAddr, (f64, u64)>,
    last_sweep_ms: u64,
}

impl MqttService {
    /// Token bucket per client address: `rate` connections a second, bursts of as many.
    fn admit(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        let Some(rate) = self.rate else {
            return true;
        };
        let burst = rate.max(1.0);
        if now_ms.saturating_sub(self.last_sweep_ms) > 10_000 {
            self.last_sweep_ms = now_ms;
            // Full buckets carry no information: forget them, so the map stays bounded by the
            // addresses active in the last seconds.
            self.buckets.retain(|_, (a, t)| {
                *a + (now_ms.saturating_sub(*t) as f64 / 1000.0) * rate < burst
            });
        }
        let (allowance, last) = self.buckets.entry(ip).or_insert((burst, now_ms));
        *allowance =
            (*allowance + (now_ms.saturating_sub(*last) as f64 / 1000.0) * rate).min(burst);
        *last = now_ms;
        if *allowance < 1.0 {
            return false;
        }
        *allowance -= 1.0;
        true
    }
}

impl Service for MqttService {
    fn accept(
        &mut self,
        cx: &mut Cx<'_>,
        stream: TcpStream,
        peer: SocketAddr,
        _listen: SocketAddr,
    ) -> Option<Box<dyn Conn>> {
        if !self.admit(peer.ip(), cx.now_ms()) {
            log!(Info, "mqtt client {peer}: connect_rate exceeded: closing");
            self.broker.borrow().stats().refused();
            return None;
        }
        let _ = stream.set_nodelay(true);
        let max = self.broker.borrow().limits().max_packet_size;
        Some(Box::new(MqttConn::new(
            Rc::clone(&self.broker),
            stream,
            peer,
            max,
            cx.now_ms(),
        )))
    }

    fn peer(&mut self, peer: Peer) -> Option<Peer> {
        link::adopt(
            &self.broker,
            &self.posted,
            peer.slot,
            peer.generation,
            peer.fd,
            false,
        );
        None
    }

    fn drain(&mut self, now_ms: u64) {
        self.broker.borrow_mut().drain(now_ms);
    }

    fn idle(&mut self, now_ms: u64) {
        self.broker.borrow_mut().tick(now_ms);
    }

    fn busy(&self) -> bool {
        self.broker.borrow().busy()
    }
}

/// Why MQTT could not be prepared for a cycle, or started in a worker.
#[derive(Debug)]
pub enum PrepareError {
    /// `mqtt.password_file` cannot be read or a line of it is wrong.
    PasswordFile(PasswdError),
    /// `mqtt.acl_file` cannot be read or a line of it is wrong.
    AclFile(AclError),
    /// The worker's counters zone was not made for this cycle.
    NoStatsZone,
}

impl std::fmt::Display for PrepareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrepareError::PasswordFile(e) => write!(f, "mqtt.password_file: {e}"),
            PrepareError::AclFile(e) => write!(f, "mqtt.acl_file: {e}"),
            PrepareError::NoStatsZone => f.write_str("the mqtt stats zone is missing"),
        }
    }
}

impl std::error::Error for PrepareError {}
