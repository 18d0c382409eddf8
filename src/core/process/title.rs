//! Process titles as `ps` shows them (`bizzy: master process ...`), nginx's setproctitle.
//!
//! `ps` reads a process's command line from the memory where the kernel put argv. To show a
//! title longer than the original arguments, the environment strings that follow argv are
//! copied elsewhere first (as nginx's `ngx_init_setproctitle` does), and the whole argv+environ
//! area becomes the title's room. Call [`init`] once, early, while the process has one thread.

use std::ffi::CString;
use std::sync::atomic::{AtomicUsize, Ordering};

static START: AtomicUsize = AtomicUsize::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);

extern "C" {
    static mut environ: *mut *mut libc::c_char;
}

/// Field `n` (1-based, as in proc(5)) of /proc/self/stat.
fn stat_field(stat: &str, n: usize) -> Option<usize> {
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split(' ').nth(n - 3)?.parse().ok()
}

/// Finds the argv/environ area and moves the environment out of it.
pub fn init() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    let (Some(arg_start), Some(env_start), Some(env_end)) = (
        stat_field(&stat, 48),
        stat_field(&stat, 50),
        stat_field(&stat, 51),
    ) else {
        return;
    };
    if env_end <= arg_start || env_start < arg_start {
        return;
    }
    // SAFETY: single-threaded at start-up; every environ entry is a valid C string, and each is
    // replaced by a leaked copy so the original area is no longer referenced by environ.
    unsafe {
        let mut p = environ;
        while !p.is_null() && !(*p).is_null() {
            let owned = CString::from(std::ffi::CStr::from_ptr(*p));
            *p = owned.into_raw();
            p = p.add(1);
        }
    }
    START.store(arg_start, Ordering::SeqCst);
    LEN.store(env_end - arg_start, Ordering::SeqCst);
}

/// Sets the title; silently does nothing if [`init`] found no room.
pub fn set(title: &str) {
    let start = START.load(Ordering::SeqCst);
    let len = LEN.load(Ordering::SeqCst);
    if start == 0 || len < 2 {
        return;
    }
    let bytes = title.as_bytes();
    let n = bytes.len().min(len - 1);
    // SAFETY: [start, start+len) is this process's original argv+environ area, which init()
    // made unreferenced by environ; std's copy of argv is only read by std::env::args(), which
    // the program has already consumed before calling this.
    unsafe {
        let dst = start as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n);
        std::ptr::write_bytes(dst.add(n), 0, len - n);
    }
    if let Ok(c) = CString::new(title.chars().take(15).collect::<String>()) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
    }
}
