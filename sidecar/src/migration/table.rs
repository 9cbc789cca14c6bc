//! The per-feature orchestration share, read on every request.
//!
//! Shares live in `AtomicU32`s as basis points, so the request path reads
//! them with one relaxed load and the writers (config reload, the etcd
//! sync) never take a lock the request path could wait on.

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use super::{Feature, Route};

/// Where a feature's current share came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Source {
    /// `migration.defaults` in the config file.
    Defaults = 0,
    /// The last-known-good cache file.
    Cache = 1,
    /// A live etcd value.
    Etcd = 2,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Defaults => "defaults",
            Source::Cache => "cache",
            Source::Etcd => "etcd",
        }
    }

    fn from_u8(v: u8) -> Source {
        match v {
            1 => Source::Cache,
            2 => Source::Etcd,
            _ => Source::Defaults,
        }
    }
}

#[derive(Debug)]
pub struct MigrationTable {
    basis_points: [AtomicU32; 3],
    sources: [AtomicU8; 3],
}

impl MigrationTable {
    pub fn new(defaults_bp: [u32; 3]) -> Self {
        Self { basis_points: defaults_bp.map(|bp| AtomicU32::new(bp.min(10_000))), sources: [0; 3].map(AtomicU8::new) }
    }

    /// Sets one feature's share; `Other` has none and is ignored.
    pub fn set(&self, feature: Feature, basis_points: u32, source: Source) {
        if let Some(i) = Self::slot(feature) {
            self.basis_points[i].store(basis_points.min(10_000), Ordering::Relaxed);
            self.sources[i].store(source as u8, Ordering::Relaxed);
        }
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

    /// The route for a request of `feature` in `bucket`.
    pub fn route(&self, feature: Feature, bucket: u32) -> Route {
        if bucket < self.basis_points(feature) { Route::Orchestration } else { Route::Legacy }
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
}
