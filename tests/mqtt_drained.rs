//! The read path of a broker connection (`src/mqtt/conn.rs`) where it saves work, with the real
//! binary and raw sockets: after a short read the socket counts as drained until its next
//! readiness edge, a peer that shut its side is read to the end, and the worker's one read
//! buffer is lent to the connection that reads and kept only by one left with part of a packet.
//! Each test sends a client's bytes in the pieces that reach those paths, with pauses long
//! enough for the server to read each piece on its own edge; every wait is bounded.

mod common;

use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::mqtt::{client, Broker, Client, Connect, Packet, Publish, QUIET, WAIT};
use common::{basic_conf, kill, two_free_ports, Server};

/// Long enough for the worker to read what was sent and find the socket empty.
const PAUSE: Duration = Duration::from_millis(50);

/// bizzy with one worker (every connection shares its read buffer) and anonymous MQTT.
fn one_worker() -> Broker {
    let (http, port) = two_free_ports();
    let conf = format!(
        "{}\n[mqtt]\nlisten = [\"127.0.0.1:{port}\"]\nallow_anonymous = true\n",
        basic_conf(http, "", "", "").replace("worker_processes = 2", "worker_processes = 1")
    );
    let b = Broker {
        server: Server::start(http, &conf),
        port,
    };
    assert!(
        common::eventually(WAIT, || std::net::TcpStream::connect(b.addr()).is_ok()),
        "MQTT listens\n{}",
        b.server.error_log()
    );
    b
}

/// A QoS 1 PUBLISH of `payload` on `topic` with identifier `pid`, encoded.
fn qos1(topic: &str, payload: &[u8], pid: u16) -> Vec<u8> {
    Publish::new(topic, payload, 1).pid(pid).encode()
}

/// Writes `bytes` in the pieces that `cuts` (offsets, ascending) make, pausing after each but
/// the last.
fn send_in_pieces(c: &mut Client, bytes: &[u8], cuts: &[usize]) {
    let mut from = 0;
    for &at in cuts {
        c.send(&bytes[from..at]);
        std::thread::sleep(PAUSE);
        from = at;
    }
    c.send(&bytes[from..]);
}

/// Waits for the PUBACK of `pid`; `what` names the case when it does not come.
fn expect_puback(c: &mut Client, pid: u16, what: &str) {
    c.expect(&format!("PUBACK {pid} ({what})"), |p| {
        *p == Packet::Puback(pid)
    });
}

#[test]
fn a_publish_split_by_a_pause_is_acknowledged_once_its_end_arrives() {
    let b = one_worker();
    let mut c = client(b.addr(), "split-pause");
    let big = vec![b'x'; 10_000];
    for (n, payload) in [&b"21.5"[..], &big[..]].into_iter().enumerate() {
        let bytes = qos1("drained/split", payload, n as u16 + 1);
        let cuts = [1, 2, 9, bytes.len() / 2, bytes.len() - 1];
        for (i, cut) in cuts.into_iter().enumerate() {
            let pid = (100 * n + i + 1) as u16;
            let bytes = qos1("drained/split", payload, pid);
            c.send(&bytes[..cut]);
            assert_eq!(c.recv(PAUSE), None, "nothing before the rest of the packet");
            c.send(&bytes[cut..]);
            expect_puback(&mut c, pid, &format!("cut at {cut}"));
        }
    }
}

#[test]
fn a_packet_split_at_every_byte_of_its_fixed_header_is_read() {
    let b = one_worker();
    let mut sub = client(b.addr(), "header-sub");
    sub.subscribe(&[("drained/header/#", 0)]);
    let mut c = client(b.addr(), "header-pub");
    // Remaining lengths of one, two and three bytes.
    for (n, size) in [10usize, 200, 20_000].into_iter().enumerate() {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let topic = format!("drained/header/{size}");
        let header_len = 1 + [1, 2, 3][n];
        for cut in 1..=header_len {
            let pid = (10 * n + cut) as u16;
            send_in_pieces(&mut c, &qos1(&topic, &payload, pid), &[cut]);
            expect_puback(&mut c, pid, &format!("{size} bytes cut at {cut}"));
        }
        // Every byte of the fixed header on an edge of its own.
        let pid = (10 * n + 9) as u16;
        let cuts: Vec<usize> = (1..=header_len).collect();
        send_in_pieces(&mut c, &qos1(&topic, &payload, pid), &cuts);
        expect_puback(&mut c, pid, &format!("{size} bytes, byte by byte"));
        for _ in 0..=header_len {
            let p = sub
                .recv_publish(WAIT)
                .expect("the subscriber gets each message");
            assert_eq!((p.topic.as_str(), &p.payload), (topic.as_str(), &payload));
        }
    }
    // One write ends a packet and starts the next with its first byte.
    let (first, second) = (
        qos1("drained/header/a", b"1", 41),
        qos1("drained/header/b", b"2", 42),
    );
    let mut both = first.clone();
    both.push(second[0]);
    c.send(&both);
    expect_puback(&mut c, 41, "the packet before the cut");
    assert_eq!(c.recv(PAUSE), None, "no PUBACK for half a packet");
    c.send(&second[1..]);
    expect_puback(&mut c, 42, "the packet after the cut");
}

/// Sets `TCP_CORK` on the client's socket: what it writes next is held until the FIN.
fn cork(c: &Client) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket the client owns, with a c_int option of its size.
    let r = unsafe {
        libc::setsockopt(
            c.stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "TCP_CORK: {}", std::io::Error::last_os_error());
}

