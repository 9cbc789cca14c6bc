//! The sidecar's allocator, configured as `main` configures it, gives back
//! buffers freed between allocations that live on: what parked connections
//! leave behind (sidecar/src/memory.rs).
//!
//! One test in its own binary: it reads the process's resident memory, so
//! nothing may allocate beside it.

#[global_allocator]
static HEAP: paymesh_sidecar::memory::Allocator = paymesh_sidecar::memory::Allocator {};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn buffers_freed_between_live_allocations_leave_resident_memory_at_once() {
    paymesh_sidecar::memory::configure();
    // As parked connections leave the heap: each one's task (2 KB) lives
    // on, its 16 KB of buffers, allocated right after it, are freed.
    let mut live = Vec::new();
    let mut freed = Vec::new();
    for i in 0..4000u32 {
        live.push(vec![i as u8; 2 * 1024]);
        freed.push(vec![i as u8; 16 * 1024]);
    }
    let full = rss_kib();
    drop(freed);
    let after = rss_kib();
    // 64 MB were freed, and read back no later than right away; with
    // mimalloc's default purge delay (1 s) almost nothing has left yet.
    assert!(full.saturating_sub(after) > 48 * 1024, "RSS {full} -> {after} KiB");
    // The live ones are all still there, and intact.
    assert!(live.iter().enumerate().all(|(i, v)| v.len() == 2048 && v[2047] == i as u8));
}
