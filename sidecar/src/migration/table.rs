//! The per-feature orchestration share, read on every request, and the
//! per-client overrides of it.
//!
//! Shares live in `AtomicU32`s as basis points, so the request path reads
//! them with one relaxed load and the writers (config reload, the etcd
//! sync) never take a lock the request path could wait on. Per-client
//! overrides are a small immutable map behind an `ArcSwap`: the request
//! path loads it without a lock and looks its client up; the sync swaps in
//! a new map when an override changes (rare: an operator's write).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use arc_swap::ArcSwap;

use super::{Feature, Route};

paymesh_vocab::labels! {
    /// Where a feature's current share came from.
    pub enum Source {
        /// `migration.defaults` in the config file.
        Defaults = "defaults",
        /// The last-known-good cache file.
        Cache = "cache",
        /// A live etcd value.
        Etcd = "etcd",
    }
}

impl Source {
    fn from_u8(v: u8) -> Source {
        match v {
            1 => Source::Cache,
            2 => Source::Etcd,
            _ => Source::Defaults,
        }
    }
}

/// One client's override of a feature's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Override {
    pub basis_points: u32,
    pub source: Source,
}

/// Client id → its override, per migrating feature (indexed by
/// `Feature::index()`). Ids are whatever etcd holds; only ids from the
/// config ever reach a lookup (authenticated clients), and only those are
/// shown.
pub type Overrides = [BTreeMap<String, Override>; 3];

#[derive(Debug)]
pub struct MigrationTable {
    basis_points: [AtomicU32; 3],
    sources: [AtomicU8; 3],
    overrides: ArcSwap<Overrides>,
}

impl MigrationTable {
    pub fn new(defaults_bp: [u32; 3]) -> Self {
        Self {
            basis_points: defaults_bp.map(|bp| AtomicU32::new(bp.min(10_000))),
            sources: [0; 3].map(AtomicU8::new),
            overrides: ArcSwap::from_pointee(Overrides::default()),
        }
    }

    /// Sets one feature's share; `Other` has none and is ignored.
    pub fn set(&self, feature: Feature, basis_points: u32, source: Source) {
        if let Some(i) = Self::slot(feature) {
            self.basis_points[i].store(basis_points.min(10_000), Ordering::Relaxed);
            self.sources[i].store(source as u8, Ordering::Relaxed);
        }
    }

    /// Replaces every per-client override at once.
    pub fn set_overrides(&self, overrides: Overrides) {
        self.overrides.store(Arc::new(overrides));
    }

    /// The current overrides (a cheap shared snapshot).
    pub fn overrides(&self) -> Arc<Overrides> {
        self.overrides.load_full()
    }

    /// Applies new config defaults to the features still on their defaults.
    pub fn apply_defaults(&self, defaults_bp: [u32; 3]) {
        for f in Feature::MIGRATING {
            if self.source(f) == Source::Defaults {
                self.set(f, defaults_bp[f.index()], Source::Defaults);
            }
        }
    }

    pub fn basis_points(&self, feature: Feature) -> u32 {
        Self::slot(feature).map_or(0, |i| self.basis_points[i].load(Ordering::Relaxed))
    }

    pub fn source(&self, feature: Feature) -> Source {
        Self::slot(feature).map_or(Source::Defaults, |i| Source::from_u8(self.sources[i].load(Ordering::Relaxed)))
    }

    /// The share `client` gets of `feature`: its override, else the feature's.
    pub fn client_basis_points(&self, feature: Feature, client: &str) -> u32 {
        let Some(i) = Self::slot(feature) else { return 0 };
        let overrides = self.overrides.load();
        match overrides[i].get(client) {
            Some(o) => o.basis_points,
            None => self.basis_points[i].load(Ordering::Relaxed),
        }
    }

    /// The route for a request of `feature` in `bucket`, by the feature's share.
    pub fn route(&self, feature: Feature, bucket: u32) -> Route {
        if bucket < self.basis_points(feature) { Route::Orchestration } else { Route::Legacy }
    }

    /// The route for `client`'s request of `feature` in `bucket`: the
    /// client's override when it has one, else the feature's share. The
    /// bucket rule is the same, so stickiness and monotonic raises hold
    /// within each client.
    pub fn route_for(&self, feature: Feature, client: &str, bucket: u32) -> Route {
        if bucket < self.client_basis_points(feature, client) { Route::Orchestration } else { Route::Legacy }
    }

    fn slot(feature: Feature) -> Option<usize> {
        (feature != Feature::Other).then(|| feature.index())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_follows_basis_points() {
        let t = MigrationTable::new([1250, 0, 10_000]);
        assert_eq!(t.route(Feature::Charge, 1249), Route::Orchestration);
        assert_eq!(t.route(Feature::Charge, 1250), Route::Legacy);
        assert_eq!(t.route(Feature::Refund, 0), Route::Legacy);
        assert_eq!(t.route(Feature::Disbursement, 9999), Route::Orchestration);
        assert_eq!(t.route(Feature::Other, 0), Route::Legacy);
    }

    #[test]
    fn defaults_do_not_override_other_sources() {
        let t = MigrationTable::new([0, 0, 0]);
        t.set(Feature::Refund, 5000, Source::Etcd);
        t.apply_defaults([100, 200, 300]);
        assert_eq!(t.basis_points(Feature::Charge), 100);
        assert_eq!(t.basis_points(Feature::Refund), 5000);
        assert_eq!(t.source(Feature::Refund), Source::Etcd);
    }

    #[test]
    fn a_client_override_wins_for_that_client_only() {
        let t = MigrationTable::new([2000, 0, 0]);
        let mut o = Overrides::default();
        o[Feature::Charge.index()].insert("internal".into(), Override { basis_points: 9000, source: Source::Etcd });
        o[Feature::Refund.index()].insert("pinned".into(), Override { basis_points: 0, source: Source::Etcd });
        t.set_overrides(o);
        assert_eq!(t.route_for(Feature::Charge, "internal", 8999), Route::Orchestration);
        assert_eq!(t.route_for(Feature::Charge, "checkout", 8999), Route::Legacy);
        assert_eq!(t.route_for(Feature::Charge, "checkout", 1999), Route::Orchestration);
        assert_eq!(t.client_basis_points(Feature::Refund, "pinned"), 0);
        assert_eq!(t.route_for(Feature::Other, "internal", 0), Route::Legacy);
        // Deleting the override falls back to the feature's share.
        t.set_overrides(Overrides::default());
        assert_eq!(t.route_for(Feature::Charge, "internal", 8999), Route::Legacy);
    }
}
