//! Which report an SSE event shows, and how long it took.
//!
//! Every report of the `live` scenario is one entry on its hive's one sensor, so each raises
//! the hive's count by exactly one. A stream's first event gives the count when it opened (the
//! hive's base: every stream opens before the first report), and from then on a count of
//! base + N says that the hive's first N reports have been applied. An event may show more
//! than one new report at once (reports committed in one batch, or a slow reader's conflated
//! values): it is the first sight of each, so each (stream, report) pair gets one sample, the
//! time from the report's publish to the event's arrival. A count that falls, or that no report
//! of the run explains, is a mismatch: something else changed the hive, and the figures would
//! be wrong.

use std::fmt;

use crate::sse::Occupancy;
use crate::stats::Latencies;

/// An event that does not fit the reports sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The event is about another hive than the stream's.
    WrongHive { expected: i64, got: i64 },
    /// A stream's first count is not one the hive has had during the run.
    Base { hive_id: i64, base: i64, got: i64 },
    /// The count fell.
    Backwards { hive_id: i64, last: i64, got: i64 },
    /// A count above base + reports sent.
    Ahead { hive_id: i64, got: i64, most: i64 },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::WrongHive { expected, got } => {
                write!(f, "an event of hive {got} on the stream of hive {expected}")
            }
            Mismatch::Base { hive_id, base, got } => write!(
                f,
                "hive {hive_id}: a stream opened at {got}, the hive's others at {base}"
            ),
            Mismatch::Backwards { hive_id, last, got } => {
                write!(f, "hive {hive_id}: the count fell from {last} to {got}")
            }
            Mismatch::Ahead { hive_id, got, most } => write!(
                f,
                "hive {hive_id}: count {got}, but the reports sent explain at most {most}"
            ),
        }
    }
}

#[derive(Default)]
struct Hive {
    /// The count before the run's first report, from the first stream that opened.
    base: Option<i64>,
    /// When each report to the hive was published, in order.
    sent_ns: Vec<u64>,
}

struct Stream {
    hive: usize,
    /// The count of the stream's newest event.
    last: Option<i64>,
}

/// The figures at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// (stream, report) pairs: each opened stream should show each report to its hive.
    pub expected: u64,
    /// The pairs the streams' newest events showed.
    pub covered: u64,
    /// Opened streams whose newest event does not show every report to their hive.
    pub behind: u64,
    /// Streams that never had an event.
    pub unopened: u64,
}

/// The reports sent and the events seen, of every stream. Stream `j` watches hive index
/// `j % hives`, whose id is `first_hive + index`.
pub struct Ledger {
    first_hive: i64,
    hives: Vec<Hive>,
    streams: Vec<Stream>,
    /// One sample per (stream, report) pair, publish to first sight.
    pub lat: Latencies,
    /// Events after each stream's first.
    pub events: u64,
    /// Of those, events that showed no new report (the same count again).
    pub repeats: u64,
}

impl Ledger {
    /// A ledger of `streams` streams over `hives` hives (at least one), none opened yet.
    pub fn new(first_hive: i64, hives: usize, streams: usize) -> Ledger {
        let hives = hives.max(1);
        Ledger {
            first_hive,
            hives: (0..hives).map(|_| Hive::default()).collect(),
            streams: (0..streams)
                .map(|j| Stream {
                    hive: j % hives,
                    last: None,
                })
                .collect(),
            lat: Latencies::default(),
            events: 0,
            repeats: 0,
        }
    }

    /// The id of the hive stream `j` watches.
    pub fn hive_of(&self, j: usize) -> i64 {
        self.first_hive + self.streams[j].hive as i64
    }

    /// Report to hive index `hive` published at `now_ns`.
    pub fn sent(&mut self, hive: usize, now_ns: u64) {
        self.hives[hive].sent_ns.push(now_ns);
    }

    /// An event on stream `j` that arrived at `now_ns`; `Ok(true)` for the stream's first.
    pub fn on_event(&mut self, j: usize, ev: &Occupancy, now_ns: u64) -> Result<bool, Mismatch> {
        let stream = &mut self.streams[j];
        let hive = &mut self.hives[stream.hive];
        let hive_id = self.first_hive + stream.hive as i64;
        if ev.hive_id != hive_id {
            return Err(Mismatch::WrongHive {
                expected: hive_id,
                got: ev.hive_id,
            });
        }
        let got = ev.occupancy;
        let base = *hive.base.get_or_insert(got);
        let Some(last) = stream.last else {
            if got < base || got > base + hive.sent_ns.len() as i64 {
                return Err(Mismatch::Base { hive_id, base, got });
            }
            stream.last = Some(got);
            return Ok(true);
        };
        if got < last {
            return Err(Mismatch::Backwards { hive_id, last, got });
        }
        self.events += 1;
        if got == last {
            self.repeats += 1;
            return Ok(false);
        }
        stream.last = Some(got);
        let most = base + hive.sent_ns.len() as i64;
        for k in (last - base)..(got.min(most) - base) {
            self.lat.record(hive.sent_ns[k as usize], now_ns);
        }
        if got > most {
            return Err(Mismatch::Ahead { hive_id, got, most });
        }
        Ok(false)
    }

