//! Synchronisation primitives for the lock-free parts, swapped for loom's under `--cfg loom`.
//!
//! Owns the std/loom switch and the cache-line padding. Only [`super::ring`] uses it; nothing
//! here may block or allocate.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

/// Keeps a value alone on its cache line (128 bytes: adjacent-line prefetch pairs lines on x86),
/// so the producer's and the consumer's counters never share one.
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for CachePadded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// An `UnsafeCell` whose accesses loom can track.
pub(crate) struct Cell<T>(
    #[cfg(loom)] loom::cell::UnsafeCell<T>,
    #[cfg(not(loom))] std::cell::UnsafeCell<T>,
);

impl<T> Cell<T> {
    pub(crate) fn new(value: T) -> Self {
        #[cfg(loom)]
        return Self(loom::cell::UnsafeCell::new(value));
        #[cfg(not(loom))]
        return Self(std::cell::UnsafeCell::new(value));
    }

    /// Runs `f` with a raw pointer to the value; the caller guarantees exclusive access.
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(loom)]
        return self.0.with_mut(f);
        #[cfg(not(loom))]
        return f(self.0.get());
    }
}

/// Reads an atomic through `&mut` (no other thread can touch it then).
pub(crate) fn load_mut(atomic: &mut AtomicUsize) -> usize {
    #[cfg(loom)]
    return atomic.with_mut(|v| *v);
    #[cfg(not(loom))]
    return *atomic.get_mut();
}
