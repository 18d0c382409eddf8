//! PostgreSQL's LISTEN/NOTIFY for a worker: one connection on the worker's I/O thread listens on
//! a list of channels, and each notification reaches the parts of the worker that follow its
//! channel, on the event loop.
//!
//! ```text
//!   I/O thread: spawn(url, channels, tell)        event loop: Hearers
//!     connect, LISTEN every channel  -> tell(Listening)  -> Hear::listening (reload: news missed)
//!     poll the connection            -> tell(Notified)   -> Hear::notified(payload)
//!     connection lost: wait 0.1 s .. 5 s, connect again, LISTEN again, tell(Listening)
//! ```
//!
//! tokio-postgres drops notifications when its connection is simply awaited, so the listener
//! polls the connection itself ([`tokio_postgres::Connection::poll_message`]). Notifications
//! sent while no connection listens are lost: that is why every (re)connection is announced as
//! [`Heard::Listening`], after which a follower reloads what it keeps. A silently dead peer is
//! found by TCP keepalives ([`super::pool::open`]).

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::{Duration, SystemTime};

use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Connection, Socket};

use crate::log;
use crate::modules::database::migrate::redact;
use crate::modules::database::pool;

/// First and longest wait before connecting again.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What the listener tells the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// LISTEN on these channels is in effect on a new connection: notifications sent before
    /// may have been missed.
    Listening(Vec<String>),
    /// A notification.
    Notified { channel: String, payload: String },
    /// The connection was lost, or could not be made (why): PostgreSQL is probably
    /// unreachable until the next [`Heard::Listening`].
    Lost(String),
}

/// Starts the listener as a task of the I/O thread's runtime (call it there): it listens on
/// `channels` at `url` for as long as the thread runs, and calls `tell` with what it hears.
pub fn spawn(url: String, channels: Vec<String>, tell: impl Fn(Heard) + 'static) {
    if channels.is_empty() {
        return;
    }
    tokio::task::spawn_local(run(url, channels, Rc::new(tell)));
}

/// Connects, listens, and connects again when the connection is lost.
async fn run(url: String, channels: Vec<String>, tell: Rc<dyn Fn(Heard)>) {
    if let Err(e) = url.parse::<tokio_postgres::Config>() {
        log!(Crit, "database: LISTEN: {}: {e}", redact(&url));
        return;
    }
    let mut wait = RETRY_FIRST;
    let mut failing = false;
    loop {
        let mut listened = false;
        let e = session(&url, &channels, &tell, failing, &mut listened).await;
        if listened {
            wait = RETRY_FIRST;
        }
        if !failing || listened {
            log!(
                Error,
                "database: LISTEN {}: {e}; connecting again",
                channels.join(", ")
            );
        }
        failing = !listened;
        tell(Heard::Lost(e));
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// One connection: LISTEN on every channel, then hand on its notifications until it ends; what
/// ended it. `listened` tells whether LISTEN took effect; `failing`, whether the attempts
/// before this one failed (and were logged).
async fn session(
    url: &str,
    channels: &[String],
    tell: &Rc<dyn Fn(Heard)>,
    failing: bool,
    listened: &mut bool,
) -> String {
    let (client, connection) = match pool::open(url).await {
        Ok(c) => c,
        Err(e) => return format!("cannot connect to {}: {}", redact(url), pool::describe(&e)),
    };
    let driver = tokio::task::spawn_local(drive(connection, Rc::clone(tell)));
    if let Err(e) = client.batch_execute(&listen_sql(channels)).await {
        driver.abort();
        return pool::describe(&e);
    }
    *listened = true;
    if failing {
        log!(
            Notice,
            "database: LISTEN {}: listening again",
            channels.join(", ")
        );
    }
    tell(Heard::Listening(channels.to_vec()));
    let ended = driver.await;
    drop(client);
    match ended {
        Ok(Ok(())) => "the server closed the connection".into(),
        Ok(Err(e)) => pool::describe(&e),
        Err(e) => format!("the listener's task ended ({e})"),
    }
}

/// Polls the connection: hands on each notification, ends with the connection.
async fn drive(
    mut connection: Connection<Socket, NoTlsStream>,
    tell: Rc<dyn Fn(Heard)>,
) -> Result<(), tokio_postgres::Error> {
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) => tell(Heard::Notified {
                channel: n.channel().to_string(),
                payload: n.payload().to_string(),
            }),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => return Ok(()),
        }
    }
}

