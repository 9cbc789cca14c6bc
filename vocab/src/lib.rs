//! The vocabulary every paymesh binary shares, defined once.
//!
//! The sidecar chooses a route from a request's path and the app serves it
//! from the same path: if the two read a path differently, a client can pick
//! its own route (`//v1/charges` once reached the app as a charge while the
//! sidecar counted it as `other` and sent it down the legacy path). So both
//! parse paths, and check ids, with this crate and nothing else. The same
//! holds for every other word two binaries exchange: the route header, the
//! public error shape, the refusal codes between the app and the
//! orchestrator, component names, migration percents and the fleet member
//! record that `paymeshctl` reads as the sidecars do.
//!
//! No I/O, no allocation on the request path's parsers (paths, ids,
//! routes); the only dependencies are serde and serde_json, for the two
//! JSON shapes.

pub mod component;
pub mod currency;
pub mod error;
pub mod failure;
pub mod files;
pub mod fleet;
pub mod headers;
pub mod ids;
mod labels;
pub mod limits;
pub mod path;
pub mod percent;
pub mod route;

pub use component::Component;
pub use error::{ApiError, ErrorType};
pub use failure::Failure;
pub use ids::IdKind;
pub use path::{ApiPath, Feature};
pub use route::Route;
