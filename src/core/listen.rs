//! Listening sockets: bound by the master before it forks, kept across reloads by address, and
//! inherited by a new binary on upgrade (USR2) through the `BIZZY` environment variable, as
//! nginx passes its sockets in `NGINX`.

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
    pub addr: SocketAddr,
    pub kind: config::Protocol,
    pub backlog: i32,
    pub socket: TcpListener,
}

impl Listening {
    /// Binds and listens: SO_REUSEADDR, IPV6_V6ONLY for IPv6, non-blocking, close-on-exec.
    pub fn bind(spec: &ListenSpec) -> io::Result<Listening> {
        let domain = Domain::for_address(spec.addr);
        let s = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        if spec.addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_nonblocking(true)?;
        s.bind(&spec.addr.into())?;
        s.listen(spec.backlog)?;
        Ok(Listening {
            addr: spec.addr,
            kind: spec.kind,
            backlog: spec.backlog,
            socket: s.into(),
        })
    }

    /// Adopts an inherited descriptor, learning its address from the kernel.
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
        Ok(Listening {
            addr,
            kind: config::Protocol::INHERITED,
            backlog: 511,
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
        out.push(Listening::adopt(fd)?);
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

/// Builds the listener set for `specs`: a socket of `old` (the running cycle, or sockets
/// inherited from a previous binary) with the same address is duplicated, so the listening
/// socket itself never closes on reload; new addresses are bound. Nothing in `old` changes, so a
/// failure leaves the running cycle whole. Addresses no longer wanted close when the old cycle
/// (and the workers that share it) are gone.
pub fn open_all(specs: &[ListenSpec], old: &[Listening]) -> io::Result<Vec<Listening>> {
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let l = match old.iter().find(|l| l.addr == spec.addr) {
            Some(o) => {
                let mut l = dup(o)?;
                l.kind = spec.kind;
                l.relisten(spec.backlog)?;
                l
            }
            None => Listening::bind(spec).map_err(|e| {
                io::Error::new(e.kind(), format!("bind() to {} failed ({e})", spec.addr))
            })?,
        };
        out.push(l);
    }
    Ok(out)
}

/// A duplicate of a listener for a cycle that shares it with another.
pub fn dup(l: &Listening) -> io::Result<Listening> {
    Ok(Listening {
        addr: l.addr,
        kind: l.kind,
        backlog: l.backlog,
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
        }
    }

    #[test]
    fn reopen_keeps_socket_of_unchanged_address() {
        let first = Listening::bind(&spec("127.0.0.1:0")).unwrap();
        let addr = first.socket.local_addr().unwrap();
        let fd = first.socket.as_raw_fd();
        let old = vec![Listening { addr, ..first }];
        let new = open_all(&[spec(&addr.to_string())], &old).unwrap();
        assert_ne!(new[0].socket.as_raw_fd(), fd, "a duplicate descriptor");
        drop(old);
        let c = std::net::TcpStream::connect(addr).unwrap();
        new[0].socket.set_nonblocking(false).unwrap();
        let (s, _) = new[0].socket.accept().unwrap();
        assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
    }

    #[test]
    fn ipv6_loopback_binds() {
        if let Ok(l) = Listening::bind(&spec("[::1]:0")) {
            assert!(l.socket.local_addr().unwrap().is_ipv6());
        }
    }
}
