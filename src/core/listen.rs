//! Listening sockets: bound by the master before it forks, kept across reloads by address, and
//! inherited by a new binary on upgrade (USR2) through the `BIZZY` environment variable, as
//! nginx passes its sockets in `NGINX`.
//!
//! An address is served by one socket that every worker accepts on, or, with `reuseport`, by a
//! group of `SO_REUSEPORT` sockets, one per worker slot: the kernel spreads connections across
//! the group and no worker waits on another's accept queue. Worker `i` of `n` takes the group's
//! slots `k` with `k % n == i`. A group never shrinks while its address stays configured:
//! closing a socket resets the connections queued on it, so after a reload to fewer workers the
//! surplus slots are served by the remaining ones. On upgrade a group is passed in slot order;
//! the new binary asks the kernel which descriptors have `SO_REUSEPORT` and numbers each
//! address's group in the order received, so the variable keeps its old form (`3;4;7;`).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::core::config::{self, ListenSpec};

/// The environment variable that carries inherited listening descriptors: `3;4;7;`.
pub const INHERIT_ENV: &str = "BIZZY";

/// One bound, listening socket.
#[derive(Debug)]
pub struct Listening {
    /// The configured address (a group bound on port 0 shares the port the kernel chose first).
    pub addr: SocketAddr,
    pub kind: config::Protocol,
    pub backlog: i32,
    /// The socket's place in its address's `SO_REUSEPORT` group, if it is in one.
    pub slot: Option<usize>,
    /// The address is configured with `reuseport`: each worker takes its own slots of the group
    /// rather than every socket (a group kept after `reuseport` was turned off is shared whole).
    pub reuseport: bool,
    pub socket: TcpListener,
}

/// Sets `TCP_DEFER_ACCEPT` to `secs` (0 turns it off): the kernel completes the handshake but
/// queues the connection for accept only when data arrives, or after about `secs`.
fn set_deferred(socket: &TcpListener, secs: u32) -> io::Result<()> {
    let v = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    // SAFETY: a descriptor we own and an int option of the size given.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Listening {
    /// Binds and listens: SO_REUSEADDR, IPV6_V6ONLY for IPv6, non-blocking, close-on-exec.
    pub fn bind(spec: &ListenSpec) -> io::Result<Listening> {
        let socket = bind_socket(spec, spec.addr, false)?;
        Ok(Listening {
            addr: spec.addr,
            kind: spec.kind,
            backlog: spec.backlog,
            slot: None,
            reuseport: false,
            socket,
        })
    }

    /// Whether worker `index` of `workers` accepts on this socket.
    pub fn serves(&self, index: usize, workers: usize) -> bool {
        match self.slot {
            Some(k) if self.reuseport => k % workers.max(1) == index,
            _ => true,
        }
    }

    /// Adopts an inherited descriptor, learning its address and `SO_REUSEPORT` from the kernel;
    /// its slot is numbered by [`inherited`].
    fn adopt(fd: RawFd) -> io::Result<Listening> {
        // SAFETY: the descriptor was handed to us by our parent master through INHERIT_ENV and
        // nothing else in this process owns it.
        let s = unsafe { Socket::from_raw_fd(fd) };
        let addr = s
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("inherited descriptor is not an inet socket"))?;
        s.set_nonblocking(true)?;
        set_cloexec(fd, true)?;
        let reuseport = s.reuse_port()?;
        Ok(Listening {
            addr,
            kind: config::Protocol::INHERITED,
            backlog: 511,
            slot: reuseport.then_some(0),
            reuseport,
            socket: s.into(),
        })
    }

    /// Applies a new backlog to a kept socket (listen(2) again is how nginx does it).
    pub fn relisten(&mut self, backlog: i32) -> io::Result<()> {
        if backlog != self.backlog {
            // SAFETY: listen on a descriptor we own.
            if unsafe { libc::listen(self.socket.as_raw_fd(), backlog) } != 0 {
                return Err(io::Error::last_os_error());
            }
            self.backlog = backlog;
        }
        Ok(())
    }
}

/// A new listening socket for `spec` on `addr` (its address, or the port a group was given),
/// with `SO_REUSEPORT` if `reuseport`.
fn bind_socket(spec: &ListenSpec, addr: SocketAddr, reuseport: bool) -> io::Result<TcpListener> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    if reuseport {
        s.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(spec.backlog)?;
    let s = s.into();
    if spec.deferred > 0 {
        set_deferred(&s, spec.deferred)?;
    }
    Ok(s)
}

