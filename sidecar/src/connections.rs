//! Bounds on the public listener's client connections: how many may be open
//! at once, and how long one may stay without doing anything.
//!
//! Every connection costs a file descriptor (and, while it proxies, a second
//! one to the app). Left unbounded, a few hundred clients that connect and
//! say nothing exhaust the process's descriptors, and then the admin
//! listener's `/healthz` cannot accept either: Kubernetes restarts a pod
//! that was merely being held open. So the public listener counts what it
//! holds, refuses (accepts and closes at once) beyond `limits.max_connections`,
//! whose default leaves descriptors for the app hop, the admin listener and
//! the files; and each connection watches itself (`Activity`): no request
//! within `limits.header_read_timeout` of the accept, or nothing in flight
//! for `limits.idle_timeout`, and it is closed. This module never reads or
//! writes a socket itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::{IntCounter, IntGauge, Registry};

/// Descriptors kept back from client connections whatever the limit: the
/// listeners, the admin listener's own budget, etcd, the access log and
/// events files, telemetry and config reads, the runtime's own.
pub const FD_RESERVE: u64 = 128;
/// The default never exceeds this, however high the descriptor limit.
pub const DEFAULT_CEILING: u32 = 10_000;
/// Connections the admin listener serves at once; the rest wait in its
/// accept queue. Inside [`FD_RESERVE`].
pub const ADMIN_MAX_CONNECTIONS: usize = 32;

/// The process's soft limit on open files (`RLIMIT_NOFILE`), from
/// `/proc/self/limits`; `None` where that cannot be read.
pub fn fd_soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    match line.trim_start_matches("Max open files").split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

/// The most client connections `fd_limit` descriptors can carry: half of
/// what is left after [`FD_RESERVE`], as each client connection may hold an
/// app connection too.
pub fn fd_budget(fd_limit: u64) -> u32 {
    u32::try_from(fd_limit.saturating_sub(FD_RESERVE) / 2).unwrap_or(u32::MAX)
}

/// `limits.max_connections` when the config does not say: the descriptor
/// budget, at most [`DEFAULT_CEILING`] and at least 1. With an unreadable
/// limit, the common default soft limit of 1024 is assumed.
pub fn default_max_connections() -> u32 {
    fd_budget(fd_soft_limit().unwrap_or(1024)).clamp(1, DEFAULT_CEILING)
}

/// The count of open client connections and its metrics.
#[derive(Debug)]
pub struct OpenConnections {
    open: AtomicUsize,
    gauge: IntGauge,
    parked: IntGauge,
    refused: IntCounter,
}

impl OpenConnections {
    pub fn register(registry: &Registry) -> Arc<Self> {
        let gauge = IntGauge::new("paymesh_open_connections", "Open client connections on the public listener.")
            .expect("valid metric");
        let refused = IntCounter::new(
            "paymesh_connections_refused_total",
            "Client connections closed at accept because limits.max_connections were open.",
        )
        .expect("valid metric");
        let parked = IntGauge::new(
            "paymesh_parked_connections",
            "Idle HTTP/1 client connections held without buffers until their next request (part of the open ones).",
        )
        .expect("valid metric");
        registry.register(Box::new(gauge.clone())).expect("metric names are unique");
        registry.register(Box::new(parked.clone())).expect("metric names are unique");
        registry.register(Box::new(refused.clone())).expect("metric names are unique");
        Arc::new(Self { open: AtomicUsize::new(0), gauge, parked, refused })
    }

    /// A place for one more connection, unless `max` are open (then the
    /// refusal is counted).
    pub fn try_open(self: &Arc<Self>, max: u32) -> Option<ConnectionPermit> {
        let max = max as usize;
        let admitted = self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        if admitted.is_err() {
            self.refused.inc();
            return None;
        }
        self.gauge.inc();
        Some(ConnectionPermit(self.clone()))
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// Held for as long as a connection is open.
#[derive(Debug)]
pub struct ConnectionPermit(Arc<OpenConnections>);

impl ConnectionPermit {
    /// Counts the connection as parked until the guard is dropped.
    pub fn parked(&self) -> Parked<'_> {
        self.0.parked.inc();
        Parked(&self.0.parked)
    }
}

/// Held while a connection is parked.
#[derive(Debug)]
pub struct Parked<'a>(&'a IntGauge);

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_leaves_descriptors_for_the_rest() {
        assert_eq!(fd_budget(1024), 448);
        assert_eq!(fd_budget(100), 0);
        assert_eq!(fd_budget(u64::MAX), u32::MAX);
        let d = default_max_connections();
        assert!((1..=DEFAULT_CEILING).contains(&d), "{d}");
        if let Some(limit) = fd_soft_limit() {
            assert!(u64::from(d) * 2 + FD_RESERVE <= limit.max(FD_RESERVE + 2), "{d} for {limit}");
        }
    }

    #[test]
    fn permits_stop_at_the_cap_and_come_back() {
        let open = OpenConnections::register(&Registry::new());
        let a = open.try_open(2).unwrap();
        let b = open.try_open(2).unwrap();
        assert!(open.try_open(2).is_none());
        assert_eq!((open.open(), open.gauge.get(), open.refused.get()), (2, 2, 1));
        drop(a);
        assert!(open.try_open(2).is_some());
        assert_eq!(open.open(), 1);
        let parked = b.parked();
        assert_eq!(open.parked.get(), 1);
        drop(parked);
        assert_eq!(open.parked.get(), 0);
    }
}
