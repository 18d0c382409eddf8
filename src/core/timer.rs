//! Timeouts for every connection of a worker, with lazy re-arming.
//!
//! Each connection slot has at most one live deadline. Moving a deadline later (the common
//! case: a keep-alive connection that just answered a request) costs nothing here: the heap keeps
//! the earlier entry, and when it fires the loop sees that the slot's deadline moved and pushes
//! it again. Moving a deadline earlier pushes a new entry; the old one is recognised as stale
//! when it pops. So the steady keep-alive path does no heap work at all, which is the point
//! (nginx gets the same effect with `NGX_TIMER_LAZY_DELAY`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Milliseconds since the worker started: the loop's clock, read once per iteration.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    now_ms: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            origin: Instant::now(),
            now_ms: 0,
        }
    }

    /// Reads the system clock; called once per loop iteration.
    pub fn update(&mut self) -> u64 {
        self.now_ms = self.origin.elapsed().as_millis() as u64;
        self.now_ms
    }

    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

/// One slot's view of its deadline, kept beside the connection in the slab.
#[derive(Debug, Default, Clone, Copy)]
pub struct Deadline {
    /// When the slot wants to be woken, if at all.
    pub at: Option<u64>,
    /// The time of the heap entry that is live for this slot, if any.
    armed: Option<u64>,
}

impl Deadline {
    /// Whether an entry popped at `t` is the live one.
    fn is_live(&self, t: u64) -> bool {
        self.armed == Some(t)
    }
}

/// The heap of (time, slot key, slot generation) entries.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(u64, usize, u32)>>,
}

/// What the loop should do with a popped entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Fired {
    /// The slot's deadline has passed: call its timeout.
    Expired,
    /// The entry was stale or re-armed for later: nothing to do.
    Nothing,
}

impl Timers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes sure a heap entry exists no later than `d.at`; call after a connection ran.
    pub fn sync(&mut self, d: &mut Deadline, key: usize, gen: u32) {
        let Some(at) = d.at else { return };
        match d.armed {
            Some(armed) if armed <= at => {}
            _ => {
                d.armed = Some(at);
                self.heap.push(Reverse((at, key, gen)));
            }
        }
    }

    /// The earliest entry time, for the poll timeout.
    pub fn next(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Pops the next entry due at `now`: `(key, generation, time)`.
    pub fn pop_due(&mut self, now: u64) -> Option<(usize, u32, u64)> {
        match self.heap.peek() {
            Some(Reverse((t, _, _))) if *t <= now => {
                let Reverse((t, key, gen)) = self.heap.pop().expect("peeked entry exists");
                Some((key, gen, t))
            }
            _ => None,
        }
    }

    /// Decides what a popped entry means for the slot that owns it.
    pub fn settle(&mut self, d: &mut Deadline, key: usize, gen: u32, t: u64, now: u64) -> Fired {
        if !d.is_live(t) {
            return Fired::Nothing;
        }
        d.armed = None;
        match d.at {
            Some(at) if at <= now => {
                d.at = None;
                Fired::Expired
            }
            Some(_) => {
                self.sync(d, key, gen);
                Fired::Nothing
            }
            None => Fired::Nothing,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(t: &mut Timers, d: &mut Deadline, now: u64) -> usize {
        let mut fired = 0;
        while let Some((k, g, at)) = t.pop_due(now) {
            if t.settle(d, k, g, at, now) == Fired::Expired {
                fired += 1;
            }
        }
        fired
    }

    #[test]
    fn later_deadline_rearms_lazily() {
        let mut t = Timers::new();
        let mut d = Deadline {
            at: Some(100),
            ..Deadline::default()
        };
        t.sync(&mut d, 1, 0);
        d.at = Some(200);
        t.sync(&mut d, 1, 0);
        assert_eq!(t.len(), 1, "moving later pushes nothing");
        assert_eq!(drive(&mut t, &mut d, 150), 0);
        assert_eq!(t.next(), Some(200));
        assert_eq!(drive(&mut t, &mut d, 200), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn earlier_deadline_pushes_and_old_entry_is_stale() {
        let mut t = Timers::new();
        let mut d = Deadline {
            at: Some(100),
            ..Deadline::default()
        };
        t.sync(&mut d, 1, 0);
        d.at = Some(50);
        t.sync(&mut d, 1, 0);
        assert_eq!(drive(&mut t, &mut d, 60), 1);
        assert_eq!(
            drive(&mut t, &mut d, 100),
            0,
            "the stale entry fires nothing"
        );
    }

    #[test]
    fn cleared_deadline_fires_nothing() {
        let mut t = Timers::new();
        let mut d = Deadline {
            at: Some(10),
            ..Deadline::default()
        };
        t.sync(&mut d, 3, 7);
        d.at = None;
        assert_eq!(drive(&mut t, &mut d, 20), 0);
    }
}
