//! Which orchestration path serves a request while traffic migrates.
//!
//! `feature` maps a path to a bounded label, `bucket` places a request in one
//! of 10 000 sticky buckets, and `MigrationTable` holds the share of each
//! feature sent to the orchestration path. The etcd watch and the
//! last-known-good cache come later (issue 5); for now the shares are the
//! configured defaults. Nothing here may block or allocate per request.

mod bucket;
mod feature;
mod table;

pub use bucket::{BUCKETS, bucket_for};
pub use feature::{Feature, Route};
pub use table::{MigrationTable, Source};
