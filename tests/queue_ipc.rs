//! The ipc transport between real processes: pairs made before `fork`, each end used from its
//! own process, framing across batch and buffer boundaries, fd passing (`SCM_RIGHTS`), mio
//! registration, and the end of a peer.

use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use bizzy::core::queue::{IpcChannel, IpcPair, Msg, RecvError};
use mio::{Events, Interest, Poll, Token};

fn soon() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(10))
}

#[test]
fn commands_reach_every_child_and_replies_come_back() {
    let mut pairs = IpcPair::many(3).expect("pairs");
    let mut masters: Vec<IpcChannel> = Vec::new();
    let mut pids = Vec::new();
    for slot in 0..3u8 {
        let pair = pairs.remove(0);
        // SAFETY: the child uses only its own channel and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let mut ch = pair.into_child();
            masters.drain(..).for_each(IpcChannel::close_inherited);
            let code = match ch.recv_deadline(soon()) {
                Ok(cmd) if &*cmd == b"quit" => {
                    ch.send(Msg::new(&[b'q', slot])).expect("reply");
                    i32::from(ch.flush_blocking(soon()).is_err())
                }
                _ => 1,
            };
            // SAFETY: leaves the child at once.
            unsafe { libc::_exit(code) };
        }
        pids.push(pid);
        masters.push(pair.into_parent());
    }
    for ch in &mut masters {
        ch.send(Msg::new(b"quit")).expect("command");
    }
    let mut replies: Vec<Vec<u8>> = masters
        .iter_mut()
        .map(|ch| ch.recv_deadline(soon()).expect("reply").to_vec())
        .collect();
    replies.sort();
    assert_eq!(replies, vec![vec![b'q', 0], vec![b'q', 1], vec![b'q', 2]]);
    for pid in pids {
        let mut status = 0;
        // SAFETY: waits for a child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(status, 0);
    }
    for ch in &mut masters {
        assert!(
            matches!(ch.recv_deadline(soon()), Err(RecvError::Closed)),
            "child gone: EOF"
        );
    }
}

#[test]
fn fd_passing_across_fork() {
    let pair = IpcPair::new().expect("pair");
    let mut log = tempfile::tempfile().expect("temp file");
    // SAFETY: the child uses only its own channel end and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut ch = pair.into_child();
        let mut code = 0;
        for expect in [&b"before"[..], b"reopen", b"after"] {
            let ok = matches!(ch.recv_deadline(soon()), Ok(ref m) if &**m == expect);
            let fds = ch.take_fds();
            code = match (ok, expect == b"reopen", fds.len()) {
                (false, _, _) => 1,
                (true, true, 1) => {
                    let mut file = std::fs::File::from(fds.into_iter().next().expect("one fd"));
                    i32::from(file.write_all(b"written by the child\n").is_err())
                }
                (true, false, 0) => code,
                _ => 2,
            };
            if code != 0 {
                break;
            }
        }
        // SAFETY: leaves the child at once.
        unsafe { libc::_exit(code) };
    }
    let mut ch = pair.into_parent();
    ch.write(Msg::new(b"before")).expect("write");
    ch.send_with_fds(Msg::new(b"reopen"), &[log.as_fd()])
        .expect("send fd");
    ch.send(Msg::new(b"after")).expect("send");
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(status, 0, "the child got all three, the fd with the second");
    let mut text = String::new();
    log.rewind().expect("rewind");
    log.read_to_string(&mut text).expect("read");
    assert_eq!(text, "written by the child\n");
}

#[test]
fn frames_survive_batches_and_buffer_boundaries() {
    let (mut a, mut b) = IpcPair::new().expect("pair").into_ends();
    let sizes: Vec<usize> = (0..3000)
        .map(|i| (i * 7919) % 700 + usize::from(i % 500 == 0) * 200_000)
        .collect();
    let writer = std::thread::spawn(move || {
        for (i, &n) in sizes.iter().enumerate() {
            let body: Vec<u8> = (0..n).map(|j| (i + j) as u8).collect();
            let mut msg = Msg::from(body).with_id(i as u32);
            loop {
                match a.write(msg) {
                    Ok(()) => break,
                    Err(e) if e.is_would_block() => {
                        msg = e.into_inner();
                        a.flush_blocking(soon()).expect("drains");
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            if i % 13 == 0 {
                let _ = a.flush();
            }
        }
        a.flush_blocking(soon()).expect("drains");
        sizes
    });
    let mut got = Vec::new();
    loop {
        match b.recv_deadline(soon()) {
            Ok(m) => got.push(m),
            Err(RecvError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let sizes = writer.join().expect("writer");
    assert_eq!(got.len(), sizes.len());
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.id(), i as u32);
        assert_eq!(m.len(), sizes[i]);
        assert!(
            m.iter().enumerate().all(|(j, &x)| x == (i + j) as u8),
            "frame {i} intact"
        );
    }
}

#[test]
fn the_child_end_is_a_mio_source_and_would_block_when_empty() {
    let (mut master, mut worker) = IpcPair::new().expect("pair").into_ends();
    let mut poll = Poll::new().expect("poll");
    poll.registry()
        .register(&mut worker, Token(3), Interest::READABLE)
        .expect("register");
    assert!(worker.try_recv().unwrap_err().is_would_block());
    master.send(Msg::new(b"reopen")).expect("send");
    let mut events = Events::with_capacity(2);
    poll.poll(&mut events, Some(Duration::from_secs(5)))
        .expect("poll");
    assert_eq!(events.iter().next().map(|e| e.token()), Some(Token(3)));
    assert_eq!(&*worker.try_recv().expect("command"), b"reopen");
    assert!(worker.try_recv().unwrap_err().is_would_block());
    drop(master);
    assert!(
        matches!(worker.try_recv(), Err(RecvError::Closed)),
        "the master is gone"
    );
}

/// Forks a child that answers one command on its end of `pair` (`die`: it exits without
/// answering), and returns its pid with the parent's end.
fn spawn_child(pair: IpcPair, die: bool) -> (libc::pid_t, IpcChannel) {
    // SAFETY: the child uses only its own channel end and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut ch = pair.into_child();
        let code = match ch.recv_deadline(soon()) {
            Ok(_) if die => 9,
            Ok(cmd) => {
                ch.send(cmd).expect("echo");
                i32::from(ch.flush_blocking(soon()).is_err())
            }
            Err(_) => 1,
        };
        // SAFETY: leaves the child at once.
        unsafe { libc::_exit(code) };
    }
    (pid, pair.into_parent())
}

#[test]
fn a_dead_child_is_seen_and_replaced_with_a_fresh_pair() {
    let (pid, mut ch) = spawn_child(IpcPair::new().expect("pair"), true);
    ch.send(Msg::new(b"reopen")).expect("command");
    assert!(
        matches!(ch.recv_deadline(soon()), Err(RecvError::Closed)),
        "EOF: the child died"
    );
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(libc::WEXITSTATUS(status), 9);
    drop(ch);
    let (pid, mut ch) = spawn_child(IpcPair::new().expect("fresh pair"), false);
    ch.send(Msg::new(b"reopen"))
        .expect("command to the replacement");
    assert_eq!(&*ch.recv_deadline(soon()).expect("echo"), b"reopen");
    // SAFETY: waits for the replacement forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(status, 0);
}