/// `LISTEN "a"; LISTEN "b"`, each channel quoted as an identifier.
fn listen_sql(channels: &[String]) -> String {
    channels
        .iter()
        .map(|c| format!("LISTEN \"{}\"", c.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A part of a worker that follows a channel, on the event loop.
pub trait Hear {
    /// LISTEN on the channel took effect on a new connection: what was notified before may
    /// have been missed (reload what depends on it).
    fn listening(&self);
    /// A notification on the channel.
    fn notified(&self, payload: &str);
}

/// Who follows each channel: the loop's side of the listener. Followers are held weakly (a
/// follower usually holds the worker's I/O thread, which holds this).
#[derive(Default)]
pub struct Hearers(RefCell<Vec<(String, Weak<dyn Hear>)>>);

impl Hearers {
    /// `hear` follows `channel` from now on.
    pub fn add(&self, channel: &str, hear: Weak<dyn Hear>) {
        self.0.borrow_mut().push((channel.to_string(), hear));
    }

    /// LISTEN on `channels` took effect: their followers hear it.
    pub fn listening(&self, channels: &[String]) {
        for h in self.of(|c| channels.iter().any(|x| x == c)) {
            h.listening();
        }
    }

    /// A notification: the followers of `channel` hear it.
    pub fn notified(&self, channel: &str, payload: &str) {
        for h in self.of(|c| c == channel) {
            h.notified(payload);
        }
    }

    /// The live followers of the channels `pick` chooses (collected first: a follower may add
    /// followers while it is called).
    fn of(&self, pick: impl Fn(&str) -> bool) -> Vec<Rc<dyn Hear>> {
        self.0
            .borrow()
            .iter()
            .filter(|(c, _)| pick(c))
            .filter_map(|(_, h)| h.upgrade())
            .collect()
    }
}

/// What a follower needs to catch up when LISTEN takes effect again on a new connection: when it
/// last heard its channel. It reads back what changed since `margin` before that (a change's
/// time is written before its notification is sent).
pub struct Missed {
    heard: Cell<Option<SystemTime>>,
    margin: Duration,
}

impl Missed {
    /// `from`: what the first LISTEN catches up from (`None`: nothing, the follower starts
    /// current).
    pub fn new(from: Option<SystemTime>, margin: Duration) -> Missed {
        Missed {
            heard: Cell::new(from),
            margin,
        }
    }

    /// A notification came now.
    pub fn heard(&self) {
        self.heard.set(Some(SystemTime::now()));
    }

    /// LISTEN took effect now: since when to read what may have been missed (`None`: nothing).
    pub fn listening(&self) -> Option<SystemTime> {
        let last = self.heard.replace(Some(SystemTime::now()))?;
        Some(
            last.checked_sub(self.margin)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log(RefCell<Vec<String>>);

    impl Hear for Log {
        fn listening(&self) {
            self.0.borrow_mut().push("listening".into());
        }
        fn notified(&self, payload: &str) {
            self.0.borrow_mut().push(payload.into());
        }
    }

    #[test]
    fn each_follower_hears_its_channels_only() {
        let (a, b) = (Rc::new(Log::default()), Rc::new(Log::default()));
        let hearers = Hearers::default();
        hearers.add("one", Rc::downgrade(&a) as Weak<dyn Hear>);
        hearers.add("two", Rc::downgrade(&b) as Weak<dyn Hear>);
        hearers.listening(&["one".into(), "two".into()]);
        hearers.notified("one", "x");
        hearers.notified("two", "y");
        hearers.notified("three", "z");
        assert_eq!(*a.0.borrow(), ["listening", "x"]);
        assert_eq!(*b.0.borrow(), ["listening", "y"]);
        drop(b);
        hearers.notified("two", "gone");
    }

    #[test]
    fn a_listen_catches_up_from_the_margin_before_the_last_notice() {
        let margin = Duration::from_secs(60);
        assert_eq!(Missed::new(None, margin).listening(), None);
        let start = SystemTime::now();
        let m = Missed::new(Some(start), margin);
        assert_eq!(m.listening(), Some(start - margin));
        m.heard();
        let since = m.listening().expect("heard before");
        assert!(since >= start - margin && since <= SystemTime::now() - margin);
    }

    #[test]
    fn channels_are_quoted_as_identifiers() {
        assert_eq!(
            listen_sql(&["bizzy_sensor".into(), "a\"b".into()]),
            "LISTEN \"bizzy_sensor\"; LISTEN \"a\"\"b\""
        );
    }
}
