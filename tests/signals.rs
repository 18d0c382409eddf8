//! Signals to the master (DESIGN.md section 2) and what the processes do about them: reload,
//! graceful and fast stop, log reopening, worker death, titles, accept spreading, connection
//! limits and the worker user. Every wait is bounded.

mod common;
use common::*;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn rewrite(s: &Server, conf: &str) {
    std::fs::write(&s.conf_path, conf).unwrap();
}

fn refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

#[test]
fn hup_opens_new_addresses_and_closes_removed_ones() {
    let (a, b, c) = (free_port(), free_port(), free_port());
    let listen = |x: u16, y: u16| {
        basic_conf(a, "", "", "").replace(
            &format!("listen = [\"127.0.0.1:{a}\"]"),
            &format!("listen = [\"127.0.0.1:{x}\", \"127.0.0.1:{y}\"]"),
        )
    };
    let s = Server::start(a, &listen(a, b));
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    assert_eq!(get(addr(b), "/health").status, 200);
    assert!(refused(addr(c)));
    let old = s.wait_workers(2, &[]);
    rewrite(&s, &listen(a, c));
    s.signal(libc::SIGHUP);
    s.wait_workers(2, &old);
    assert_eq!(get(addr(c), "/health").status, 200, "the new address");
    assert_eq!(get(addr(a), "/health").status, 200, "the kept address");
    assert!(
        eventually(Duration::from_secs(10), || refused(addr(b))),
        "the removed address {b} still accepts connections"
    );
}
