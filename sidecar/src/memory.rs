//! Giving freed heap back to the kernel after connections park or close.
//!
//! glibc's `free` returns memory to the kernel only from the top of a heap.
//! Buffers freed by parked and closed connections sit between allocations
//! that live on (the parked connections' own state), so without help a
//! sidecar keeps, as resident memory, the peak its connections ever had:
//! 10,000 connections that were busy once and idle now would cost what
//! 10,000 busy ones do. `malloc_trim(0)` walks every arena and releases
//! the free pages inside them (`MADV_DONTNEED`); it runs here on a blocking
//! thread, at most once a [`TRIM_EVERY`], and only after at least
//! [`TRIM_AFTER`] connections parked or closed since the last one, so a
//! steady load with few connection changes never pays for it.
//!
//! Other C libraries (musl) have no `malloc_trim`; there this does nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The least time between two trims.
pub const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Connections that parked or closed (each freeing hyper's buffers, about
/// 16 KB) before a trim is worth its walk of the heap.
pub const TRIM_AFTER: usize = 64;

static RELEASED: AtomicUsize = AtomicUsize::new(0);

/// A connection parked or closed: its buffers are free. Called by the
/// connection's task (`server.rs`) at those two points.
pub fn released() {
    RELEASED.fetch_add(1, Ordering::Relaxed);
}

/// Trims whenever enough was released, until shutdown.
pub async fn trim_loop(mut shutdown: watch::Receiver<bool>) {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = crate::server::stopped(&mut shutdown) => return,
        }
        if RELEASED.load(Ordering::Relaxed) < TRIM_AFTER {
            continue;
        }
        let connections = RELEASED.swap(0, Ordering::Relaxed);
        let started = Instant::now();
        let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
        tracing::debug!(connections, released, took = ?started.elapsed(), "malloc_trim");
    }
}

/// Whether any memory went back to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim only takes glibc's own arena locks; it is safe
    // to call from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn a_trim_gives_back_buffers_freed_between_live_allocations() {
        // As parked connections leave it: 16 KB buffers freed, each between
        // small allocations that stay.
        let mut live = Vec::new();
        let mut freed = Vec::new();
        for i in 0..4000u32 {
            live.push(vec![i as u8; 256]);
            freed.push(vec![i as u8; 16 * 1024]);
        }
        let full = rss_kib();
        drop(freed);
        let before = rss_kib();
        assert!(trim(), "malloc_trim released nothing");
        let after = rss_kib();
        // 64 MB were freed; most of it must leave resident memory.
        assert!(before.saturating_sub(after) > 32 * 1024, "RSS {full} -> {before} -> {after} KiB");
        assert_eq!(live.len(), 4000);
    }
}