/// Fails as a plain bind would if anything listens on `addr`: `SO_REUSEPORT` lets a second
/// group of the same user join the first, so a group for an address new to this master is
/// preceded by a bind without it (which, with `SO_REUSEADDR`, still passes sockets left in
/// TIME_WAIT). The probe closes before the group binds.
fn probe(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let s = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())
}

/// Sets or clears FD_CLOEXEC.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns; the result is checked.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The sockets a previous binary handed over, if any (and removes the variable, so that a
/// later upgrade from this process sets it afresh).
pub fn inherited() -> io::Result<Vec<Listening>> {
    let Some(v) = std::env::var_os(INHERIT_ENV) else {
        return Ok(Vec::new());
    };
    std::env::remove_var(INHERIT_ENV);
    let v = v.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for part in v.split([';', ':']).filter(|p| !p.is_empty()) {
        let fd: RawFd = part.parse().map_err(|_| {
            io::Error::other(format!("invalid socket number \"{part}\" in {INHERIT_ENV}"))
        })?;
        let mut l = Listening::adopt(fd)?;
        if l.slot.is_some() {
            l.slot = Some(
                out.iter()
                    .filter(|o: &&Listening| o.addr == l.addr && o.slot.is_some())
                    .count(),
            );
        }
        out.push(l);
    }
    Ok(out)
}

/// The value of INHERIT_ENV for a new binary, clearing close-on-exec on each socket.
pub fn export(listening: &[Listening]) -> io::Result<String> {
    let mut v = String::new();
    for l in listening {
        let fd = l.socket.as_raw_fd();
        set_cloexec(fd, false)?;
        v.push_str(&fd.to_string());
        v.push(';');
    }
    Ok(v)
}

/// Builds the listener set for `specs` with groups of `workers` slots: the sockets of `old` (the
/// running cycle, or sockets inherited from a previous binary) with the same address are
/// duplicated, so a listening socket never closes on reload; new addresses and new slots are
/// bound. Nothing in `old` changes but `SO_REUSEPORT` set on a socket that starts a group, so a
/// failure leaves the running cycle whole. Addresses no longer wanted close when the old cycle
/// (and the workers that share it) are gone.
pub fn open_all(
    specs: &[ListenSpec],
    old: &[Listening],
    workers: usize,
) -> io::Result<Vec<Listening>> {
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let mut kept: Vec<&Listening> = old.iter().filter(|l| l.addr == spec.addr).collect();
        kept.sort_by_key(|l| l.slot);
        let failed = |e: io::Error| {
            io::Error::new(e.kind(), format!("bind() to {} failed ({e})", spec.addr))
        };
        if spec.reuseport {
            out.extend(open_group(spec, &kept, workers).map_err(failed)?);
        } else if kept.is_empty() {
            out.push(Listening::bind(spec).map_err(failed)?);
        } else {
            for o in kept {
                let mut l = keep(o, spec)?;
                l.reuseport = false;
                out.push(l);
            }
        }
    }
    Ok(out)
}

/// The `SO_REUSEPORT` group of `spec`: the kept sockets first (a plain socket joins as slot
/// 0), then new ones up to `workers` slots.
fn open_group(
    spec: &ListenSpec,
    kept: &[&Listening],
    workers: usize,
) -> io::Result<Vec<Listening>> {
    let mut group = Vec::with_capacity(workers.max(kept.len()));
    for o in kept {
        let mut l = keep(o, spec)?;
        if l.slot.is_none() {
            socket2::SockRef::from(&l.socket).set_reuse_port(true)?;
        }
        l.slot = Some(group.len());
        l.reuseport = true;
        group.push(l);
    }
    if group.is_empty() {
        probe(spec.addr)?;
    }
    let mut addr = spec.addr;
    while group.len() < workers {
        if addr.port() == 0 {
            if let Some(first) = group.first() {
                addr.set_port(first.socket.local_addr()?.port());
            }
        }
        group.push(Listening {
            addr: spec.addr,
            kind: spec.kind,
            backlog: spec.backlog,
            slot: Some(group.len()),
            reuseport: true,
            socket: bind_socket(spec, addr, true)?,
        });
    }
    Ok(group)
}

/// A duplicate of a kept socket for the new cycle, with the new cycle's protocol, backlog and
/// deferred accept (set each time: an inherited socket's value is not known).
fn keep(o: &Listening, spec: &ListenSpec) -> io::Result<Listening> {
    let mut l = dup(o)?;
    l.kind = spec.kind;
    l.relisten(spec.backlog)?;
    set_deferred(&l.socket, spec.deferred)?;
    Ok(l)
}

