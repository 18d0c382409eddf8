//! `limit_req`: a per-key leaky bucket with burst, shared by all workers (nginx's
//! ngx_http_limit_req_module with `nodelay`). Each zone is a shared-memory hash table of
//! buckets keyed by client address, guarded by a spin lock that records its holder's pid so a
//! worker that died holding it cannot wedge the others. A full table evicts the stalest bucket
//! of the probe window. Refused requests get the zone's status (429) and Retry-After.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::core::config::Conf;
use crate::core::shm::Zone;
use crate::http::conf::{HttpConf, LimitReqZoneConf};
use crate::http::module::{InitError, Module, Registry};
use crate::http::phase::{Cx, Phase, PhaseHandler};
use crate::http::{Flow, HttpError, Request, Response};

pub struct LimitReqModule;

/// Buckets looked at for one key before the stalest is evicted.
const PROBE: usize = 8;

#[repr(C)]
struct Header {
    lock: AtomicU32,
    _pad: AtomicU32,
    evictions: AtomicU64,
}

/// One bucket. Plain atomics, only touched under the zone lock.
#[repr(C)]
struct Bucket {
    /// The address, IPv4 mapped into IPv6; all zero = free.
    key_hi: AtomicU64,
    key_lo: AtomicU64,
    /// Requests in excess of the rate, in thousandths.
    excess: AtomicU64,
    /// Monotonic ms of the last accepted request.
    last: AtomicU64,
}

fn zone_name(name: &str) -> String {
    format!("limit_req:{name}")
}

impl Module for LimitReqModule {
    fn name(&self) -> &'static str {
        "limit_req"
    }

    fn zones(&self, conf: &Conf) -> Vec<(String, usize)> {
        conf.section::<HttpConf>()
            .limit_req_zone
            .iter()
            .map(|(n, z)| (zone_name(n), z.size.0 as usize))
            .collect()
    }

    fn init(&self, reg: &mut Registry<'_>) -> Result<(), InitError> {
        let mut zones = Vec::new();
        for (name, z) in &reg.http.limit_req_zone {
            let shm = reg
                .zones
                .get(&zone_name(name))
                .ok_or_else(|| InitError::ZoneNotMade(name.clone()))?
                .clone();
            zones.push((name.clone(), Bucketed::new(shm, z.clone())));
        }
        if !zones.is_empty() {
            reg.phase_handler(Rc::new(LimitReq { zones }));
        }
        Ok(())
    }
}

struct LimitReq {
    zones: Vec<(String, Bucketed)>,
}

impl PhaseHandler for LimitReq {
    fn phase(&self) -> Phase {
        Phase::Access
    }

    fn handle(&self, req: &mut Request, _cx: &mut Cx<'_>) -> Result<Flow, HttpError> {
        let Some(name) = req
            .location
            .as_ref()
            .and_then(|l| l.conf.limit_req.as_ref())
        else {
            return Ok(Flow::Next);
        };
        let Some((_, zone)) = self.zones.iter().find(|(n, _)| n == name) else {
            return Ok(Flow::Next);
        };
        match zone.check(req.peer, monotonic_ms()) {
            Ok(()) => Ok(Flow::Next),
            Err(retry_after) => {
                crate::log!(
                    Warn,
                    "limiting requests by zone \"{name}\", client: {}",
                    req.peer.ip()
                );
                let mut r = if req.path.starts_with("/v1/") {
                    Response::error_json(zone.conf.status, "rate_limited", "too many requests")
                } else {
                    Response::error_page(zone.conf.status)
                };
                r.header("Retry-After", retry_after.to_string());
                Ok(Flow::Done(r))
            }
        }
    }
}

fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// A zone's table.
struct Bucketed {
    shm: Zone,
    conf: LimitReqZoneConf,
    buckets: usize,
    /// Requests per second, in thousandths (nginx's unit).
    rate: u64,
}

