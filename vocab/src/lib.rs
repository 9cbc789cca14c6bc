//! The vocabulary every paymesh binary shares, defined once.
//!
//! The sidecar chooses a route from a request's path and the app serves it
//! from the same path: if the two read a path differently, a client can pick
//! its own route (`//v1/charges` once reached the app as a charge while the
//! sidecar counted it as `other` and sent it down the legacy path). So both
//! parse paths, and check ids, with this crate and nothing else.
//!
//! No dependencies, no I/O, no allocation on the hot path.

pub mod currency;
pub mod headers;
pub mod ids;
pub mod limits;
pub mod path;

pub use ids::IdKind;
pub use path::{ApiPath, Feature};