/// A duplicate of a listener for a cycle that shares it with another.
pub fn dup(l: &Listening) -> io::Result<Listening> {
    Ok(Listening {
        addr: l.addr,
        kind: l.kind,
        backlog: l.backlog,
        slot: l.slot,
        reuseport: l.reuseport,
        socket: l.socket.try_clone()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: config::Protocol = config::Protocol {
        name: "test",
        label: "TEST",
    };

    fn spec(addr: &str) -> ListenSpec {
        ListenSpec {
            addr: addr.parse().unwrap(),
            kind: TEST,
            backlog: 16,
            reuseport: false,
            deferred: 0,
        }
    }

    fn deferred(l: &Listening) -> libc::c_int {
        let mut v: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: an int option read into an int of the size given.
        let r = unsafe {
            libc::getsockopt(
                l.socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0);
        v
    }

    #[test]
    fn deferred_accept_is_set_on_bind_and_follows_a_reload() {
        let on = ListenSpec {
            deferred: 10,
            ..spec("127.0.0.1:0")
        };
        let first = Listening::bind(&on).unwrap();
        assert!(deferred(&first) > 0);
        let addr = first.socket.local_addr().unwrap();
        let old = vec![Listening { addr, ..first }];
        let off = open_all(&[spec(&addr.to_string())], &old, 1).unwrap();
        assert_eq!(
            deferred(&off[0]),
            0,
            "the kept socket is shared: turned off"
        );
        let group = ListenSpec {
            reuseport: true,
            ..on
        };
        let two = open_all(&[group], &[], 2).unwrap();
        assert!(two.iter().all(|l| deferred(l) > 0), "every slot of a group");
    }

    #[test]
    fn reopen_keeps_socket_of_unchanged_address() {
        let first = Listening::bind(&spec("127.0.0.1:0")).unwrap();
        let addr = first.socket.local_addr().unwrap();
        let fd = first.socket.as_raw_fd();
        let old = vec![Listening { addr, ..first }];
        let new = open_all(&[spec(&addr.to_string())], &old, 1).unwrap();
        assert_ne!(new[0].socket.as_raw_fd(), fd, "a duplicate descriptor");
        drop(old);
        let c = std::net::TcpStream::connect(addr).unwrap();
        new[0].socket.set_nonblocking(false).unwrap();
        let (s, _) = new[0].socket.accept().unwrap();
        assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
    }

    fn group(addr: &str) -> ListenSpec {
        ListenSpec {
            reuseport: true,
            ..spec(addr)
        }
    }

    #[test]
    fn a_group_keeps_its_slots_when_workers_fall_and_binds_more_when_they_rise() {
        let two = open_all(&[group("127.0.0.1:0")], &[], 2).unwrap();
        let port = two[0].socket.local_addr().unwrap().port();
        assert_eq!(two[1].socket.local_addr().unwrap().port(), port);
        assert_eq!(
            two.iter().map(|l| l.slot).collect::<Vec<_>>(),
            [Some(0), Some(1)]
        );
        let one = open_all(&[group("127.0.0.1:0")], &two, 1).unwrap();
        assert_eq!(one.len(), 2, "no socket of the group closes");
        assert!(one[0].serves(0, 1) && one[1].serves(0, 1));
        let three = open_all(&[group("127.0.0.1:0")], &one, 3).unwrap();
        assert_eq!(three.len(), 3);
        assert!(three[2].serves(2, 3) && !three[2].serves(0, 3));
    }

    #[test]
    fn a_plain_socket_joins_a_group_as_its_first_slot() {
        let plain = Listening::bind(&spec("127.0.0.1:0")).unwrap();
        let addr = plain.socket.local_addr().unwrap().to_string();
        let old = vec![Listening {
            addr: addr.parse().unwrap(),
            ..plain
        }];
        let new = open_all(&[group(&addr)], &old, 2).unwrap();
        assert_eq!(new.len(), 2);
        assert!(socket2::SockRef::from(&new[0].socket).reuse_port().unwrap());
    }

    #[test]
    fn a_group_on_a_port_in_use_fails_as_a_plain_bind() {
        let other = open_all(&[group("127.0.0.1:0")], &[], 1).unwrap();
        let addr = other[0].socket.local_addr().unwrap().to_string();
        let e = open_all(&[group(&addr)], &[], 2).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e
            .to_string()
            .starts_with(&format!("bind() to {addr} failed")));
    }

    #[test]
    fn ipv6_loopback_binds() {
        if let Ok(l) = Listening::bind(&spec("[::1]:0")) {
            assert!(l.socket.local_addr().unwrap().is_ipv6());
        }
    }
}
