//! Which orchestration path serves a request while traffic migrates.
//!
//! `feature` maps a path to a bounded label, `bucket` places a request in one
//! of 10 000 sticky buckets, and `MigrationTable` holds the share of each
//! feature sent to the orchestration path, with per-client overrides
//! (`<prefix>/migration/<feature>/clients/<client-id>`). `sync` keeps the
//! table in step with etcd and the last-known-good cache file, in the
//! background. Nothing here may block or allocate per request.

mod bucket;
mod feature;
mod sync;
mod table;

pub use bucket::{BUCKETS, bucket_for};
pub use feature::{Feature, Route};
/// Percents as etcd holds them: the parser `paymeshctl` checks writes with.
pub use paymesh_vocab::percent::parse_percent;
pub use sync::{Cache, MigrationSync, SyncStatus};
pub use table::{MigrationTable, Override, Overrides, Source};
