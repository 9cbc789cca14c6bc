//! Where observations go: the Prometheus registry and the access-log writer.
//!
//! The layers in `layers/metrics.rs` and `layers/access_log.rs` feed these;
//! neither sink may block or allocate much on the request path.

pub mod access_log;
pub mod metrics;

pub use access_log::{AccessLogWriter, LogRecord};
pub use metrics::Metrics;