    /// True once every opened stream shows every report sent to its hive.
    pub fn settled(&self) -> bool {
        self.tally().behind == 0
    }

    /// The figures so far, over the streams that opened.
    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for s in &self.streams {
            let hive = &self.hives[s.hive];
            let (Some(last), Some(base)) = (s.last, hive.base) else {
                t.unopened += 1;
                continue;
            };
            let sent = hive.sent_ns.len() as u64;
            let seen = u64::try_from(last - base).unwrap_or(0).min(sent);
            t.expected += sent;
            t.covered += seen;
            t.behind += u64::from(seen < sent);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(hive_id: i64, occupancy: i64) -> Occupancy {
        Occupancy { hive_id, occupancy }
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn streams_watch_hives_in_turn() {
        let l = Ledger::new(10, 3, 7);
        let ids: Vec<i64> = (0..7).map(|j| l.hive_of(j)).collect();
        assert_eq!(ids, [10, 11, 12, 10, 11, 12, 10]);
    }

    #[test]
    fn each_report_is_matched_by_the_count_it_brought() {
        // Two streams on hive 5 (index 0), which stood at 40 before the run.
        let mut l = Ledger::new(5, 2, 4);
        assert_eq!(l.on_event(0, &ev(5, 40), 0), Ok(true));
        assert_eq!(l.on_event(2, &ev(5, 40), 0), Ok(true));
        l.sent(0, 100 * MS);
        l.sent(0, 200 * MS);
        l.sent(0, 300 * MS);
        assert!(!l.settled());
        // Stream 0 sees each report; stream 2 misses 41 (conflated) and sees 42, then 43 twice.
        assert_eq!(l.on_event(0, &ev(5, 41), 110 * MS), Ok(false));
        assert_eq!(l.on_event(0, &ev(5, 42), 230 * MS), Ok(false));
        assert_eq!(l.on_event(2, &ev(5, 42), 250 * MS), Ok(false));
        assert_eq!(l.on_event(0, &ev(5, 43), 305 * MS), Ok(false));
        assert_eq!(l.on_event(2, &ev(5, 43), 340 * MS), Ok(false));
        assert_eq!(l.on_event(2, &ev(5, 43), 15_000 * MS), Ok(false));
        assert_eq!((l.events, l.repeats), (6, 1));
        // Samples: 10, 30, 5 ms (stream 0); 150, 50, 40 ms (stream 2).
        assert_eq!(l.lat.percentile_ms(0.0), Some(5.0));
        assert_eq!(l.lat.percentile_ms(100.0), Some(150.0));
        assert_eq!(l.lat.percentile_ms(50.0), Some(40.0));
        // Streams 1 and 3 (hive 6) never opened: not counted as behind.
        assert!(l.settled());
        let t = l.tally();
        assert_eq!(
            t,
            Tally {
                expected: 6,
                covered: 6,
                behind: 0,
                unopened: 2
            }
        );
    }

    #[test]
    fn a_stream_that_misses_the_last_report_is_behind() {
        let mut l = Ledger::new(1, 1, 2);
        l.on_event(0, &ev(1, 0), 0).expect("opens");
        l.on_event(1, &ev(1, 0), 0).expect("opens");
        l.sent(0, MS);
        l.sent(0, 2 * MS);
        l.on_event(0, &ev(1, 2), 3 * MS).expect("both reports");
        l.on_event(1, &ev(1, 1), 3 * MS).expect("the first");
        assert!(!l.settled());
        let t = l.tally();
        assert_eq!((t.expected, t.covered, t.behind), (4, 3, 1));
    }

    #[test]
    fn counts_that_no_report_explains_are_mismatches() {
        let mut l = Ledger::new(1, 1, 3);
        assert_eq!(
            l.on_event(0, &ev(2, 0), 0),
            Err(Mismatch::WrongHive {
                expected: 1,
                got: 2
            })
        );
        l.on_event(0, &ev(1, 10), 0).expect("opens");
        assert_eq!(
            l.on_event(1, &ev(1, 12), 0),
            Err(Mismatch::Base {
                hive_id: 1,
                base: 10,
                got: 12
            })
        );
        l.sent(0, MS);
        assert_eq!(
            l.on_event(0, &ev(1, 9), 2 * MS),
            Err(Mismatch::Backwards {
                hive_id: 1,
                last: 10,
                got: 9
            })
        );
        // Three above base with one report sent: the one report is still measured.
        assert_eq!(
            l.on_event(0, &ev(1, 13), 4 * MS),
            Err(Mismatch::Ahead {
                hive_id: 1,
                got: 13,
                most: 11
            })
        );
        assert_eq!(l.lat.percentile_ms(50.0), Some(3.0));
        // A stream opening while reports are in flight may show any count the run explains.
        assert_eq!(l.on_event(2, &ev(1, 11), 5 * MS), Ok(true));
    }
}
