//! Shared memory zones: anonymous `MAP_SHARED` mappings made by the master before it forks.
//!
//! A zone is named and sized by the module that needs it (counters summed across workers,
//! limit_req buckets). The master makes every zone when it builds a cycle, and a reload keeps a
//! zone whose name and size did not change, so counters survive reloads as they do in nginx.
//! Zones hold only atomics and plain integers laid out by their owner; they are zeroed when made.

use std::ptr::NonNull;
use std::sync::Arc;

/// One mapping. Cloning shares it; the last clone in a process unmaps it.
#[derive(Debug, Clone)]
pub struct Zone {
    inner: Arc<Mapping>,
}

#[derive(Debug)]
struct Mapping {
    name: String,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is only ever accessed through atomics by its owners' layouts.
unsafe impl Send for Mapping {}
// SAFETY: as above; the pointer itself is never written after creation.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are exactly what mmap returned and nothing else unmaps them.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

impl Zone {
    /// Maps `len` zeroed bytes shared with every process forked afterwards.
    pub fn new(name: &str, len: usize) -> std::io::Result<Zone> {
        let len = len.max(1).next_multiple_of(4096);
        // SAFETY: an anonymous shared mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).expect("mmap never returns null on success");
        Ok(Zone {
            inner: Arc::new(Mapping {
                name: name.to_string(),
                ptr,
                len,
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn len(&self) -> usize {
        self.inner.len
    }

    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// The zone seen as a `T`. `T` must be valid when all-zero and made of atomics (or other
    /// types safe to share between processes), and fit in the zone.
    ///
    /// # Safety
    /// The caller guarantees `T`'s layout is what every process using this zone expects, that an
    /// all-zero `T` is valid, and that `T` only allows shared access through interior mutability.
    pub unsafe fn as_ref<T>(&self) -> &T {
        // SAFETY: the caller's promise, passed on.
        unsafe { &self.as_slice::<T>(1)[0] }
    }

    /// The zone seen as a slice of `n` values of `T`, under the same rules as [`Zone::as_ref`].
    ///
    /// # Safety
    /// As for [`Zone::as_ref`].
    pub unsafe fn as_slice<T>(&self, n: usize) -> &[T] {
        assert!(
            std::mem::size_of::<T>() * n <= self.inner.len,
            "zone too small"
        );
        assert!(
            self.inner
                .ptr
                .as_ptr()
                .align_offset(std::mem::align_of::<T>())
                == 0
        );
        // SAFETY: size and alignment checked above; validity is the caller's promise.
        unsafe { std::slice::from_raw_parts(self.inner.ptr.as_ptr().cast::<T>(), n) }
    }
}

/// The zones of a cycle, found by name.
#[derive(Debug, Default, Clone)]
pub struct Zones {
    zones: Vec<Zone>,
}

impl Zones {
    /// Makes the zones asked for, reusing those of `old` with the same name and size.
    pub fn build(wanted: &[(String, usize)], old: Option<&Zones>) -> std::io::Result<Zones> {
        let mut zones = Vec::with_capacity(wanted.len());
        for (name, len) in wanted {
            let want = len.max(&1).next_multiple_of(4096);
            let kept = old.and_then(|o| o.get(name)).filter(|z| z.len() == want);
            zones.push(match kept {
                Some(z) => z.clone(),
                None => Zone::new(name, *len)?,
            });
        }
        Ok(Zones { zones })
    }

    pub fn get(&self, name: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn zone_is_shared_with_a_forked_child() {
        let z = Zone::new("t", 64).unwrap();
        // SAFETY: AtomicU64 is valid all-zero.
        let c: &AtomicU64 = unsafe { z.as_ref() };
        // SAFETY: the test process has one thread here; the child only stores and exits.
        match unsafe { libc::fork() } {
            0 => {
                c.store(42, Ordering::SeqCst);
                // SAFETY: _exit is always safe to call in a forked child.
                unsafe { libc::_exit(0) };
            }
            pid => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert_eq!(c.load(Ordering::SeqCst), 42);
            }
        }
    }

    #[test]
    fn reload_keeps_same_sized_zone() {
        let a = Zones::build(&[("m".into(), 100), ("x".into(), 5000)], None).unwrap();
        // SAFETY: AtomicU64 is valid all-zero.
        unsafe { a.get("m").unwrap().as_ref::<AtomicU64>() }.store(7, Ordering::Relaxed);
        let b = Zones::build(&[("m".into(), 200), ("x".into(), 9000)], Some(&a)).unwrap();
        // SAFETY: as above.
        let m = unsafe { b.get("m").unwrap().as_ref::<AtomicU64>() };
        assert_eq!(m.load(Ordering::Relaxed), 7, "same rounded size: kept");
        assert_ne!(a.get("x").unwrap().len(), b.get("x").unwrap().len());
    }
}
