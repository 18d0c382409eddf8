//! What a pipe can carry, and how it sits in the ring.
//!
//! Owns the [`Payload`] trait. Plain values (numbers, byte arrays, boxes, `Arc`s) take one
//! slot each. A [`Msg`] is encoded as a record of 8-byte words instead of being stored as its
//! 72-byte handle: a 16-byte message costs 24 bytes of ring, so the two cores exchange three
//! times fewer cache lines, and a shared payload's reference travels as a pointer. The high-water
//! mark of a message pipe is `4 × hwm` words: at least `hwm` messages of up to 24 bytes, fewer
//! larger ones. Nothing here blocks, allocates or makes a system call.

use std::sync::Arc;

use super::ring::{Consumer, Producer};
use super::Msg;

/// A type that pipes carry.
pub trait Payload: Send + Sized + 'static {
    /// What one ring slot holds.
    type Slot: Send + 'static;

    /// Ring slots for a high-water mark of `hwm` messages.
    fn slots(hwm: usize) -> usize;

    /// Ring slots `value` takes.
    fn slots_of(value: &Self) -> usize;

    /// Ring slots a value of the usual size takes (what `has_room` checks for).
    fn usual_slots() -> usize;

    /// How the values left in a dropped ring are dropped (records need decoding).
    fn on_drop() -> Option<fn(&mut dyn Iterator<Item = Self::Slot>)>;

    /// Writes a value; hands it back when the ring is full.
    fn push(p: &mut Producer<Self::Slot>, value: Self) -> Result<(), Self>;

    /// Writes the value `make` builds. When full: `Err(None)` if `make` was not called,
    /// `Err(Some(value))` if the value was built and did not fit (it is handed back).
    fn push_with(
        p: &mut Producer<Self::Slot>,
        make: impl FnOnce() -> Self,
    ) -> Result<(), Option<Self>>;

    /// Whether a value of the usual size fits now.
    fn has_room(p: &mut Producer<Self::Slot>) -> bool;

    /// Takes the next value.
    fn pop(c: &mut Consumer<Self::Slot>) -> Option<Self>;

    /// Hands the next value to `f` by reference, then drops it.
    fn pop_with<R>(c: &mut Consumer<Self::Slot>, f: impl FnOnce(&Self) -> R) -> Option<R>;
}

macro_rules! plain_payload {
    ($([$($gen:tt)*] $ty:ty),* $(,)?) => {$(
        impl<$($gen)*> Payload for $ty {
            type Slot = Self;

            fn slots(hwm: usize) -> usize {
                hwm
            }

            fn slots_of(_: &Self) -> usize {
                1
            }

            fn usual_slots() -> usize {
                1
            }

            fn on_drop() -> Option<fn(&mut dyn Iterator<Item = Self>)> {
                None
            }

            #[inline(always)]
            fn push(p: &mut Producer<Self>, value: Self) -> Result<(), Self> {
                p.push(value)
            }

            #[inline(always)]
            fn push_with(
                p: &mut Producer<Self>,
                make: impl FnOnce() -> Self,
            ) -> Result<(), Option<Self>> {
                if p.push_with(make) { Ok(()) } else { Err(None) }
            }

            #[inline(always)]
            fn has_room(p: &mut Producer<Self>) -> bool {
                p.has_room()
            }

            #[inline(always)]
            fn pop(c: &mut Consumer<Self>) -> Option<Self> {
                c.pop()
            }

            #[inline(always)]
            fn pop_with<R>(c: &mut Consumer<Self>, f: impl FnOnce(&Self) -> R) -> Option<R> {
                c.pop_with(f)
            }
        }
    )*};
}

plain_payload!(
    [] (), [] bool, [] u8, [] u16, [] u32, [] u64, [] u128, [] usize,
    [] i8, [] i16, [] i32, [] i64, [] i128, [] isize, [] String,
    [const N: usize] [u8; N],
    [T: Send + 'static] Box<T>,
    [T: Send + Sync + 'static] Arc<T>,
    [T: Send + 'static] Vec<T>,
);

/// Decodes and drops the messages left in a dropped ring, releasing shared payloads.
fn drop_messages(words: &mut dyn Iterator<Item = u64>) {
    let mut words = words.peekable();
    while words.peek().is_some() {
        // SAFETY: the ring holds whole records written by `Msg::push` (encoded, then
        // forgotten), read here once, in order.
        drop(unsafe { Msg::from_words(|| words.next().expect("a record is whole")) });
    }
}

impl Payload for Msg {
    type Slot = u64;

    fn slots(hwm: usize) -> usize {
        hwm.saturating_mul(4).max(16)
    }

    fn slots_of(value: &Msg) -> usize {
        value.words()
    }

    fn usual_slots() -> usize {
        3
    }

    fn on_drop() -> Option<fn(&mut dyn Iterator<Item = u64>)> {
        Some(drop_messages)
    }

    #[inline(always)]
    fn push(p: &mut Producer<u64>, value: Msg) -> Result<(), Msg> {
        if p.push_n(value.words(), |i| value.word(i)) {
            value.forget_encoded();
            Ok(())
        } else {
            Err(value)
        }
    }

    #[inline(always)]
    fn push_with(p: &mut Producer<u64>, make: impl FnOnce() -> Msg) -> Result<(), Option<Msg>> {
        if !p.has_room_for(3) {
            return Err(None);
        }
        Self::push(p, make()).map_err(Some)
    }

    #[inline(always)]
    fn has_room(p: &mut Producer<u64>) -> bool {
        p.has_room_for(3)
    }

    #[inline(always)]
    fn pop(c: &mut Consumer<u64>) -> Option<Msg> {
        // SAFETY: every record in the ring was written whole by `push` from one forgotten
        // message, and each is read once.
        c.pop_record(|r| unsafe { Msg::from_words(|| r.next_value()) })
    }

    #[inline(always)]
    fn pop_with<R>(c: &mut Consumer<u64>, f: impl FnOnce(&Msg) -> R) -> Option<R> {
        c.pop_record(|r| {
            // SAFETY: as in `pop`. The message is decoded where `f` sees it and dropped there:
            // it is never moved.
            let msg = unsafe { Msg::from_words(|| r.next_value()) };
            f(&msg)
        })
    }
}