impl Bucketed {
    fn new(shm: Zone, conf: LimitReqZoneConf) -> Bucketed {
        let buckets = (shm.len() - std::mem::size_of::<Header>()) / std::mem::size_of::<Bucket>();
        let rate = (conf.rate.per_second * 1000.0).max(1.0) as u64;
        Bucketed {
            shm,
            conf,
            buckets,
            rate,
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: the zone starts with a Header of atomics, valid when zero.
        unsafe { self.shm.as_ref::<Header>() }
    }

    fn bucket(&self, i: usize) -> &Bucket {
        // SAFETY: the zone holds a Header followed by `buckets` Buckets of atomics; the slice
        // below covers exactly that; Bucket's alignment divides Header's size.
        let all: &[Bucket] = unsafe {
            let base = self.shm.as_slice::<u8>(self.shm.len()).as_ptr();
            std::slice::from_raw_parts(
                base.add(std::mem::size_of::<Header>()).cast::<Bucket>(),
                self.buckets,
            )
        };
        &all[i]
    }

    /// Ok: accepted. Err: refused, with the seconds after which a retry would pass.
    fn check(&self, peer: SocketAddr, now: u64) -> Result<(), u64> {
        let (hi, lo) = key(peer.ip());
        let _guard = SpinLock::lock(&self.header().lock);
        let b = self.find(hi, lo);
        let burst = self.conf.burst as u64 * 1000;
        let (excess, last) = (
            b.excess.load(Ordering::Relaxed),
            b.last.load(Ordering::Relaxed),
        );
        let fresh =
            b.key_hi.load(Ordering::Relaxed) != hi || b.key_lo.load(Ordering::Relaxed) != lo;
        let leaked = if fresh {
            0
        } else {
            excess.saturating_sub(self.rate.saturating_mul(now.saturating_sub(last)) / 1000)
        };
        let next = if fresh { 0 } else { leaked + 1000 };
        if next > burst {
            let wait_ms = ((next - burst) * 1000).div_ceil(self.rate);
            return Err(wait_ms.div_ceil(1000).max(1));
        }
        b.key_hi.store(hi, Ordering::Relaxed);
        b.key_lo.store(lo, Ordering::Relaxed);
        b.excess.store(next, Ordering::Relaxed);
        b.last.store(now, Ordering::Relaxed);
        Ok(())
    }

    /// The key's bucket, or the stalest one of its probe window (which the caller takes over).
    fn find(&self, hi: u64, lo: u64) -> &Bucket {
        let start = (mix(hi ^ lo.rotate_left(17)) as usize) % self.buckets;
        let mut stalest = self.bucket(start);
        for i in 0..PROBE.min(self.buckets) {
            let b = self.bucket((start + i) % self.buckets);
            let (bh, bl) = (
                b.key_hi.load(Ordering::Relaxed),
                b.key_lo.load(Ordering::Relaxed),
            );
            if (bh == hi && bl == lo) || (bh == 0 && bl == 0) {
                return b;
            }
            if b.last.load(Ordering::Relaxed) < stalest.last.load(Ordering::Relaxed) {
                stalest = b;
            }
        }
        crate::core::stats::bump(&self.header().evictions, 1);
        stalest
    }
}

/// IPv4 mapped into IPv6, as two words; never all zero for a real address.
fn key(ip: IpAddr) -> (u64, u64) {
    let v6 = match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    let n = u128::from(v6) | 1u128 << 127;
    ((n >> 64) as u64, n as u64)
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// A process-shared spin lock whose value is the holder's pid.
struct SpinLock<'a>(&'a AtomicU32);

impl<'a> SpinLock<'a> {
    fn lock(l: &'a AtomicU32) -> SpinLock<'a> {
        let me = std::process::id();
        let mut spins = 0u32;
        loop {
            match l.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return SpinLock(l),
                Err(holder) => {
                    spins += 1;
                    if spins % 1024 == 0 {
                        if holder != 0 && !alive(holder) {
                            let _ =
                                l.compare_exchange(holder, 0, Ordering::AcqRel, Ordering::Relaxed);
                        }
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
        }
    }
}

impl Drop for SpinLock<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 || *libc::__errno_location() != libc::ESRCH }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::{Rate, Size};
    use crate::http::conf::LimitKey;

    fn zone(rate: f64, burst: u32) -> Bucketed {
        let conf = LimitReqZoneConf {
            key: LimitKey::RemoteAddr,
            rate: format!("{rate}r/s").parse::<Rate>().unwrap(),
            burst,
            nodelay: true,
            size: Size(32 * 1024),
            status: 429,
        };
        Bucketed::new(Zone::new("t", 32 * 1024).unwrap(), conf)
    }

    #[test]
    fn burst_then_refuse_then_leak() {
        let z = zone(10.0, 5);
        let p: SocketAddr = "10.0.0.1:5".parse().unwrap();
        for i in 0..6 {
            assert!(z.check(p, 1000).is_ok(), "request {i} within rate + burst");
        }
        assert_eq!(z.check(p, 1000), Err(1));
        assert!(
            z.check(p, 1100).is_ok(),
            "100 ms at 10 r/s leaks one request"
        );
        let other: SocketAddr = "[::1]:5".parse().unwrap();
        assert!(z.check(other, 1100).is_ok(), "keys are separate");
    }

    #[test]
    fn table_full_evicts_stalest() {
        let z = zone(1.0, 0);
        for i in 0..(z.buckets as u32 + 100) {
            let p = SocketAddr::from((std::net::Ipv4Addr::from(i + 1), 1));
            assert!(z.check(p, u64::from(i)).is_ok());
        }
        assert!(z.header().evictions.load(Ordering::Relaxed) > 0);
    }
}
