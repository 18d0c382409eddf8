//! One live stream: the hive's state as server-sent events (the WHATWG HTML standard's
//! `text/event-stream`).
//!
//! ```text
//!   retry: 3000                       once: the reconnection delay ([live] retry)
//!
//!   id: 5f0c2a9e1b7d4c33              the state now (left out when the client's
//!   event: occupancy                  Last-Event-ID names it: it has it already)
//!   data: {"hive_id":7,...}
//!
//!   id: ...                           then the newest state each time it changes; a
//!   event: occupancy                  reader too slow for every change gets the newest
//!   data: {...}                       (the connection pulls only when it has room)
//!
//!   :                                 after [live] heartbeat without an event
//! ```
//!
//! An event's id is a digest of its data, the same on every worker and node for the same
//! state, so a client that reconnects anywhere with `Last-Event-ID` is not sent again what it
//! has, and one that missed changes gets the state now.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use super::bus::{Bus, Subscription};
use crate::core::event::Posted;
use crate::http::stream::{Pulled, Stream, StreamCx};

/// The socket send buffer of a stream: a few states, not megabytes, wait for a slow reader.
const SEND_BUFFER: usize = 4096;

/// The body of one `GET /v1/hives/{id}/live`.
pub struct Live {
    bus: Rc<Bus>,
    sub: Subscription,
    /// The bus version of the state sent last.
    sent: u64,
    /// What the first pull sends: the retry field and the state now.
    first: Option<Bytes>,
    heartbeat: Duration,
    /// When something was last sent (loop clock, ms).
    last_ms: u64,
}

/// How a stream starts.
pub struct Open<'a> {
    pub hive: i64,
    /// The state now when the bus has none for the hive (read from the replica or PostgreSQL).
    pub fallback: Bytes,
    /// The client's `Last-Event-ID`, if it sent one.
    pub last_event_id: Option<&'a [u8]>,
    pub heartbeat: Duration,
    pub retry: Duration,
    pub now_ms: u64,
    pub token: mio::Token,
    pub posted: &'a Posted,
}

impl Live {
    /// Follows the hive on `bus` from now on; the state now is the bus's, or `fallback`.
    pub fn open(bus: &Rc<Bus>, o: Open<'_>) -> Live {
        let sub = bus.subscribe(o.hive, o.token, o.posted);
        let (sent, now) = match bus.latest(o.hive) {
            Some((version, json)) => (version, json),
            None => (bus.version(o.hive), o.fallback),
        };
        let mut first = format!("retry: {}\n\n", o.retry.as_millis()).into_bytes();
        let id = event_id(&now);
        if o.last_event_id.map(<[u8]>::trim_ascii) != Some(id.as_bytes()) {
            first.extend_from_slice(&event(&id, &now));
        }
        Live {
            bus: Rc::clone(bus),
            sub,
            sent,
            first: Some(Bytes::from(first)),
            heartbeat: o.heartbeat,
            last_ms: o.now_ms,
        }
    }
}

impl Stream for Live {
    fn pull(&mut self, cx: &mut StreamCx<'_>, out: &mut Vec<Bytes>) -> Pulled {
        if let Some(first) = self.first.take() {
            out.push(first);
        }
        let hive = self.sub.hive();
        if self.bus.version(hive) != self.sent {
            let framed = self
                .bus
                .framed(hive, |json| Bytes::from(event(&event_id(json), json)));
            if let Some((version, e)) = framed {
                self.sent = version;
                out.push(e);
                self.bus.sent();
            }
        }
        let beat_ms = self.heartbeat.as_millis() as u64;
        if out.is_empty() && cx.now_ms >= self.last_ms + beat_ms {
            out.push(Bytes::from_static(b":\n\n"));
        }
        if !out.is_empty() {
            self.last_ms = cx.now_ms;
        }
        cx.wait = Some(Duration::from_millis(
            (self.last_ms + beat_ms).saturating_sub(cx.now_ms).max(1),
        ));
        Pulled::More
    }

    fn send_buffer(&self) -> Option<usize> {
        Some(SEND_BUFFER)
    }
}

/// One `occupancy` event.
fn event(id: &str, json: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(json.len() + id.len() + 32);
    e.extend_from_slice(b"id: ");
    e.extend_from_slice(id.as_bytes());
    e.extend_from_slice(b"\nevent: occupancy\ndata: ");
    // The JSON is one line: it is written without newlines, and a field never holds one raw.
    e.extend(json.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
    e.extend_from_slice(b"\n\n");
    e
}

/// The id of the event carrying `json`: FNV-1a, 64 bits, in hex.
pub fn event_id(json: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in json.trim_ascii() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(live: &mut Live, now_ms: u64, posted: &Posted) -> (String, Option<Duration>) {
        let mut cx = StreamCx {
            now_ms,
            token: mio::Token(1),
            posted,
            wait: None,
        };
        let mut out = Vec::new();
        assert_eq!(live.pull(&mut cx, &mut out), Pulled::More);
        let text = out.iter().map(|b| String::from_utf8_lossy(b)).collect();
        (text, cx.wait)
    }

    fn open(bus: &Rc<Bus>, posted: &Posted, last: Option<&[u8]>) -> Live {
        Live::open(
            bus,
            Open {
                hive: 7,
                fallback: Bytes::from_static(b"{\"occupancy\":0}"),
                last_event_id: last,
                heartbeat: Duration::from_secs(15),
                retry: Duration::from_secs(3),
                now_ms: 1_000,
                token: mio::Token(1),
                posted,
            },
        )
    }

    #[test]
    fn the_state_now_then_the_newest_of_each_change_then_heartbeats() {
        let bus = Rc::new(Bus::new());
        let posted = Posted::new();
        bus.changed(7, Bytes::from_static(b"{\"occupancy\":1}"));
        let mut live = open(&bus, &posted, None);
        let id1 = event_id(b"{\"occupancy\":1}");
        let (text, wait) = pull(&mut live, 1_000, &posted);
        assert_eq!(
            text,
            format!("retry: 3000\n\nid: {id1}\nevent: occupancy\ndata: {{\"occupancy\":1}}\n\n")
        );
        assert_eq!(wait, Some(Duration::from_secs(15)));
        assert_eq!(pull(&mut live, 2_000, &posted).0, "", "nothing new");
        bus.changed(7, Bytes::from_static(b"{\"occupancy\":2}"));
        bus.changed(7, Bytes::from_static(b"{\"occupancy\":3}"));
        assert_eq!(posted.taken().len(), 2, "woken at each change");
        let (text, _) = pull(&mut live, 3_000, &posted);
        assert!(
            text.ends_with("data: {\"occupancy\":3}\n\n") && text.matches("event:").count() == 1,
            "two changes before a pull are one event, the newest: {text}"
        );
        let (text, wait) = pull(&mut live, 18_000, &posted);
        assert_eq!(text, ":\n\n", "a heartbeat after 15 s of silence");
        assert_eq!(wait, Some(Duration::from_secs(15)));
    }

    #[test]
    fn a_client_that_has_the_state_now_is_not_sent_it_again() {
        let bus = Rc::new(Bus::new());
        let posted = Posted::new();
        let id = event_id(b"{\"occupancy\":0}");
        let mut live = open(&bus, &posted, Some(id.as_bytes()));
        assert_eq!(
            pull(&mut live, 1_000, &posted).0,
            "retry: 3000\n\n",
            "resumed: the fallback state is the one it has"
        );
        let mut other = open(&bus, &posted, Some(b"0000000000000000"));
        assert!(pull(&mut other, 1_000, &posted)
            .0
            .contains("data: {\"occupancy\":0}"));
    }
}