/// The last packet, written with the client's FIN (`shutdown(Write)` right after the write):
/// the server reads to the end of the stream, acts on the packet, then closes.
#[test]
fn the_last_packet_written_with_fin_is_processed() {
    let b = one_worker();
    for (n, cut) in [None, Some(5)].into_iter().enumerate() {
        let mut c = client(b.addr(), &format!("fin-{n}"));
        let topic = format!("drained/fin/{n}");
        let bytes = Publish::new(&topic, b"last words", 1)
            .pid(7)
            .retained()
            .encode();
        let from = match cut {
            Some(cut) => {
                // The server holds the start of the packet when the rest comes with the FIN.
                c.send(&bytes[..cut]);
                std::thread::sleep(PAUSE);
                cut
            }
            None => 0,
        };
        // Corked, the rest of the packet waits in the client's socket and the FIN leaves in
        // its segment: the server sees both on one readiness edge.
        cork(&c);
        c.send(&bytes[from..]);
        c.stream.shutdown(Shutdown::Write).unwrap();
        c.expect("PUBACK before the close", |p| *p == Packet::Puback(7));
        assert!(
            c.closed_within(WAIT),
            "the server closes at the end of the stream"
        );

        let mut later = client(b.addr(), &format!("fin-reader-{n}"));
        later.subscribe(&[(&topic, 0)]);
        let p = later
            .recv_publish(WAIT)
            .expect("the retained message was stored");
        assert_eq!((p.payload.as_slice(), p.retain), (&b"last words"[..], true));
    }
}

/// One worker, so both connections read through its one buffer: the one left with half a
/// packet keeps its bytes while the other reads whole packets, and each message arrives intact.
#[test]
fn half_a_packet_on_one_connection_and_whole_ones_on_another_stay_apart() {
    let b = one_worker();
    let mut sub = client(b.addr(), "apart-sub");
    sub.subscribe(&[("drained/apart/#", 0)]);
    let mut slow = client(b.addr(), "apart-slow");
    let mut fast = client(b.addr(), "apart-fast");
    let slow_payload = vec![b's'; 300];
    for round in 0..3u16 {
        let bytes = qos1("drained/apart/slow", &slow_payload, round + 1);
        let half = bytes.len() / 2;
        slow.send(&bytes[..half]);
        std::thread::sleep(PAUSE);
        for i in 0..3u16 {
            let pid = 10 * round + i + 1;
            let payload = format!("fast {pid}");
            fast.send(&qos1("drained/apart/fast", payload.as_bytes(), pid));
            fast.expect("the fast client's PUBACK", |p| *p == Packet::Puback(pid));
            let p = sub.recv_publish(WAIT).expect("the fast client's message");
            assert_eq!(
                (p.topic.as_str(), p.payload.as_slice()),
                ("drained/apart/fast", payload.as_bytes())
            );
        }
        assert_eq!(
            slow.recv(Duration::ZERO),
            None,
            "no PUBACK for half a packet"
        );
        slow.send(&bytes[half..]);
        slow.expect("the slow client's PUBACK", |p| {
            *p == Packet::Puback(round + 1)
        });
        let p = sub.recv_publish(WAIT).expect("the slow client's message");
        assert_eq!(
            (p.topic.as_str(), &p.payload),
            ("drained/apart/slow", &slow_payload)
        );
    }
    assert_eq!(sub.recv_publish(QUIET), None, "no message made of both");
}

/// Sends SIGCONT to a stopped worker when dropped, so a failing test leaves no stopped process.
struct Stopped(i32);

impl Drop for Stopped {
    fn drop(&mut self) {
        kill(self.0, libc::SIGCONT);
    }
}

/// A worker that starts beside a running sibling reads no client until it has that sibling's
/// filters: a connection whose bytes arrive then is held back (its readiness edge passes without
/// a read) and woken later. The woken turn must read what waits in the socket, though no new
/// edge comes. The sibling is stopped (SIGSTOP) so the wait lasts as long as the test needs.
#[test]
fn a_connection_held_back_reads_what_waited_once_woken() {
    let b = Broker::anonymous();
    let workers = b.server.wait_workers(2, &[]);
    // The worker that owns the client identifier is the one restarted, so that the new
    // worker serves the client itself instead of handing it to the stopped sibling.
    let id = "held-back";
    let probe = client(b.addr(), id);
    let victim = b.worker_of(&probe).expect("the probe is held by its owner");
    let sibling = *workers.iter().find(|w| **w != victim).expect("two workers");
    probe.disconnect();

    kill(sibling, libc::SIGSTOP);
    let stopped = Stopped(sibling);
    kill(victim, libc::SIGKILL);
    let fresh = b.server.wait_workers(2, &[victim]);
    let new = *fresh.iter().find(|w| **w != sibling).expect("a new worker");
    let linked = format!("{new}#0: linked to worker slot");
    assert!(
        common::eventually(WAIT, || b.server.error_log().contains(&linked)),
        "the new worker links to its sibling\n{}",
        b.server.error_log()
    );

    let mut c = Client::open(b.addr());
    let mut bytes = Connect::new(id).encode();
    bytes.extend_from_slice(&qos1("drained/held", b"waited", 3));
    c.send(&bytes);
    assert_eq!(
        c.recv(QUIET),
        None,
        "held back while the sibling is stopped"
    );
    assert_eq!(
        b.worker_of(&c),
        Some(new),
        "the new worker holds the client"
    );

    drop(stopped);
    c.expect("CONNACK once woken", |p| {
        matches!(p, Packet::Connack { code: 0, .. })
    });
    c.expect("PUBACK of the PUBLISH that waited", |p| {
        *p == Packet::Puback(3)
    });
    assert!(c.ping(), "the connection goes on");
}
