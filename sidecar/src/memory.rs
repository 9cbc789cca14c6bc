//! The sidecar's heap: mimalloc, told to give freed pages back at once.
//!
//! A parked connection keeps a few small allocations (its task, its
//! service) and frees hyper's buffers, about 16 KB. With glibc's malloc
//! the small ones that live on sit between the freed buffers, on pages
//! that therefore stay resident: each parked connection pinned one or two
//! pages, 8.5 KB measured, even with a periodic `malloc_trim`. mimalloc
//! keeps blocks of one size class together on their own pages, so the
//! freed buffers leave whole pages free, and the long-lived tasks share
//! pages densely (4.9–5.1 KB per parked connection against 8.1–8.5 KB,
//! measured: see docs/benchmarks.md).
//!
//! Two of its defaults suit a long-running server badly:
//! - a free page goes back to the kernel only after `purge_delay` (1 s):
//!   connections that park together stay resident for that long, and a
//!   measurement right after them sees none of it back. [`configure`],
//!   first thing in `main`, sets it to 0: a page goes back once it is free.
//! - On Linux its arenas are advised as transparent huge pages, so a
//!   touched byte can make 2 MB resident: 12 MB more at start, measured.
//!   The `no_thp` build feature (the workspace's Cargo.toml) leaves them
//!   at the kernel's page size.
//!
//! What it cannot give back is the free space inside pages that still hold
//! live blocks: after a burst of 9,900 concurrent connections the sidecar
//! stays at 58–72 MB, against 37 MB with glibc and `malloc_trim`: pages
//! that the burst's freed blocks share with blocks that live on (the 512
//! pooled app connections, `APP_POOL_MAX_IDLE`, among them). That space is
//! reused by the next load; an `mi_collect` by every worker as it went
//! idle made no difference (measured).
//!
//! The binary installs [`Allocator`] as its global allocator; the library,
//! its tests and the benchmarks use whichever their binary has.

/// The global allocator of `paymesh-sidecar`.
pub type Allocator = mimalloc::MiMalloc;

// mimalloc 3.3's `mi_option_e` (include/mimalloc.h of the bundled source);
// the binding crate does not name it. `the_option_number_is_mimallocs`
// checks it against its documented default.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Gives free pages back to the kernel as soon as they are free.
#[allow(unsafe_code)]
pub fn configure() {
    // SAFETY: mi_option_set stores an integer in mimalloc's option table;
    // it takes no pointer and may be called at any time from any thread.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn get(option: libmimalloc_sys::mi_option_t) -> std::os::raw::c_long {
        // SAFETY: reads an integer from mimalloc's option table.
        unsafe { libmimalloc_sys::mi_option_get(option) }
    }

    #[test]
    fn the_option_number_is_mimallocs() {
        // The default mimalloc 3.3 gives `purge_delay`; after an upgrade
        // that renumbered its options this fails instead of silently
        // setting another one. Read before `configure`, which no test in
        // this binary calls.
        assert_eq!(get(PURGE_DELAY), 1000, "purge_delay");
    }
}
